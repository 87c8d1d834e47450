//! `tideline-broker --local-cluster N`: a cluster of N brokers on this
//! machine for trying things out. Each node is a child process of this one
//! with its own ports and data directory, chosen from a base port:
//!
//! ```text
//! node i (1..=N): Kafka 127.0.0.1:<base+i-1>, controller <base+100+i-1>,
//!                 HTTP <base+200+i-1>, data ./data/cluster/node-<i>
//! ```
//!
//! Nodes 1 to 3 are the metadata quorum's voters; any further ones are
//! broker-only. Every line a node logs is prefixed with `[node i]`. Ctrl-C
//! (or SIGTERM) stops the nodes one at a time, each with a controlled
//! shutdown; running the command again restarts the same cluster with its
//! data.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The settings of node `id` of an `nodes`-node cluster.
/// Voters of a local cluster; the rest of its nodes are broker-only.
const MAX_VOTERS: usize = 3;

pub fn node_settings(id: usize, nodes: usize, base_port: u16, data_root: &Path) -> Vec<String> {
    let port = |offset: usize, i: usize| base_port as usize + offset + i - 1;
    // Up to three voters (an odd quorum that survives one loss); further
    // nodes are broker-only and follow the voters' metadata.
    let voter_count = nodes.min(MAX_VOTERS);
    let voters: Vec<String> = (1..=voter_count)
        .map(|i| format!("{i}@127.0.0.1:{}", port(100, i)))
        .collect();
    let is_voter = id <= voter_count;
    let listeners = if is_voter {
        format!(
            "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
            port(0, id),
            port(100, id)
        )
    } else {
        format!("listeners=PLAINTEXT://127.0.0.1:{}", port(0, id))
    };
    let roles = if is_voter {
        "broker,controller"
    } else {
        "broker"
    };
    vec![
        format!("node.id={id}"),
        format!("process.roles={roles}"),
        listeners,
        format!("http.listener=127.0.0.1:{}", port(200, id)),
        format!("controller.quorum.voters={}", voters.join(",")),
        format!("cluster.id=tideline-local-{nodes}"),
        format!(
            "log.dirs={}",
            data_root.join(format!("node-{id}")).display()
        ),
    ]
}

/// Runs the cluster until Ctrl-C or SIGTERM; `extra` settings (from
/// `--override`) apply to every node.
pub fn run(nodes: usize, base_port: u16, data_root: &Path, extra: &[String]) -> anyhow::Result<()> {
    if !(1..=9).contains(&nodes) {
        bail!("--local-cluster takes 1 to 9 nodes, not {nodes}");
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut children: Vec<(usize, Child)> = Vec::new();
    for id in 1..=nodes {
        let mut command = Command::new(&exe);
        for setting in node_settings(id, nodes, base_port, data_root)
            .iter()
            .chain(extra)
        {
            command.arg("--override").arg(setting);
        }
        // Own process group: a terminal's Ctrl-C reaches only this
        // supervisor, which then stops the nodes one at a time.
        let mut child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start node {id}"))?;
        prefix_lines(id, child.stdout.take());
        prefix_lines(id, child.stderr.take());
        children.push((id, child));
    }
    let bootstrap: Vec<String> = (1..=nodes)
        .map(|i| format!("127.0.0.1:{}", base_port as usize + i - 1))
        .collect();
    eprintln!(
        "local cluster of {nodes} brokers starting; bootstrap.servers={}; data under {}; Ctrl-C stops it",
        bootstrap.join(","),
        data_root.display()
    );
    while !STOP.load(Ordering::SeqCst) {
        for (id, child) in &mut children {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("node {id} exited ({status}); stopping the others");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // One node at a time, as a rolling stop: each controlled shutdown
    // moves leadership to nodes still running, with the quorum intact.
    eprintln!("stopping the local cluster");
    for (id, mut child) in children.into_iter().rev() {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = child.wait()?;
        eprintln!("node {id} stopped ({status})");
    }
    Ok(())
}

fn prefix_lines(id: usize, stream: Option<impl std::io::Read + Send + 'static>) {
    if let Some(stream) = stream {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                eprintln!("[node {id}] {line}");
            }
        });
    }
}
