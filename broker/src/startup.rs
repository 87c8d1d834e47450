//! Start-up and shutdown in order.
//!
//! Start: claim the log directory (`meta.properties`), start the metadata
//! quorum and wait for it, open and recover the partition logs it names,
//! then bind the Kafka listener and report ready. Stop (SIGTERM/SIGINT):
//! report not ready, stop accepting, let in-flight requests finish, stop the
//! quorum, flush every log and leave the clean-shutdown marker.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::config::settings::DirectIo;
use crate::config::BrokerConfig;
use crate::disk::write::write_atomically;
use crate::log::direct_tail::DirectPolicy;
use crate::metadata::records::BrokerRegistration;
use crate::metadata::MetadataQuorum;
use crate::ops::metrics::Metrics;
use crate::partition::LogManager;

const METADATA_DIR: &str = "__cluster_metadata-0";

pub async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = Arc::new(config);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let settings = &config.settings;
    if let Some(ip) = settings.outbound_bind_host {
        crate::util::set_outbound_bind(ip);
    }

    let log_dir = config.log_dir.clone();
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create log.dirs {}", log_dir.display()))?;
    let cluster_id = claim_log_dir(&log_dir, config.node_id, settings.cluster_id.as_deref())?;
    let storage = &settings.storage;
    crate::log::direct_tail::set_memory_budget(storage.direct_io_buffer_bytes);
    crate::log::flusher::set_writeback_interval(storage.segment_writeback_bytes);
    crate::log::direct_tail::set_policy(if storage.direct_io == DirectIo::On {
        DirectPolicy::Always
    } else {
        DirectPolicy::UnderWritebackPressure
    });
    let logs = Arc::new(
        LogManager::open(
            &log_dir,
            storage.reserved_bytes,
            storage.direct_io != DirectIo::Off,
        )
        .context("cannot open the log directory")?,
    );
    tracing::info!(
        node_id = config.node_id,
        %cluster_id,
        log_dir = %log_dir.display(),
        clean_shutdown = logs.was_clean_shutdown(),
        "starting broker"
    );

    // The HTTP port comes up first so /healthz and /readyz answer during recovery.
    let metrics = Arc::new(Metrics::new());
    let http_listener = TcpListener::bind(config.http_listener)
        .await
        .with_context(|| format!("cannot bind http.listener {}", config.http_listener))?;

    let listener = &config.advertised_listeners[0];
    // Only voters serve the quorum (a shared configuration may name a
    // controller listener on broker-only nodes too).
    let controller_listener = match config
        .controller_listener
        .as_ref()
        .filter(|_| config.is_controller)
    {
        Some(l) => Some(
            TcpListener::bind(l.bind_addr())
                .await
                .with_context(|| format!("cannot bind controller listener {}", l.bind_addr()))?,
        ),
        None => None,
    };
    let voters = config
        .voters
        .iter()
        .map(|v| (v.id as u64, v.address()))
        .collect();
    let quorum = if config.is_controller {
        MetadataQuorum::start(
            &log_dir.join(METADATA_DIR),
            config.node_id as u64,
            format!("{}:{}", listener.host, listener.port),
            voters,
            controller_listener,
            shutdown_rx.clone(),
        )
        .await
    } else {
        MetadataQuorum::start_observer(config.node_id as u64, voters, shutdown_rx.clone()).await
    };
    let quorum = Arc::new(quorum.context("cannot start the metadata quorum")?);
    let broker = Arc::new(Broker::new(
        config.clone(),
        cluster_id,
        quorum.clone(),
        logs.clone(),
        metrics,
    ));
    let http_task = tokio::spawn(crate::ops::http::serve(
        http_listener,
        broker.clone(),
        shutdown_rx.clone(),
    ));

    quorum
        .wait_ready(Duration::from_secs(60))
        .await
        .context("the metadata quorum did not elect a leader")?;
    let advertised = &config.advertised_listeners[0];
    broker
        .controller
        .register_broker(BrokerRegistration {
            broker_id: config.node_id,
            incarnation_id: uuid::Uuid::new_v4(),
            host: advertised.host.clone(),
            port: advertised.port as i32,
            rack: config.rack(),
        })
        .await
        .context("cannot register the broker")?;
    broker.sync_logs().await;
    tracing::info!(partitions = logs.all().len(), "logs loaded");

    let mut kafka_listeners = Vec::new();
    for l in &config.listeners {
        let bound = TcpListener::bind(l.bind_addr())
            .await
            .with_context(|| format!("cannot bind listener {}://{}", l.name, l.bind_addr()))?;
        kafka_listeners.push(tokio::spawn(crate::server::run_listener(
            bound,
            broker.clone(),
            shutdown_rx.clone(),
        )));
    }
    let background = spawn_background_tasks(broker.clone(), shutdown_rx.clone());
    broker.set_ready(true);
    tracing::info!(
        listeners = ?config.listeners.iter().map(|l| l.bind_addr()).collect::<Vec<_>>(),
        http = %config.http_listener,
        startup_ms = started.elapsed().as_millis() as u64,
        "broker ready"
    );

    wait_for_signal().await;
    tracing::info!("shutting down");
    if config.settings.shutdown.controlled {
        broker
            .controlled_shutdown(config.settings.shutdown.timeout)
            .await;
    }
    broker.set_ready(false);
    broker.replicas.shutdown();
    let _ = shutdown_tx.send(true);
    // Members parked in JoinGroup/SyncGroup are told to find the coordinator
    // again, so their connections can drain now.
    broker.groups.release_waiters();
    for task in kafka_listeners {
        let _ = task.await;
    }
    for task in background {
        let _ = task.await;
    }
    // Connections close between requests once they see the signal; wait for
    // in-flight requests (a long-poll fetch at most its max wait) to finish
    // so nothing is appended after the logs are closed.
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while broker.metrics.connections.get() > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    quorum.shutdown().await;
    let logs_for_close = logs.clone();
    tokio::task::spawn_blocking(move || logs_for_close.shutdown())
        .await
        .context("log shutdown task failed")?
        .context("cannot flush logs at shutdown")?;
    let _ = http_task.await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Retention, log cleaning (compaction), idle-producer expiry, time-based flushes and
