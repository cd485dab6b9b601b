//! Prometheus metrics of the service, exposed in the OpenMetrics text format at `/metrics`.

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

pub use svc_common::metrics::CONTENT_TYPE;

use crate::stunner_config::AuthKind;

/// A cloneable handle to every metric.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    issued: Family<IssuedLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
    configs_loaded: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuedLabels {
    api: &'static str,
    auth: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabels {
    api: &'static str,
    reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("iceconfig");
        let issued = Family::default();
        registry.register(
            "ice_configs_issued",
            "ICE configurations issued, by API and by the auth type of their credentials",
            issued.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "config_reloads",
            "STUNner config loads, by result (a failure keeps the last good config)",
            reloads.clone(),
        );
        let rejected = Family::default();
        registry.register(
            "rejected_requests",
            "Requests refused, by API and reason",
            rejected.clone(),
        );
        let configs_loaded = Gauge::default();
        registry.register(
            "configs_loaded",
            "STUNner configs (Gateways) currently in force",
            configs_loaded.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                issued,
                reloads,
                rejected,
                configs_loaded,
            }),
        }
    }
}

impl Metrics {
    /// One ICE server handed out through `api` ("grpc" or "rest"), with `auth` credentials.
    pub fn issued(&self, api: &'static str, auth: AuthKind) {
        let auth = auth.as_str();
        self.inner
            .issued
            .get_or_create(&IssuedLabels { api, auth })
            .inc();
    }

    pub fn config_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.inner
            .reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    pub fn rejected(&self, api: &'static str, reason: &'static str) {
        self.inner
            .rejected
            .get_or_create(&RejectedLabels { api, reason })
            .inc();
    }

    pub fn set_configs_loaded(&self, count: usize) {
        self.inner
            .configs_loaded
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        svc_common::metrics::render(&self.inner.registry)
    }
}
