//! The operator's Prometheus metrics, served on `/metrics` (see `http`).
//! Per controller: reconciles, errors by reason, durations, when the last
//! reconcile finished and how many resources it watches — enough for the
//! "reconcile errors" and "reconcile stalled" alerts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub const CLUSTER_CONTROLLER: &str = "kafkacluster";
pub const TOPIC_CONTROLLER: &str = "kafkatopic";

#[derive(Clone)]
pub struct OperatorMetrics {
    registry: Registry,
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    last_reconcile: IntGaugeVec,
    resources: IntGaugeVec,
    leader: IntGauge,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl OperatorMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "tideline_operator_reconciles_total",
                "Reconciles run, by controller",
            ),
            &["controller"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "tideline_operator_reconcile_errors_total",
                "Reconciles that failed and were requeued with backoff, by controller and reason",
            ),
            &["controller", "reason"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tideline_operator_reconcile_duration_seconds",
                "Time one reconcile took, by controller",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["controller"],
        )
        .expect("valid metric");
        let last_reconcile = IntGaugeVec::new(
            Opts::new(
                "tideline_operator_last_reconcile_timestamp_seconds",
                "Unix time the controller last finished a reconcile, successful or not",
            ),
            &["controller"],
        )
        .expect("valid metric");
        let resources = IntGaugeVec::new(
            Opts::new(
                "tideline_operator_resources",
                "Custom resources the controller watches",
            ),
            &["controller"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "tideline_operator_leader",
            "1 while this operator replica holds the leader Lease and runs the controllers",
        )
        .expect("valid metric");
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(last_reconcile.clone()),
            Box::new(resources.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        for controller in [CLUSTER_CONTROLLER, TOPIC_CONTROLLER] {
            // Present from the start, so rate() and absence checks work.
            reconciles.with_label_values(&[controller]);
            resources.with_label_values(&[controller]);
        }
        OperatorMetrics {
            registry,
            reconciles,
            errors,
            duration,
            last_reconcile,
            resources,
            leader,
        }
    }

    /// Records one finished reconcile.
    pub fn reconciled(&self, controller: &str, took: Duration) {
        self.reconciles.with_label_values(&[controller]).inc();
        self.duration
            .with_label_values(&[controller])
            .observe(took.as_secs_f64());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        self.last_reconcile
            .with_label_values(&[controller])
            .set(now);
    }

    pub fn reconcile_failed(&self, controller: &str, reason: &str) {
        self.errors.with_label_values(&[controller, reason]).inc();
    }

    pub fn set_resources(&self, controller: &str, count: usize) {
        self.resources
            .with_label_values(&[controller])
            .set(count as i64);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(leader as i64);
    }

    pub fn error_count(&self, controller: &str, reason: &str) -> u64 {
        self.errors.with_label_values(&[controller, reason]).get()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }
}
