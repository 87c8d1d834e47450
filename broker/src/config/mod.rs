//! Broker configuration: Kafka property names read from a properties file,
//! `TIDELINE_<KEY>` environment variables and `--override key=value` flags
//! (flags win over the environment, which wins over the file).
//!
//! Every key is checked against [`definitions`]; an unknown key or a value
//! that does not parse stops start-up with a message naming it.

// The key tables live in the protocol crate, which the operator and the tools
// share without linking the broker.
pub use tideline_protocol::configs as definitions;
pub mod log_config;
pub mod settings;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use definitions::{broker_def, validate_value, BROKER_CONFIGS};
pub use log_config::LogConfig;
pub use settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: unknown configuration key '{key}'")]
    UnknownKey { origin: String, key: String },
    #[error("{origin}: malformed setting '{line}' (expected key=value)")]
    Malformed { origin: String, line: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Where a setting came from, for error messages and DescribeConfigs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    File,
    Environment,
    Flag,
}

/// One listener, `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// One entry of `controller.quorum.voters`: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

impl Voter {
    fn parse(text: &str) -> Result<Voter, ConfigError> {
        let invalid = || {
            ConfigError::Invalid(format!(
                "controller.quorum.voters: '{text}' is not id@host:port"
            ))
        };
        let (id, addr) = text.split_once('@').ok_or_else(invalid)?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(invalid)?;
        Ok(Voter {
            id: id.trim().parse().map_err(|_| invalid())?,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: port.parse().map_err(|_| invalid())?,
        })
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl Listener {
    fn parse(key: &str, text: &str) -> Result<Listener, ConfigError> {
        let invalid = || ConfigError::Invalid(format!("{key}: '{text}' is not NAME://host:port"));
        let (name, rest) = text.split_once("://").ok_or_else(invalid)?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
        let port = port.parse().map_err(|_| invalid())?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Listener {
            name: name.to_string(),
            host,
            port,
        })
    }

    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// The broker's static configuration after merging every source.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Keys set explicitly, with their source; everything else is a default.
    explicit: BTreeMap<String, (String, Source)>,
    pub node_id: i32,
    /// Listeners serving Kafka clients (every listener not named in
    /// `controller.listener.names`).
    pub listeners: Vec<Listener>,
    pub advertised_listeners: Vec<Listener>,
    /// The listener carrying metadata-quorum RPCs, if this node has one.
    pub controller_listener: Option<Listener>,
    /// `controller.quorum.voters`; empty means a quorum of this node alone.
    pub voters: Vec<Voter>,
    /// Whether `process.roles` includes `controller` (a voter, or the
    /// single node); otherwise the node observes the voters' metadata.
    pub is_controller: bool,
    pub log_dir: PathBuf,
    pub http_listener: SocketAddr,
    pub socket_request_max_bytes: usize,
    /// Every subsystem's typed settings (see `settings`).
    pub settings: Settings,
}

impl BrokerConfig {
    /// Merges the three sources; `env` is the process environment as pairs.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<BrokerConfig, ConfigError> {
        let mut explicit = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let origin = path.display().to_string();
            for (key, value) in parse_properties(&text, &origin)? {
                check_key(&origin, &key)?;
                explicit.insert(key, (value, Source::File));
            }
        }
        let env: BTreeMap<String, String> = env.into_iter().collect();
        for def in BROKER_CONFIGS {
            let var = env_var_name(def.name);
            if let Some(value) = env.get(&var) {
                explicit.insert(def.name.to_string(), (value.clone(), Source::Environment));
            }
        }
        for flag in overrides {
            let (key, value) = flag.split_once('=').ok_or_else(|| ConfigError::Malformed {
                origin: "--override".into(),
                line: flag.clone(),
            })?;
            let key = key.trim().to_string();
            check_key("--override", &key)?;
            explicit.insert(key, (value.trim().to_string(), Source::Flag));
        }
        Self::from_explicit(explicit)
    }

    fn from_explicit(
        explicit: BTreeMap<String, (String, Source)>,
    ) -> Result<BrokerConfig, ConfigError> {
        for (key, (value, _)) in &explicit {
            let def = broker_def(key).expect("keys were checked");
            validate_value(key, def.kind, def.validator, value).map_err(ConfigError::Invalid)?;
        }
        let lookup = |key: &str| value_of(&explicit, key);
        let reader = settings::Reader::new(&lookup);
        let settings = Settings::read(&reader)?;
        let node_id = reader.int("node.id")?;
        let socket_request_max_bytes = reader.size("socket.request.max.bytes")?;
        let mut config = BrokerConfig {
            explicit,
            node_id,
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            controller_listener: None,
            voters: Vec::new(),
            is_controller: true,
            log_dir: PathBuf::new(),
            http_listener: "127.0.0.1:9644".parse().expect("valid default"),
            socket_request_max_bytes,
            settings,
        };
        if let Some(broker_id) = config.get("broker.id") {
            if broker_id.parse::<i32>().ok() != Some(config.node_id) {
                return Err(ConfigError::Invalid(format!(
                    "broker.id ({broker_id}) must equal node.id ({})",
                    config.node_id
                )));
            }
        }
        config.voters = config
            .get_list("controller.quorum.voters")
            .iter()
            .map(|v| Voter::parse(v))
            .collect::<Result<_, _>>()?;
        let is_voter = config.voters.iter().any(|v| v.id == config.node_id);
        // Unset, the roles follow the voter list: a node listed there votes,
        // any other follows. One properties file then serves every node of
        // a cluster (the operator's ConfigMap), node.id alone telling them apart.
        let roles = if config.source("process.roles").is_none() && !config.voters.is_empty() {
            if is_voter {
                vec!["broker".to_string(), "controller".to_string()]
            } else {
                vec!["broker".to_string()]
            }
        } else {
            config.get_list("process.roles")
        };
        let has = |role: &str| roles.iter().any(|r| r == role);
        if !has("broker") {
            return Err(ConfigError::Invalid(format!(
                "process.roles={}: controller-only nodes are not supported yet; \
                 every node serves clients as a broker",
                roles.join(",")
            )));
        }
        config.is_controller = has("controller");
        let controller_names = config.get_list("controller.listener.names");
        let all: Vec<Listener> = config
            .get_list("listeners")
            .iter()
            .map(|l| Listener::parse("listeners", l))
            .collect::<Result<_, _>>()?;
        let (controllers, clients): (Vec<Listener>, Vec<Listener>) = all
            .into_iter()
            .partition(|l| controller_names.contains(&l.name));
        config.listeners = clients;
        config.controller_listener = controllers.into_iter().next();
        if config.listeners.is_empty() {
            return Err(ConfigError::Invalid(
                "listeners: at least one listener for Kafka clients is required".into(),
            ));
        }
        if config.voters.is_empty() && !config.is_controller {
            return Err(ConfigError::Invalid(
                "process.roles=broker needs controller.quorum.voters: a broker-only node \
                 follows the metadata of the voters"
                    .into(),
            ));
        }
        if !config.voters.is_empty() {
            if config.is_controller != is_voter {
                return Err(ConfigError::Invalid(format!(
                    "node.id={} is {}in controller.quorum.voters but process.roles is {}: \
                     voters have the controller role and only voters do",
                    config.node_id,
                    if is_voter { "" } else { "not " },
                    roles.join(",")
                )));
            }
            if config.get("cluster.id").is_none() {
                return Err(ConfigError::Invalid(
                    "controller.quorum.voters is set, but cluster.id is not: give every node \
                     of the cluster the same cluster.id"
                        .into(),
                ));
            }
            if config.is_controller && config.controller_listener.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "controller.quorum.voters is set, but listeners has no {} listener \
                     for the quorum's traffic",
                    controller_names.join("/")
                )));
            }
        }
        config.advertised_listeners = match config.get("advertised.listeners") {
            Some(_) => config
                .get_list("advertised.listeners")
                .iter()
                .map(|l| Listener::parse("advertised.listeners", l))
                .collect::<Result<_, _>>()?,
            None => config.listeners.clone(),
        };
        config
            .advertised_listeners
            .retain(|l| !controller_names.contains(&l.name));
        for listener in &mut config.advertised_listeners {
            if listener.host.is_empty() || listener.host == "0.0.0.0" {
                listener.host = "127.0.0.1".into();
            }
        }
        let dirs = config.get_list("log.dirs");
        config.log_dir = match dirs.as_slice() {
            [] => PathBuf::from(config.get("log.dir").unwrap_or("./data")),
            [one] => PathBuf::from(one),
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "log.dirs: {} directories given; one log directory is supported",
                    dirs.len()
                )))
            }
        };
        let http = config.get("http.listener").unwrap_or("127.0.0.1:9644");
        config.http_listener = resolve_addr(http).ok_or_else(|| {
            ConfigError::Invalid(format!("http.listener: '{http}' is not host:port"))
        })?;
        Ok(config)
    }

    /// The value of a key: explicit, else its default.
    pub fn get(&self, key: &str) -> Option<&str> {
        value_of(&self.explicit, key)
    }

    /// Whether the key was set explicitly (and how).
    pub fn source(&self, key: &str) -> Option<Source> {
        self.explicit.get(key).map(|(_, s)| *s)
    }

    /// Keys set explicitly, for topic-default resolution.
    pub fn explicit_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.explicit
            .iter()
            .map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }

    pub fn get_list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn rack(&self) -> Option<String> {
        self.get("broker.rack").map(String::from)
    }
}

