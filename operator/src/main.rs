//! The Tideline operator. Its controllers arrive with the operator issue; until
//! then the binary only states that it is not implemented, so nobody mistakes
//! it for a working operator.
fn main() {
    eprintln!("tideline-operator: not implemented yet (see the operator issue)");
    std::process::exit(2);
}
