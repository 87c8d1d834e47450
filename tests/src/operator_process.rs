//! A real `tideline-operator` process (the binary `cargo build --workspace
//! --bins` makes) pointed at a Kubernetes API by a kubeconfig — in tests,
//! the in-memory API served over HTTP (`fake_kube`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

pub fn operator_bin() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    };
    target.join("debug").join("tideline-operator")
}

pub struct OperatorProcess {
    child: Option<Child>,
    pub identity: String,
    pub http: SocketAddr,
    pub log_path: PathBuf,
}

impl OperatorProcess {
    /// Starts `tideline-operator run` as replica `identity` of namespace
    /// `namespace`, logging (JSON) to a file in `dir`.
    pub fn start(
        dir: &Path,
        kubeconfig: &Path,
        identity: &str,
        namespace: &str,
        lease_seconds: u64,
    ) -> OperatorProcess {
        Self::start_with_env(dir, kubeconfig, identity, namespace, lease_seconds, &[])
    }

    /// [`OperatorProcess::start`] with extra environment variables.
    pub fn start_with_env(
        dir: &Path,
        kubeconfig: &Path,
        identity: &str,
        namespace: &str,
        lease_seconds: u64,
        env: &[(&str, String)],
    ) -> OperatorProcess {
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log_path = dir.join(format!("{identity}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(operator_bin())
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", namespace)
            .env("TIDELINE_OPERATOR_HTTP", http.to_string())
            .env("TIDELINE_OPERATOR_LEASE_SECONDS", lease_seconds.to_string())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (cargo build --workspace --bins)",
                    operator_bin().display()
                )
            });
        OperatorProcess {
            child: Some(child),
            identity: identity.to_string(),
            http,
            log_path,
        }
    }

    /// `GET path` on the operator's HTTP endpoint: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = crate::http::get(self.http, path).ok()?;
        Some((response.status, response.text()))
    }

    /// The value of an unlabelled gauge in `/metrics`.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
    }

    pub fn is_leader(&self) -> bool {
        self.gauge("tideline_operator_leader") == Some(1.0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, as a crashed pod.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.get("/readyz").map(|(code, _)| code) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "operator {} not ready:\n{}",
                self.identity,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resident memory (VmRSS) in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
