//! Running a real `tideline-broker` process.
//!
//! Each [`Broker`] owns one broker process, a temporary directory holding its
//! data directory (`log.dirs`) and its captured stdout/stderr, and the ports
//! it listens on. Tests start their own brokers, so they are isolated from
//! each other and can be run in parallel.
//!
//! Why a process and not an in-process server: crash safety, signal handling
//! and recovery can only be tested on a process that can really be
//! SIGKILLed, SIGTERMed and SIGSTOPped; and the clients under test must talk
//! to the broker over real sockets.
//!
//! Readiness is decided by polling `GET /readyz` on the broker's HTTP
//! listener until it answers 200. The broker's output goes to `broker.log`
//! next to the data directory; when a test panics while a `Broker` is alive,
//! its `Drop` prints the tail of that log so the failure explains itself.
//! Set `TIDELINE_KEEP_DATA=1` to keep the temporary directory for
//! post-mortem inspection.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, http};

/// Options for [`Broker::start`].
#[derive(Debug, Clone)]
pub struct BrokerOpts {
    /// `--override key=value` pairs, applied after (and replacing) the
    /// harness's own defaults for the same key.
    pub overrides: Vec<(String, String)>,
    /// Fixed port for the Kafka listener; a free one is picked if `None`.
    pub kafka_port: Option<u16>,
    /// Fixed port for the HTTP listener; a free one is picked if `None`.
    pub http_port: Option<u16>,
    /// How long to wait for `/readyz` to answer 200.
    pub ready_timeout: Duration,
    /// A properties file passed as `--config`; the harness then leaves
    /// `node.id` to the file and the environment.
    pub config_file: Option<PathBuf>,
    /// Extra environment variables (e.g. `TIDELINE_NODE_ID`).
    pub env: Vec<(String, String)>,
}

impl Default for BrokerOpts {
    fn default() -> Self {
        BrokerOpts {
            overrides: Vec::new(),
            kafka_port: None,
            http_port: None,
            ready_timeout: Duration::from_secs(30),
            config_file: None,
            env: Vec::new(),
        }
    }
}

impl BrokerOpts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) one `--override key=value`.
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.overrides.retain(|(k, _)| k != key);
        self.overrides.push((key.to_string(), value.to_string()));
        self
    }

    /// Listens for Kafka clients on this port instead of a free one.
    pub fn kafka_port(mut self, port: u16) -> Self {
        self.kafka_port = Some(port);
        self
    }
}

/// Where the broker binary is: `$TIDELINE_BROKER_BIN`, else
/// `$CARGO_TARGET_DIR/debug/tideline-broker`, else
/// `<workspace>/target/debug/tideline-broker`.
pub fn broker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TIDELINE_BROKER_BIN") {
        return PathBuf::from(p);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    };
    target.join("debug").join("tideline-broker")
}

/// A running (or stopped, between `kill`/`stop` and `restart`) broker.
pub struct Broker {
    bin: PathBuf,
    root: Option<TempDir>,
    root_path: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    kafka_port: u16,
    http_port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
    child: Option<Child>,
    starts: u32,
}

impl Broker {
    /// Starts a broker with the harness defaults plus `overrides`.
    pub fn start_with(overrides: &[(&str, &str)]) -> Broker {
        let opts = overrides
            .iter()
            .fold(BrokerOpts::new(), |o, (k, v)| o.set(k, v));
        Broker::start(opts)
    }

    /// Starts a broker process without waiting for it to be ready (a
    /// cluster's nodes only become ready together); see [`Broker::wait_ready`].
    pub fn launch(opts: BrokerOpts) -> Broker {
        Broker::create(opts, false)
    }

    /// Starts a broker and waits until `/readyz` answers 200.
    ///
    /// Harness defaults: `node.id=1`, `listeners=PLAINTEXT://127.0.0.1:<port>`,
    /// `log.dirs=<tmp>/data`, `http.listener=127.0.0.1:<port>`.
    pub fn start(opts: BrokerOpts) -> Broker {
        Broker::create(opts, true)
    }

