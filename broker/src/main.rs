//! The `tideline-broker` binary: parse the command line, set up logging,
//! load the configuration and run the broker until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use clap::Parser;
use tideline_broker::config::BrokerConfig;
use tideline_broker::startup;

#[global_allocator]
static ALLOCATOR: tideline_broker::alloc::BrokerAllocator = tideline_broker::alloc::BrokerAllocator;

/// A Kafka-compatible streaming broker. With no settings it runs a single
/// node on 127.0.0.1:9092 with data under ./data.
#[derive(Parser, Debug)]
#[command(name = "tideline-broker", version)]
struct Args {
    /// A Kafka-style properties file (key=value per line).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A setting that wins over the file and TIDELINE_<KEY> environment
    /// variables; may be repeated.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Start a cluster of N brokers on this machine instead of one broker:
    /// Kafka ports from --base-port on, data under ./data/cluster. Ctrl-C
    /// stops it. --override settings apply to every node.
    #[arg(long, value_name = "N")]
    local_cluster: Option<usize>,
    /// First Kafka port of --local-cluster (controller ports start 100
    /// higher, HTTP ports 200 higher).
    #[arg(long, default_value_t = 9092, requires = "local_cluster")]
    base_port: u16,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    tideline_broker::alloc::keep_freed_memory();
    let args = Args::parse();
    if let Some(nodes) = args.local_cluster {
        let root = std::path::Path::new("data").join("cluster");
        if let Err(e) =
            tideline_broker::local_cluster::run(nodes, args.base_port, &root, &args.overrides)
        {
            eprintln!("tideline-broker: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let config = match BrokerConfig::load(args.config.as_deref(), std::env::vars(), &args.overrides)
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tideline-broker: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tideline")
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(startup::run(config)) {
        tracing::error!(error = %format!("{e:#}"), "broker stopped with an error");
        eprintln!("tideline-broker: {e:#}");
        std::process::exit(1);
    }
}
