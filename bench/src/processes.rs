//! Broker processes the benchmark starts, stops and measures: a single
//! broker, a `--local-cluster 3`, or a cluster of separate node processes
//! that a run can SIGKILL and start again one by one; each in a fresh
//! temporary data directory, and the CPU time they (and their child
//! processes) used.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running broker (or local cluster) under test.
pub struct BrokerProcess {
    child: Child,
    pub bootstrap: String,
    data_dir: PathBuf,
    /// How the process was started, to start it again after a kill.
    program: PathBuf,
    args: Vec<String>,
    ports: Vec<u16>,
}

impl BrokerProcess {
    /// One broker, data in a new directory under `work_dir`.
    pub fn single(bin: &Path, work_dir: &Path, overrides: &[String]) -> Result<BrokerProcess> {
        let data_dir = fresh_dir(work_dir, "single")?;
        let kafka = free_port()?;
        let http = free_port()?;
        let settings = [
            format!("listeners=PLAINTEXT://127.0.0.1:{kafka}"),
            format!("advertised.listeners=PLAINTEXT://127.0.0.1:{kafka}"),
            format!("http.listener=127.0.0.1:{http}"),
            format!("log.dirs={}", data_dir.join("data").display()),
        ];
        let args = settings
            .iter()
            .chain(overrides)
            .flat_map(|s| override_arg(s))
            .collect();
        Self::spawn(bin, args, data_dir, vec![kafka])
    }

    /// `nodes` separate broker processes (ids 1..=nodes, every one a
    /// combined broker and controller), so that one can be killed while
    /// the others go on; started together, since a quorum needs a majority.
    pub fn cluster(bin: &Path, work_dir: &Path, nodes: usize) -> Result<Vec<BrokerProcess>> {
        let ports: Vec<(u16, u16, u16)> = (0..nodes)
            .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
            .collect::<Result<_>>()?;
        let voters: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, controller, _))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect();
        let cluster_id = format!("tideline-bench-{}", std::process::id());
        let mut children = Vec::new();
        for (i, (kafka, controller, http)) in ports.iter().enumerate() {
            let data_dir = fresh_dir(work_dir, "node")?;
            let settings = [
                format!("node.id={}", i + 1),
                "process.roles=broker,controller".to_string(),
                format!(
                    "listeners=PLAINTEXT://127.0.0.1:{kafka},CONTROLLER://127.0.0.1:{controller}"
                ),
                format!("http.listener=127.0.0.1:{http}"),
                format!("controller.quorum.voters={}", voters.join(",")),
                format!("cluster.id={cluster_id}"),
                format!("log.dirs={}", data_dir.join("data").display()),
            ];
            let args = settings.iter().flat_map(|s| override_arg(s)).collect();
            children.push(Self::launch(bin, args, data_dir, vec![*kafka])?);
        }
        for node in &mut children {
            node.wait_listening()?;
        }
        Ok(children)
    }

    /// `tideline-broker --local-cluster 3` (one parent process, a child
    /// per node), data under a new directory.
    pub fn local_cluster(bin: &Path, work_dir: &Path, nodes: usize) -> Result<BrokerProcess> {
        let data_dir = fresh_dir(work_dir, "cluster")?;
        // The cluster takes base..base+N, +100.., +200..: find a free block.
        let base = (20_000..60_000)
            .step_by(1_000)
            .find(|&base| {
                (0..nodes as u16).all(|i| {
                    [0, 100, 200]
                        .iter()
                        .all(|o| TcpListener::bind(("127.0.0.1", base + o + i)).is_ok())
                })
            })
            .context("no free port block for a local cluster")?;
        let args = vec![
            "--local-cluster".to_string(),
            nodes.to_string(),
            "--base-port".to_string(),
            base.to_string(),
        ];
        let ports = (0..nodes as u16).map(|i| base + i).collect();
        Self::spawn(bin, args, data_dir, ports)
    }

    fn spawn(
        bin: &Path,
        args: Vec<String>,
        data_dir: PathBuf,
        ports: Vec<u16>,
    ) -> Result<BrokerProcess> {
        let mut process = Self::launch(bin, args, data_dir, ports)?;
        process.wait_listening()?;
        Ok(process)
    }

    /// Starts the process without waiting for it to listen.
    fn launch(
        bin: &Path,
        args: Vec<String>,
        data_dir: PathBuf,
        ports: Vec<u16>,
    ) -> Result<BrokerProcess> {
        let child = start(bin, &args, &data_dir)?;
        let bootstrap = ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        Ok(BrokerProcess {
            child,
            bootstrap,
            data_dir,
            program: bin.to_path_buf(),
            args,
            ports,
        })
    }

    fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        for &port in &self.ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(status) = self.child.try_wait()? {
                    bail!(
                        "the broker exited ({status}) during start-up; see {}",
                        self.log_path().display()
                    );
                }
                if Instant::now() > deadline {
                    bail!("the broker did not listen on {port} within {START_TIMEOUT:?}");
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The broker's stdout and stderr (appended to across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("broker.log")
    }

    /// SIGKILL, as a crash or a power cut of the process; the data stays.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts a killed broker again on the same data and ports, and waits
    /// until it listens.
    pub fn start_again(&mut self) -> Result<()> {
        self.child = start(&self.program, &self.args, &self.data_dir)?;
        self.wait_listening()
    }

    /// Bytes of `.log` segments stored for `topic` (single broker).
    pub fn stored_bytes(&self, topic: &str) -> Result<u64> {
        let mut total = 0;
        for entry in fs::read_dir(self.data_dir.join("data"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((t, partition)) = name.rsplit_once('-') else {
                continue;
            };
            if t != topic || partition.parse::<u32>().is_err() {
                continue;
            }
            for file in fs::read_dir(entry.path())? {
                let file = file?;
                if file.path().extension().is_some_and(|e| e == "log") {
                    total += file.metadata()?.len();
                }
            }
        }
        Ok(total)
    }

    /// CPU seconds (user + system) used so far by the broker and its
    /// children (the nodes of a local cluster).
    pub fn cpu_seconds(&self) -> Result<f64> {
        let root = self.child.id();
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let mut ticks = 0u64;
        for entry in fs::read_dir("/proc")? {
            let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue; // exited meanwhile
            };
            // Fields after the parenthesised command name: state ppid ...
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let parent: u32 = fields.get(1).and_then(|f| f.parse().ok()).unwrap_or(0);
            if pid == root || parent == root {
                let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
                let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
                ticks += utime + stime;
            }
        }
        Ok(ticks as f64 / ticks_per_second)
    }

    /// SIGTERM (a controlled shutdown), then SIGKILL if it takes too long;
    /// the data directory is removed.
    pub fn stop(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_TIMEOUT;
            while self.child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    self.child.kill()?;
                    self.child.wait()?;
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        fs::remove_dir_all(&self.data_dir).ok();
        Ok(())
    }
}

/// A run that fails half-way still stops its brokers and removes their
/// data, instead of leaving them running.
impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

fn override_arg(setting: &str) -> [String; 2] {
    ["--override".to_string(), setting.to_string()]
}

/// Starts `bin` in `data_dir` (a local cluster's nodes go below it),
/// output appended to its `broker.log`.
fn start(bin: &Path, args: &[String], data_dir: &Path) -> Result<Child> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("broker.log"))?;
    Command::new(bin)
        .args(args)
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the broker")
}

/// A new directory per broker started in this run.
fn fresh_dir(work_dir: &Path, kind: &str) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = work_dir.join(format!("{kind}-{}-{n}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
