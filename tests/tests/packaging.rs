//! The Dockerfile, checked without a container engine (none runs here):
//! it builds and copies exactly the workspace's binaries, runs them as a
//! non-root user, and starts the broker in exec form so SIGTERM reaches it
//! (its controlled shutdown) rather than a shell.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `[[bin]] name = "..."` entries of a package manifest.
fn binaries(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(name) = line.strip_prefix("name = ") {
                names.push(name.trim_matches('"').to_string());
            }
        }
    }
    names
}

fn package_name(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("name = "))
        .map(|n| n.trim_matches('"').to_string())
        .unwrap()
}

#[test]
fn the_image_builds_copies_and_runs_the_workspace_binaries() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = (&lines[stages[0]..stages[1]], &lines[stages[1]..]);
    assert!(
        lines[stages[0]].starts_with("FROM rust:"),
        "Rust build stage"
    );
    assert!(
        !lines[stages[1]].contains("rust"),
        "slim runtime without the toolchain"
    );
    // The rack init container the operator renders runs /bin/sh from this
    // image: no distroless or scratch base.
    assert!(
        lines[stages[1]].starts_with("FROM debian:"),
        "a runtime with /bin/sh"
    );

    let packages = [
        root().join("broker/Cargo.toml"),
        root().join("operator/Cargo.toml"),
        root().join("cli/Cargo.toml"),
    ];
    let cargo_build = build
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("the build stage runs cargo build");
    assert!(cargo_build.contains("--release") && cargo_build.contains("--locked"));
    let mut expected_binaries = Vec::new();
    for manifest in &packages {
        let package = package_name(manifest);
        assert!(
            cargo_build.contains(&format!("-p {package}")),
            "builds {package}"
        );
        expected_binaries.extend(binaries(manifest));
    }
    assert_eq!(
        expected_binaries,
        vec!["tideline-broker", "tideline-operator", "tideline"]
    );

    let copied: Vec<(String, String)> = runtime
        .iter()
        .filter_map(|l| l.strip_prefix("COPY --from=build "))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (parts[0].to_string(), parts[1].to_string())
        })
        .collect();
    for bin in &expected_binaries {
        assert!(
            copied
                .iter()
                .any(|(from, to)| from == &format!("/src/target/release/{bin}")
                    && to == &format!("/usr/local/bin/{bin}")),
            "{bin} is copied from the build output: {copied:?}"
        );
    }
    assert_eq!(
        copied.len(),
        expected_binaries.len(),
        "nothing else is copied: {copied:?}"
    );

    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets a user");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "runs as non-root, not {user}");

    let entrypoint = runtime
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an entrypoint");
    let exec_form: Vec<String> = serde_json::from_str(entrypoint).unwrap_or_else(|_| {
        panic!("ENTRYPOINT must be exec form (JSON), so signals reach the broker: {entrypoint}")
    });
    assert_eq!(
        exec_form,
        vec!["/usr/local/bin/tideline-broker".to_string()]
    );
    assert!(
        !runtime
            .iter()
            .any(|l| l.starts_with("CMD ") && !l.starts_with("CMD [")),
        "no shell-form CMD"
    );

    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    for excluded in ["target/", "data/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == excluded),
            ".dockerignore excludes {excluded}"
        );
    }
}
