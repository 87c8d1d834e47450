//! Runs the `tideline` command-line tool as a user does: a real process,
//! stdin from the test (never a terminal, so nothing prompts), exit code,
//! stdout and stderr captured.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The CLI binary next to the broker's (`TIDELINE_CLI_BIN` overrides).
pub fn cli_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TIDELINE_CLI_BIN") {
        return PathBuf::from(p);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    };
    target.join("debug").join("tideline")
}

pub struct CliOutput {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl CliOutput {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts exit code 0 and returns the output.
    pub fn ok(self) -> CliOutput {
        assert_eq!(
            self.code,
            0,
            "tideline {:?} exited {}: stdout {} stderr {}",
            self.args,
            self.code,
            self.text(),
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("tideline {:?}: not JSON ({e}): {}", self.args, self.text()))
    }
}

/// `tideline -b BOOTSTRAP ARGS...` with empty stdin.
pub fn tideline(bootstrap: &str, args: &[&str]) -> CliOutput {
    tideline_with_input(bootstrap, args, b"")
}

/// `tideline -b BOOTSTRAP ARGS...` reading `input` on stdin.
pub fn tideline_with_input(bootstrap: &str, args: &[&str], input: &[u8]) -> CliOutput {
    let mut command = Command::new(cli_bin());
    command
        .arg("-b")
        .arg(bootstrap)
        .args(args)
        .env_remove("TIDELINE_BROKERS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!(
            "starting {}: {e} (build it with `cargo build --workspace --bins`)",
            cli_bin().display()
        )
    });
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("tideline ran");
    writer.join().expect("stdin writer");
    CliOutput {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