/// checkpoints, each on its own interval.
fn spawn_background_tasks(
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let settings = broker.config.settings.clone();
    let upkeep = &settings.upkeep;
    let mut tasks = Vec::new();
    // Followers that stopped catching up leave the ISR (checked at half
    // the allowed lag, as Kafka does).
    let b = broker.clone();
    tasks.push(every(
        broker.replicas.lag_max() / 2,
        shutdown.clone(),
        move || b.replicas.shrink_isrs(),
    ));
    let b = broker.clone();
    tasks.push(every(upkeep.retention_check, shutdown.clone(), move || {
        let deleted = b.logs.apply_retention();
        if deleted > 0 {
            tracing::info!(segments = deleted, "retention deleted segments");
        }
    }));
    let b = broker.clone();
    tasks.push(every(upkeep.cleaner_backoff, shutdown.clone(), move || {
        b.logs.clean_logs();
    }));
    // Group sessions and rebalance deadlines are checked ten times a second.
    let b = broker.clone();
    tasks.push(every(
        Duration::from_millis(100),
        shutdown.clone(),
        move || b.groups.tick(),
    ));
    let b = broker.clone();
    tasks.push(every(
        upkeep.offsets_expiry_check,
        shutdown.clone(),
        move || {
            b.groups.expire_offsets();
        },
    ));
    let b = broker.clone();
    let expiration_ms = upkeep.producer_id_expiration_ms;
    tasks.push(every(
        upkeep.producer_expiry_check,
        shutdown.clone(),
        move || {
            let removed = b.logs.remove_expired_producers(expiration_ms);
            if removed > 0 {
                tracing::info!(producers = removed, "forgot idle producers");
            }
        },
    ));
    // Transactions open past their timeout are aborted; idle
    // transactional ids are forgotten.
    let b = broker.clone();
    let mut stop = shutdown.clone();
    let txn = settings.transactions.clone();
    tasks.push(tokio::spawn(async move {
        let mut abort = tokio::time::interval(txn.abort_timed_out_interval);
        let mut expire = tokio::time::interval(txn.remove_expired_interval);
        abort.tick().await;
        expire.tick().await;
        loop {
            tokio::select! {
                _ = abort.tick() => { b.transactions.abort_timed_out().await; }
                _ = expire.tick() => { b.transactions.remove_expired(); }
                _ = stop.changed() => break,
            }
        }
    }));
    // How close the kernel is to writing back: decides direct writes
    // (`log.direct.io.enable=auto`), and whether an append may be throttled
    // and so must leave the async worker.
    tasks.push(every(
        Duration::from_millis(100),
        shutdown.clone(),
        crate::disk::writeback::sample,
    ));
    let b = broker.clone();
    tasks.push(every(upkeep.flush_check, shutdown.clone(), move || {
        b.logs.flush_due()
    }));
    let b = broker.clone();
    tasks.push(every(upkeep.checkpoint, shutdown.clone(), move || {
        if let Err(e) = b.logs.write_checkpoints() {
            tracing::error!(error = %e, "cannot write checkpoints");
        }
    }));
    // Heartbeats to the active controller, and (on the controller) fencing
    // of brokers whose heartbeats stopped.
    let heartbeat_every = settings.liveness.heartbeat_interval;
    let session = settings.liveness.session_timeout;
    let imbalance_every = settings.leader_balance.check_interval;
    let b = broker.clone();
    let mut stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        let mut check = tokio::time::interval(Duration::from_millis(500));
        let mut last_rebalance = Instant::now();
        loop {
            tokio::select! {
                _ = heartbeat.tick() => b.quorum.send_heartbeat(b.node_id()).await,
                _ = check.tick() => {
                    b.quorum.apply_liveness(session).await;
                    let rebalance = last_rebalance.elapsed() >= imbalance_every;
                    if rebalance {
                        last_rebalance = Instant::now();
                    }
                    b.run_elections(rebalance).await;
                }
                _ = stop.changed() => break,
            }
        }
    }));
    // The log directory's free space, and what the controller knows of it.
    let b = broker.clone();
    tasks.push(every(
        Duration::from_millis(250),
        shutdown.clone(),
        move || b.logs.health().sample(),
    ));
    let b = broker.clone();
    let mut stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let mut changes = b.logs.health().subscribe();
        let mut recheck = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = changes.changed() => {}
                _ = recheck.tick() => {}
                _ = stop.changed() => break,
            }
            b.report_log_dir_state().await;
        }
    }));
    // Keep local logs in step with metadata changes made elsewhere.
    let b = broker.clone();
    let mut images = broker.quorum.subscribe();
    let mut stop = shutdown;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = images.changed() => {
                    if changed.is_err() { break; }
                    b.sync_logs().await;
                }
                _ = stop.changed() => break,
            }
        }
    }));
    tasks
}

