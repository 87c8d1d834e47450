//! `-b/--brokers` and `-X key=value`: the same connection settings for every
//! subcommand. `-X` takes librdkafka's property names, as kcat does; they
//! are checked by librdkafka itself, so a misspelt key is refused before
//! anything is sent. The admin requests honour the keys that apply to them
//! (`client.id`, `request.timeout.ms`/`socket.timeout.ms`,
//! `bootstrap.servers`); produce and consume pass all of them to librdkafka.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::error::{CliError, Result};

pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub bootstrap: Vec<String>,
    pub client_id: String,
    pub timeout: Duration,
    /// Every `-X` pair, in order, for librdkafka.
    pub properties: Vec<(String, String)>,
}

impl ClientOptions {
    pub fn parse(brokers: &str, pairs: &[String]) -> Result<ClientOptions> {
        let mut options = ClientOptions {
            bootstrap: Vec::new(),
            client_id: "tideline-cli".to_string(),
            timeout: DEFAULT_TIMEOUT,
            properties: Vec::new(),
        };
        let mut brokers = brokers.to_string();
        for pair in pairs {
            let (key, value) = split_pair(pair, "-X")?;
            match key.as_str() {
                "bootstrap.servers" | "metadata.broker.list" => brokers = value.clone(),
                "client.id" => options.client_id = value.clone(),
                "request.timeout.ms" | "socket.timeout.ms" => {
                    let ms: u64 = value.parse().map_err(|_| {
                        CliError::usage(
                            format!("-X {key}={value}: not a number of milliseconds"),
                            format!("write it as -X {key}=30000"),
                        )
                    })?;
                    options.timeout = Duration::from_millis(ms.max(1));
                }
                "security.protocol" if !value.eq_ignore_ascii_case("plaintext") => {
                    return Err(CliError::usage(
                        format!(
                            "-X security.protocol={value}: this tool speaks only PLAINTEXT so far"
                        ),
                        "connect to a PLAINTEXT listener",
                    ));
                }
                _ => {}
            }
            options.properties.push((key, value));
        }
        options.bootstrap = parse_brokers(&brokers)?;
        // librdkafka knows every property name and value type.
        let mut config = ClientConfig::new();
        for (key, value) in &options.properties {
            config.set(key, value);
        }
        config.create_native_config().map_err(|e| {
            CliError::usage(
                format!("-X: {e}"),
                "use librdkafka's property names (see librdkafka's CONFIGURATION.md)",
            )
        })?;
        Ok(options)
    }

    /// A librdkafka configuration: the brokers, this tool's `defaults`,
    /// then every `-X` property (which wins over a default).
    pub fn rdkafka_config_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap.join(","));
        config.set("client.id", &self.client_id);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            if key != "metadata.broker.list" {
                config.set(key, value);
            }
        }
        config
    }
}

/// `host:port[,host:port]...`; a missing port is Kafka's 9092.
fn parse_brokers(list: &str) -> Result<Vec<String>> {
    let brokers: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.rsplit_once(':')
                .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
            {
                s.to_string()
            } else {
                format!("{s}:9092")
            }
        })
        .collect();
    if brokers.is_empty() {
        return Err(CliError::usage(
            "no brokers given",
            format!("pass -b host:port (default {DEFAULT_BROKERS}) or set TIDELINE_BROKERS"),
        ));
    }
    Ok(brokers)
}

/// `key=value`, as `-X`, `-c` and `config set` take it.
pub fn split_pair(pair: &str, flag: &str) -> Result<(String, String)> {
    match pair.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(CliError::usage(
            format!("{flag} {pair}: expected key=value"),
            format!("write it as {flag} key=value"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_get_kafkas_port_when_none_is_given() {
        assert_eq!(
            parse_brokers("a, b:9093 ,").unwrap(),
            vec!["a:9092".to_string(), "b:9093".to_string()]
        );
        assert!(parse_brokers(" , ").is_err());
    }

    #[test]
    fn x_properties_set_the_admin_options_and_are_checked_by_librdkafka() {
        let options = ClientOptions::parse(
            "h:1",
            &["client.id=ops".into(), "request.timeout.ms=500".into()],
        )
        .unwrap();
        assert_eq!(options.client_id, "ops");
        assert_eq!(options.timeout, Duration::from_millis(500));
        assert_eq!(options.bootstrap, vec!["h:1".to_string()]);

        let overridden = ClientOptions::parse("h:1", &["bootstrap.servers=x:2".into()]).unwrap();
        assert_eq!(overridden.bootstrap, vec!["x:2".to_string()]);

        for bad in ["no.such.property=1", "novalue", "request.timeout.ms=soon"] {
            let e = ClientOptions::parse("h:1", &[bad.into()]).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::EXIT_USAGE, "{bad}");
        }
    }
}