    fn create(opts: BrokerOpts, wait: bool) -> Broker {
        let bin = broker_bin();
        assert!(
            bin.is_file(),
            "broker binary not found at {}: build it first with `cargo build -p tideline-broker` \
             (or point TIDELINE_BROKER_BIN at it)",
            bin.display()
        );
        let root = tempfile::Builder::new()
            .prefix("tideline-test-")
            .tempdir()
            .expect("create temp dir");
        let root_path = root.path().to_path_buf();
        let data_dir = root_path.join("data");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let log_path = root_path.join("broker.log");
        let kafka_port = opts.kafka_port.unwrap_or_else(free_port);
        let http_port = opts.http_port.unwrap_or_else(free_port);

        let mut settings: Vec<(String, String)> = vec![
            (
                "listeners".into(),
                format!("PLAINTEXT://127.0.0.1:{kafka_port}"),
            ),
            ("log.dirs".into(), data_dir.display().to_string()),
            ("http.listener".into(), format!("127.0.0.1:{http_port}")),
        ];
        if opts.config_file.is_none() {
            settings.insert(0, ("node.id".into(), "1".into()));
        }
        for (k, v) in opts.overrides {
            settings.retain(|(key, _)| *key != k);
            settings.push((k, v));
        }
        let mut args: Vec<String> = settings
            .into_iter()
            .flat_map(|(k, v)| ["--override".to_string(), format!("{k}={v}")])
            .collect();
        if let Some(file) = &opts.config_file {
            args.insert(0, file.display().to_string());
            args.insert(0, "--config".to_string());
        }

        let mut broker = Broker {
            bin,
            root: Some(root),
            root_path,
            data_dir,
            log_path,
            kafka_port,
            http_port,
            args,
            env: opts.env,
            ready_timeout: opts.ready_timeout,
            child: None,
            starts: 0,
        };
        broker.spawn();
        if wait {
            broker.wait_ready();
        }
        broker
    }

