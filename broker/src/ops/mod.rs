//! The operations surface: Prometheus metrics and the HTTP server for
//! `/metrics`, `/healthz` and `/readyz`.

pub mod http;
pub mod metrics;