fn resolve_addr(text: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs().ok()?.next()
}

/// `log.retention.ms` → `TIDELINE_LOG_RETENTION_MS`.
pub fn env_var_name(key: &str) -> String {
    format!(
        "TIDELINE_{}",
        key.replace(['.', '-'], "_").to_ascii_uppercase()
    )
}

fn check_key(origin: &str, key: &str) -> Result<(), ConfigError> {
    if broker_def(key).is_none() {
        return Err(ConfigError::UnknownKey {
            origin: origin.to_string(),
            key: key.to_string(),
        });
    }
    Ok(())
}

/// Java properties subset: `key=value` or `key: value`, `#`/`!` comments,
/// blank lines, and a trailing backslash to continue a line.
pub fn parse_properties(text: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            pending.push_str(stripped);
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let split = full
            .find(['=', ':'])
            .ok_or_else(|| ConfigError::Malformed {
                origin: origin.to_string(),
                line: full.clone(),
            })?;
        let (key, value) = full.split_at(split);
        pairs.push((key.trim().to_string(), value[1..].trim().to_string()));
    }
    Ok(pairs)
}

/// A key's explicit value, else its default.
fn value_of<'a>(explicit: &'a BTreeMap<String, (String, Source)>, key: &str) -> Option<&'a str> {
    match explicit.get(key) {
        Some((value, _)) => Some(value.as_str()),
        None => broker_def(key).and_then(|d| d.default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, env: &[(&str, &str)], flags: &[&str]) -> Result<BrokerConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(&path, file).unwrap();
        BrokerConfig::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &flags.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn defaults_are_the_embedded_single_node() {
        let config = BrokerConfig::load(None, Vec::new(), &[]).unwrap();
        assert_eq!(config.node_id, 1);
        assert_eq!(config.listeners[0].bind_addr(), "127.0.0.1:9092");
        assert_eq!(config.log_dir, PathBuf::from("./data"));
        assert_eq!(config.http_listener.to_string(), "127.0.0.1:9644");
    }

    #[test]
    fn settings_are_typed_at_start_up_and_a_wrong_type_names_its_key() {
        let config = BrokerConfig::load(
            None,
            Vec::new(),
            &[
                "replica.lag.time.max.ms=1234".into(),
                "log.direct.io.enable=auto".into(),
            ],
        )
        .unwrap();
        assert_eq!(config.settings.replication.lag_max_ms, 1234);
        assert_eq!(config.settings.storage.direct_io, settings::DirectIo::Auto);
        let error = BrokerConfig::load(None, Vec::new(), &["replica.fetch.max.bytes=big".into()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("replica.fetch.max.bytes"), "{error}");
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let config = load(
            "num.partitions=2\nlog.retention.hours=5\n# comment\nnode.id: 7\n",
            &[("TIDELINE_NUM_PARTITIONS", "3"), ("TIDELINE_NODE_ID", "8")],
            &["num.partitions=4"],
        )
        .unwrap();
        assert_eq!(config.get("num.partitions"), Some("4"));
        assert_eq!(config.node_id, 8);
        assert_eq!(config.get("log.retention.hours"), Some("5"));
        assert_eq!(config.source("num.partitions"), Some(Source::Flag));
    }

    #[test]
    fn quorum_voters_and_the_controller_listener() {
        let config = load(
            "",
            &[],
            &[
                "node.id=2",
                "cluster.id=abc",
                "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                "controller.quorum.voters=1@h1:9093,2@127.0.0.1:9093,3@[::1]:9093",
            ],
        )
        .unwrap();
        assert_eq!(
            config.listeners.len(),
            1,
            "the controller listener serves no clients"
        );
        assert_eq!(config.listeners[0].name, "PLAINTEXT");
        assert_eq!(config.advertised_listeners.len(), 1);
        assert_eq!(config.controller_listener.as_ref().unwrap().port, 9093);
        assert_eq!(config.voters.len(), 3);
        assert_eq!(config.voters[0].address(), "h1:9093");
        assert_eq!(config.voters[2].host, "::1");

        let with = |extra: &[&str]| {
            let mut flags = vec![
                "node.id=2",
                "cluster.id=abc",
                "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                "controller.quorum.voters=1@h1:9093,2@h2:9093",
            ];
            flags.extend_from_slice(extra);
            load("", &[], &flags).map(|_| ()).unwrap_err().to_string()
        };
        assert!(with(&["node.id=5", "process.roles=broker,controller"])
            .contains("not in controller.quorum.voters"));
        // Unset roles follow the voter list.
        let inferred = |id: &str| {
            load(
                "",
                &[],
                &[
                    id,
                    "cluster.id=abc",
                    "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                    "controller.quorum.voters=1@h1:9093,2@h2:9093",
                ],
            )
            .unwrap()
            .is_controller
        };
        assert!(inferred("node.id=2"));
        assert!(!inferred("node.id=5"));
        let observer = load(
            "",
            &[],
            &[
                "node.id=5",
                "process.roles=broker",
                "cluster.id=abc",
                "listeners=PLAINTEXT://127.0.0.1:9092",
                "controller.quorum.voters=1@h1:9093,2@h2:9093",
            ],
        )
        .unwrap();
        assert!(!observer.is_controller);
        assert!(with(&["process.roles=broker"]).contains("only voters do"));
        assert!(load("", &[], &["process.roles=broker"])
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .contains("needs controller.quorum.voters"));
        assert!(with(&["listeners=PLAINTEXT://127.0.0.1:9092"]).contains("CONTROLLER"));
        assert!(with(&["controller.quorum.voters=1-h1:9093"]).contains("id@host:port"));
        assert!(with(&["listeners=CONTROLLER://127.0.0.1:9093"]).contains("Kafka clients"));
    }

    #[test]
    fn unknown_and_invalid_settings_are_named() {
        let err = load("num.partitons=2\n", &[], &[]).unwrap_err().to_string();
        assert!(err.contains("num.partitons"), "{err}");
        let err = load("", &[], &["num.partitions=zero"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("num.partitions"), "{err}");
        let err = load("", &[], &["listeners=nonsense"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listeners"), "{err}");
        let err = load("", &[], &["log.direct.io.enable=yes"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.direct.io.enable"), "{err}");
        for value in ["auto", "true", "false"] {
            let setting = format!("log.direct.io.enable={value}");
            assert!(load("", &[], &[setting.as_str()]).is_ok(), "{value}");
        }
    }
}
