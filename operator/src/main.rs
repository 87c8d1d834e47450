//! `tideline-operator`: `crdgen` writes the CRD YAML; the controllers
//! (`run`) are not built yet, and the binary says so rather than pretend.

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("crdgen") => {
            let dir = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../crds")));
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("tideline-operator: cannot create {}: {e}", dir.display());
                std::process::exit(1);
            }
            for (file, yaml) in tideline_operator::crdgen::crds() {
                let path = dir.join(file);
                if let Err(e) = std::fs::write(&path, yaml) {
                    eprintln!("tideline-operator: cannot write {}: {e}", path.display());
                    std::process::exit(1);
                }
                println!("wrote {}", path.display());
            }
        }
        _ => {
            eprintln!(
                "usage: tideline-operator crdgen [DIR]   (the controllers are not implemented yet)"
            );
            std::process::exit(2);
        }
    }
}
