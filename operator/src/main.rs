//! `tideline-operator`: `run` (the default) starts the controllers behind a
//! leader-election Lease with `/metrics`, `/healthz` and `/readyz`;
//! `crdgen` writes the CRD YAML.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::runtime::events::Reporter;
use tideline_operator::controller::{self, Context};
use tideline_operator::http::{self, HttpState};
use tideline_operator::leader;
use tideline_operator::metrics::OperatorMetrics;

#[derive(Parser)]
#[command(
    name = "tideline-operator",
    version,
    about = "Kubernetes operator for Tideline clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (the default).
    Run(RunArgs),
    /// Write the CRD YAML files into DIR (default: the repository's crds/
    /// and the Helm chart's files/crds/).
    Crdgen { dir: Option<PathBuf> },
}

#[derive(clap::Parser, Clone)]
struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "TIDELINE_OPERATOR_HTTP", default_value = "0.0.0.0:8080")]
    http: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "tideline-operator")]
    identity: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "TIDELINE_OPERATOR_LEASE",
        default_value = "tideline-operator"
    )]
    lease_name: String,
    /// Seconds the leader Lease stays valid without renewal (a standby
    /// takes over this long after the leader dies).
    #[arg(long, env = "TIDELINE_OPERATOR_LEASE_SECONDS", default_value_t = leader::DEFAULT_LEASE_SECONDS)]
    lease_seconds: u64,
    /// Seconds a restarted broker may take to rejoin before a rolling
    /// restart stops with a Warning.
    #[arg(long, env = "TIDELINE_OPERATOR_ROLL_TIMEOUT", default_value_t = 600)]
    roll_timeout_seconds: u64,
    /// KafkaCluster/KafkaTopic manifests (the Helm chart's values) to apply
    /// on becoming leader.
    #[arg(long, env = "TIDELINE_OPERATOR_RESOURCES_FILE")]
    resources_file: Option<PathBuf>,
    /// Log format: `json` (structured, the default) or `text`.
    #[arg(long, env = "TIDELINE_OPERATOR_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crdgen { dir }) => crdgen(dir),
        Some(Command::Run(args)) => run(args),
        None => run(RunArgs::parse_from(["tideline-operator"])),
    }
}

fn crdgen(dir: Option<PathBuf>) {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let dirs: Vec<PathBuf> = match dir {
        Some(dir) => vec![dir],
        None => tideline_operator::crdgen::OUTPUT_DIRS
            .iter()
            .map(|d| root.join(d))
            .collect(),
    };
    for dir in dirs {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("tideline-operator: cannot create {}: {e}", dir.display());
            std::process::exit(1);
        }
        for (file, yaml) in tideline_operator::crdgen::crds() {
            let path = dir.join(file);
            if let Err(e) = std::fs::write(&path, yaml) {
                eprintln!("tideline-operator: cannot write {}: {e}", path.display());
                std::process::exit(1);
            }
            println!("wrote {}", path.display());
        }
    }
}

fn run(args: RunArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "text" {
        builder.init();
    } else {
        builder.json().init();
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = runtime.block_on(operate(args)) {
        tracing::error!(error = %e, "operator stopped");
        std::process::exit(1);
    }
}

async fn operate(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = OperatorMetrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let state = HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(http::serve(args.http, state));

    let client = kube::Client::try_default().await?;
    let mut leadership = leader::elect(
        client.clone(),
        &args.namespace,
        &args.lease_name,
        &args.identity,
        args.lease_seconds,
    )
    .await?;
    ready.store(true, Ordering::Relaxed);
    tracing::info!(identity = %args.identity, lease = %args.lease_name, "waiting for leadership");
    while !*leadership.borrow_and_update() {
        leadership.changed().await?;
    }
    tracing::info!(identity = %args.identity, "became leader; starting controllers");
    metrics.set_leader(true);
    if let Some(path) = &args.resources_file {
        match std::fs::read_to_string(path) {
            Ok(text) => match tideline_operator::values_resources::apply(&client, &text).await {
                Ok(count) => {
                    tracing::info!(count, file = %path.display(), "applied resources from values")
                }
                Err(e) => {
                    tracing::error!(error = %e, file = %path.display(), "resources from values not applied")
                }
            },
            Err(e) => {
                tracing::error!(error = %e, file = %path.display(), "cannot read the resources file")
            }
        }
    }

    let reporter = Reporter {
        controller: "tideline-operator".into(),
        instance: Some(args.identity.clone()),
    };
    let ctx = Context::new(client, metrics.clone(), reporter)
        .with_roll_timeout(Duration::from_secs(args.roll_timeout_seconds));
    tokio::select! {
        _ = controller::run(ctx) => {
            tracing::info!("controllers stopped");
        }
        _ = async {
            loop {
                if leadership.changed().await.is_err() || !*leadership.borrow() {
                    break;
                }
            }
        } => {
            metrics.set_leader(false);
            return Err("lost the leader Lease; exiting so a standby takes over".into());
        }
        result = server => {
            return Err(format!("HTTP server stopped: {result:?}").into());
        }
    }
    Ok(())
}
