//! Consumer-group members as separate processes (the
//! `tideline-group-member` binary, or any program printing the same lines),
//! so tests can kill one the hard way.
//! A reader thread keeps every line the member prints; the helpers read
//! its current assignment and the records it processed and committed.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the member binary is: next to the broker binary.
pub fn member_bin() -> PathBuf {
    crate::broker::broker_bin().with_file_name("tideline-group-member")
}

pub struct Member {
    pub name: String,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Member {
    /// Starts a member of `group` subscribed to `topic`; `extra` are
    /// librdkafka properties.
    pub fn spawn(name: &str, bootstrap: &str, topic: &str, group: &str, extra: &[&str]) -> Member {
        let bin = member_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --workspace --bins` (the README's test command does)",
            bin.display()
        );
        let mut command = Command::new(&bin);
        command.args([bootstrap, topic, group]).args(extra);
        Member::spawn_command(name, command)
    }

    /// Starts any program that prints the member line protocol (for
    /// example a consumer written with another client library).
    pub fn spawn_command(name: &str, mut command: Command) -> Member {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start member {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Member {
            name: name.to_string(),
            child: Some(child),
            lines,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The partitions of the last ASSIGNMENT line (empty before the first).
    pub fn assignment(&self) -> BTreeSet<i32> {
        self.assignments().pop().unwrap_or_default()
    }

    /// Every assignment the member reported, in order.
    pub fn assignments(&self) -> Vec<BTreeSet<i32>> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("ASSIGNMENT "))
            .map(|list| {
                list.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|p| p.trim().parse().expect("partition number"))
                    .collect()
            })
            .collect()
    }

    /// Every consumer error the member reported.
    pub fn errors(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("ERROR "))
            .map(String::from)
            .collect()
    }

    /// (partition, offset) of every record processed.
    pub fn records(&self) -> Vec<(i32, i64)> {
        self.parsed("RECORD ")
    }

    /// (partition, next offset) of every successful commit.
    pub fn commits(&self) -> Vec<(i32, i64)> {
        self.parsed("COMMITTED ")
    }

    fn parsed(&self, prefix: &str) -> Vec<(i32, i64)> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|rest| {
                let mut parts = rest.split(' ');
                let p = parts.next().unwrap().parse().unwrap();
                let o = parts.next().unwrap().parse().unwrap();
                (p, o)
            })
            .collect()
    }

    /// Whether the process has ended (by itself or killed).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    /// SIGKILL: no LeaveGroup, no commit; the coordinator must notice the
    /// missing heartbeats.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: the member closes its consumer (leaving the group) and exits.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("member {} did not exit within 30 s of SIGTERM", self.name);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `condition` every 100 ms until it holds; panics with `what` and
/// the members' last lines after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, members: &[&Member], condition: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            let mut report = String::new();
            for m in members {
                let lines = m.lines();
                let tail: Vec<&String> = lines.iter().rev().take(10).collect();
                report.push_str(&format!(
                    "\n{}: assignment {:?}, {} records, last lines {:?}",
                    m.name,
                    m.assignment(),
                    m.records().len(),
                    tail
                ));
            }
            panic!("timed out after {timeout:?} waiting for {what}{report}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
