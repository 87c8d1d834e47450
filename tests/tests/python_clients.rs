//! Other real clients: kafka-python (a pure-Python implementation of the
//! protocol, independent of librdkafka) and confluent-kafka (Python over
//! a different librdkafka build than the Rust tests use).
//!
//! The Python packages are installed by the README's test command
//! (`./scripts/test.sh`). A missing package is a broken test environment, so
//! these tests FAIL rather than skip.

use std::path::Path;
use std::process::Command;

use tideline_tests::Broker;

fn python() -> String {
    std::env::var("TIDELINE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn require_module(module: &str, package: &str) {
    let out = Command::new(python())
        .args(["-c", &format!("import {module}")])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; install Python 3 and run the README's test command \
                 (./scripts/test.sh)",
                python()
            )
        });
    assert!(
        out.status.success(),
        "Python module `{module}` is missing: run the README's test command \
         (./scripts/test.sh, which does `pip install kafka-python confluent-kafka`), \
         or `pip install {package}`.\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_script(script: &str, bootstrap: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .arg(bootstrap)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    eprintln!("{stdout}");
}

#[test]
fn kafka_python_smoke() {
    require_module("kafka", "kafka-python");
    let broker = Broker::start_with(&[]);
    run_script("smoke_kafka_python.py", &broker.bootstrap());
}

#[test]
fn confluent_kafka_smoke() {
    require_module("confluent_kafka", "confluent-kafka");
    let broker = Broker::start_with(&[]);
    run_script("smoke_confluent_kafka.py", &broker.bootstrap());
}