    /// `"127.0.0.1:<port>"` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    pub fn kafka_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.kafka_port))
    }

    pub fn kafka_port(&self) -> u16 {
        self.kafka_port
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    /// The broker's `log.dirs`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The file receiving the broker's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still alive (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            None => false,
            Some(child) => match child.try_wait().expect("try_wait") {
                None => true,
                Some(status) => {
                    eprintln!("[harness] broker exited on its own: {status}");
                    self.child = None;
                    false
                }
            },
        }
    }

    /// Panics with the log tail if the broker process has died.
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            panic!(
                "broker is not running\n{}",
                self.log_tail_banner(self.log_tail(80))
            );
        }
    }

    /// SIGKILL (a crash) and reap the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// SIGTERM, wait for the process to exit, and assert it exited cleanly
    /// (status 0) within 30 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("stop(): broker is not running");
        };
        // A stopped (paused) process would only act on SIGTERM once resumed.
        signal(&child, libc::SIGCONT);
        signal(&child, libc::SIGTERM);
        match wait_timeout(&mut child, Duration::from_secs(30)) {
            Some(status) if status.success() => {}
            Some(status) => panic!(
                "broker did not exit cleanly on SIGTERM: {}\n{}",
                describe_status(status),
                self.log_tail_banner(self.log_tail(80))
            ),
            None => {
                signal(&child, libc::SIGKILL);
                let _ = child.wait();
                panic!(
                    "broker did not exit within 30 s of SIGTERM (killed it)\n{}",
                    self.log_tail_banner(self.log_tail(80))
                );
            }
        }
    }

    /// SIGSTOP: the process freezes with its sockets open, like a broker in
    /// a long GC pause or a hung host.
    pub fn pause(&mut self) {
        let child = self.child.as_ref().expect("pause(): broker is not running");
        signal(child, libc::SIGSTOP);
    }

    /// SIGCONT after [`Broker::pause`].
    pub fn resume(&mut self) {
        let child = self
            .child
            .as_ref()
            .expect("resume(): broker is not running");
        signal(child, libc::SIGCONT);
    }

    /// Starts the broker again on the same ports and data directory and
    /// waits until it is ready. A broker that is still running is first
    /// stopped cleanly (SIGTERM); use [`Broker::kill`] first to restart
    /// after a crash instead.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.stop();
        }
        self.spawn_and_wait_ready();
    }

    /// `GET /metrics` (Prometheus text format).
    pub fn metrics(&self) -> String {
        let resp = self.http_get("/metrics");
        assert_eq!(resp.status, 200, "GET /metrics: {}", resp.text());
        resp.text()
    }

    /// The sum of the samples of `series` in `/metrics`: a bare name sums
    /// every label set, `name{labels}` must match a line exactly; 0 when
    /// nothing matches (a labelled counter not yet incremented).
    pub fn metric(&self, series: &str) -> f64 {
        sum_samples(&self.metrics(), series)
    }

    /// `GET path` on the broker's HTTP listener.
    pub fn http_get(&self, path: &str) -> http::Response {
        http::get(self.http_addr(), path)
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", self.http_addr()))
    }

    /// The last `lines` lines of the broker's output (all starts).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            // Only the end of a possibly large file is interesting.
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(256 * 1024)));
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            text = String::from_utf8_lossy(&buf).into_owned();
        }
        let all: Vec<String> = text
            .lines()
            .map(strip_ansi)
            .filter(|l| keep_log_line(l))
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_tail_banner(&self, tail: String) -> String {
        format!(
            "----- tail of {} -----\n{tail}\n----- end of broker log -----",
            self.log_path.display()
        )
    }

    fn spawn_and_wait_ready(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open broker log");
        writeln!(
            log,
            "===== tideline-tests: start #{}: {} {} =====",
            self.starts,
            self.bin.display(),
            self.args.join(" ")
        )
        .expect("write broker log");
        let mut command = Command::new(&self.bin);
        // If the test process dies without running destructors (killed by a
        // timeout, say), take the broker down with it instead of leaving it
        // orphaned. Linux delivers this when the spawning *thread* exits;
        // brokers are started and dropped on their test's thread.
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// Waits until `/readyz` answers 200; panics with the log tail if the
    /// process exits or the ready timeout passes.
    pub fn wait_ready(&mut self) {
        let started = Instant::now();
        let mut last;
        loop {
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    self.child = None;
                    panic!(
                        "broker exited during startup: {}\n{}",
                        describe_status(status),
                        self.log_tail_banner(self.log_tail(80))
                    );
                }
            }
            match http::get(self.http_addr(), "/readyz") {
                Ok(r) if r.status == 200 => return,
                Ok(r) => last = format!("HTTP {}: {}", r.status, r.text().trim()),
                Err(e) => last = e.to_string(),
            }
            if started.elapsed() > self.ready_timeout {
                panic!(
                    "broker not ready after {:?} (last /readyz: {last})\n{}",
                    self.ready_timeout,
                    self.log_tail_banner(self.log_tail(80))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "[harness] test failed; broker data in {}\n{}",
                self.root_path.display(),
                self.log_tail_banner(self.log_tail(80))
            );
        }
        if std::env::var_os("TIDELINE_KEEP_DATA").is_some() {
            if let Some(root) = self.root.take() {
                eprintln!("[harness] keeping {}", root.keep().display());
            }
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) has no memory-safety preconditions; the pid belongs to
    // a child we have not reaped yet, so it cannot have been reused.
    let rc = unsafe { libc::kill(pid, sig) };
    assert!(
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH),
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Removes ANSI colour sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the sequence.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Keeps log tails short and to the point: backtrace frames outside our
/// own and the protocol crate's code, and their `at file:line` lines, are
/// dropped so the panic message stays within the tail.
fn keep_log_line(line: &str) -> bool {
    let t = line.trim_start();
    if t.starts_with("at ") {
        return false;
    }
    let is_frame = t
        .split_once(": ")
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    !is_frame || t.contains("tideline") || t.contains("kafka_protocol")
}

/// See [`Broker::metric`].
pub fn sum_samples(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(s, _)| {
            *s == series || (!series.contains('{') && s.split('{').next() == Some(series))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}
