//! The cluster as the commands see it: connections to the bootstrap broker
//! and to each broker by id, version negotiation, and one method per Kafka
//! request family returning plain structs (`metadata`, `configs`,
//! `offsets`, `groups`, `log_dirs`, `partitions`). Commands never frame a
//! request or pick a version themselves.

pub mod configs;
pub mod groups;
pub mod log_dirs;
pub mod metadata;
pub mod offsets;
pub mod partitions;
pub mod topics;
pub mod transactions;

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use tideline_protocol::{frame, KafkaClient};

use crate::error::{CliError, Result};
use crate::properties::ClientOptions;

/// Where a request goes. Controller-bound requests (topic and config
/// changes, reassignments, elections) may go to any broker: brokers forward
/// them to the active controller, as KRaft brokers do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Any,
    Broker(i32),
}

struct Connection {
    client: KafkaClient,
    versions: ApiVersionsResponse,
    label: String,
}

pub struct Admin {
    options: ClientOptions,
    bootstrap: Connection,
    by_broker: HashMap<i32, Connection>,
    /// Broker id → host:port, from the last metadata answer.
    addresses: HashMap<i32, String>,
}

impl Admin {
    /// Connects to the first bootstrap broker that answers ApiVersions.
    pub async fn connect(options: ClientOptions) -> Result<Admin> {
        let mut failures = Vec::new();
        for address in &options.bootstrap {
            match open(address, &options, format!("broker at {address}")).await {
                Ok(bootstrap) => {
                    return Ok(Admin {
                        options,
                        bootstrap,
                        by_broker: HashMap::new(),
                        addresses: HashMap::new(),
                    })
                }
                Err(e) => failures.push(format!("{address}: {e}")),
            }
        }
        Err(CliError::failed(
            format!("cannot reach any broker ({})", failures.join("; ")),
            "check -b/--brokers (or TIDELINE_BROKERS) and that the brokers are running",
        ))
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Remembers where each broker listens (from a metadata answer), so
    /// `Target::Broker` can reach it.
    pub(crate) fn learn_addresses(&mut self, brokers: impl IntoIterator<Item = (i32, String)>) {
        for (id, address) in brokers {
            self.addresses.insert(id, address);
        }
    }

    /// A label for error messages: `broker 2 (host:port)`.
    pub fn label(&self, target: Target) -> String {
        match target {
            Target::Any => self.bootstrap.label.clone(),
            Target::Broker(id) => match self.addresses.get(&id) {
                Some(address) => format!("broker {id} ({address})"),
                None => format!("broker {id}"),
            },
        }
    }

    /// The version of `R` to send to `target`: the highest both sides know,
    /// at most `cap` (the newest version the caller fills in).
    pub async fn version<R: Request>(&mut self, target: Target, cap: i16) -> Result<i16> {
        let label = self.label(target);
        let connection = self.connection(target).await?;
        frame::common_version::<R>(&connection.versions, cap).map_err(|e| {
            CliError::failed(format!("{label}: {e}"), "upgrade the cluster, or this tool")
        })
    }

    /// Sends `request` at `version` to `target` and returns its response.
    /// A connection that failed is dropped, so the next request reconnects.
    pub async fn send<R: Request>(
        &mut self,
        target: Target,
        request: &R,
        version: i16,
    ) -> Result<R::Response> {
        let timeout = self.options.timeout;
        let label = self.label(target);
        let connection = self.connection(target).await?;
        match connection.client.send(request, version, timeout).await {
            Ok(response) => Ok(response),
            Err(e) => {
                if let Target::Broker(id) = target {
                    self.by_broker.remove(&id);
                }
                Err(CliError::failed(
                    format!("{label}: {e}"),
                    "check that the broker is running and reachable, or raise -X request.timeout.ms",
                ))
            }
        }
    }

    /// `version` then `send`, for requests that read the same at every
    /// version up to `cap`.
    pub async fn call<R: Request>(
        &mut self,
        target: Target,
        request: &R,
        cap: i16,
    ) -> Result<R::Response> {
        let version = self.version::<R>(target, cap).await?;
        self.send(target, request, version).await
    }

    /// A `CliError::Kafka` for a non-zero `code` in an answer from `target`.
    pub fn check(
        &self,
        target: Target,
        action: impl FnOnce() -> String,
        code: i16,
        message: Option<&StrBytes>,
    ) -> Result<()> {
        if code == 0 {
            return Ok(());
        }
        Err(CliError::Kafka {
            action: action(),
            broker: self.label(target),
            code,
            message: message.map(|m| m.to_string()),
        })
    }

    async fn connection(&mut self, target: Target) -> Result<&mut Connection> {
        let id = match target {
            Target::Any => return Ok(&mut self.bootstrap),
            Target::Broker(id) => id,
        };
        if !self.by_broker.contains_key(&id) {
            if self.addresses.is_empty() {
                self.load_addresses().await?;
            }
            let label = self.label(target);
            let Some(address) = self.addresses.get(&id).cloned() else {
                return Err(CliError::failed(
                    format!("broker {id} is not in the cluster's metadata"),
                    "list the brokers with `tideline cluster info`",
                ));
            };
            let connection = open(&address, &self.options, label.clone())
                .await
                .map_err(|e| {
                    CliError::failed(
                        format!("{label}: {e}"),
                        "check that the broker is running and its advertised listener is reachable from here",
                    )
                })?;
            self.by_broker.insert(id, connection);
        }
        Ok(self.by_broker.get_mut(&id).expect("inserted above"))
    }
}

impl Admin {
    /// Learns the brokers' addresses from the bootstrap broker (a metadata
    /// request for no topic), without going through `connection`.
    async fn load_addresses(&mut self) -> Result<()> {
        let version = frame::common_version::<MetadataRequest>(&self.bootstrap.versions, 12)
            .map_err(|e| {
                CliError::failed(
                    format!("{}: {e}", self.bootstrap.label),
                    "upgrade the cluster",
                )
            })?;
        let mut request = MetadataRequest::default();
        request.topics = Some(Vec::new());
        let response = self
            .bootstrap
            .client
            .send(&request, version, self.options.timeout)
            .await
            .map_err(|e| {
                CliError::failed(
                    format!("{}: {e}", self.bootstrap.label),
                    "check that the broker is running and reachable",
                )
            })?;
        self.learn_addresses(
            response
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))),
        );
        Ok(())
    }
}

/// Connects and asks the broker which versions it speaks.
async fn open(address: &str, options: &ClientOptions, label: String) -> anyhow::Result<Connection> {
    let mut client = KafkaClient::connect(address, &options.client_id, options.timeout).await?;
    let mut request = ApiVersionsRequest::default();
    request.client_software_name = StrBytes::from_static_str("tideline-cli");
    request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
    let mut versions = client.send(&request, 3, options.timeout).await?;
    if versions.error_code != 0 {
        // UNSUPPORTED_VERSION comes with the broker's ranges in a v0 body.
        versions = client
            .send(&ApiVersionsRequest::default(), 0, options.timeout)
            .await?;
    }
    Ok(Connection {
        client,
        versions,
        label,
    })
}

pub fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Waits between polls of a long operation.
pub async fn pause(period: Duration) {
    tokio::time::sleep(period).await;
}
