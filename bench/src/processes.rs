//! Broker processes the performance matrix starts, stops and measures: a
//! single broker or a `--local-cluster 3`, each in a fresh temporary data
//! directory, and the CPU time they (and their child processes) used.

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
}

impl BrokerProcess {
    /// One broker, data in a new directory under `work_dir`.
    pub fn single(bin: &Path, work_dir: &Path, overrides: &[String]) -> Result<BrokerProcess> {
        let data_dir = fresh_dir(work_dir, "single")?;
        let kafka = free_port()?;
        let http = free_port()?;
        let mut command = Command::new(bin);
        for setting in [
            format!("listeners=PLAINTEXT://127.0.0.1:{kafka}"),
            format!("advertised.listeners=PLAINTEXT://127.0.0.1:{kafka}"),
            format!("http.listener=127.0.0.1:{http}"),
            format!("log.dirs={}", data_dir.join("data").display()),
        ]
        .iter()
        .chain(overrides)
        {
            command.arg("--override").arg(setting);
        }
        Self::spawn(command, data_dir, vec![kafka])
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
        let mut command = Command::new(bin);
        command
            .args(["--local-cluster", &nodes.to_string()])
            .args(["--base-port", &base.to_string()])
            .current_dir(&data_dir);
        let ports = (0..nodes as u16).map(|i| base + i).collect();
        Self::spawn(command, data_dir, ports)
    }

    fn spawn(mut command: Command, data_dir: PathBuf, ports: Vec<u16>) -> Result<BrokerProcess> {
        let log = fs::File::create(data_dir.join("broker.log"))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command.spawn().context("starting the broker")?;
        let bootstrap = ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut process = BrokerProcess {
            child,
            bootstrap,
            data_dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        for port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(status) = process.child.try_wait()? {
                    bail!(
                        "the broker exited ({status}) during start-up; see {}",
                        process.data_dir.join("broker.log").display()
                    );
                }
                if Instant::now() > deadline {
                    bail!("the broker did not listen on {port} within {START_TIMEOUT:?}");
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(process)
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