/// Runs blocking `work` every `period` until shutdown.
fn every(
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    work: impl Fn() + Send + Sync + Clone + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let work = work.clone();
                    let _ = tokio::task::spawn_blocking(work).await;
                }
                _ = shutdown.changed() => break,
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Reads or writes `meta.properties`, Kafka's record of which cluster and
/// node a log directory belongs to; refuses a directory of another node.
fn claim_log_dir(
    dir: &Path,
    node_id: i32,
    configured_cluster: Option<&str>,
) -> anyhow::Result<String> {
    let path = dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let props = crate::config::parse_properties(&text, "meta.properties")?;
        let get = |k: &str| {
            props
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let stored_node = get("node.id").and_then(|v| v.parse::<i32>().ok());
        if stored_node != Some(node_id) {
            bail!(
                "log directory {} belongs to node {:?}, but node.id is {node_id}",
                dir.display(),
                stored_node
            );
        }
        let cluster = get("cluster.id").unwrap_or_default();
        if let Some(configured) = configured_cluster {
            if configured != cluster {
                bail!(
                    "log directory {} belongs to cluster {cluster}, but cluster.id is {configured}",
                    dir.display()
                );
            }
        }
        return Ok(cluster);
    }
    let cluster = configured_cluster
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let text = format!("version=1\ncluster.id={cluster}\nnode.id={node_id}\n");
    write_atomically(&path, text.as_bytes())?;
    Ok(cluster)
}
