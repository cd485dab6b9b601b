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
    configs: Family<ApiLabel, Counter>,
    issued: Family<IssuedLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
    lenient: Family<LenientLabels, Counter>,
    configs_loaded: Gauge,
    sources_up: Family<SourceLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LenientLabels {
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuedLabels {
    api: &'static str,
    auth: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabels {
    api: &'static str,
    reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("iceconfig");
        svc_common::metrics::register_build_info(&mut registry);
        let configs = Family::default();
        registry.register(
            "ice_configs_issued",
            "ICE configurations (answers) issued, by API",
            configs.clone(),
        );
        let issued = Family::default();
        registry.register(
            "ice_servers_issued",
            "ICE servers (one per STUNner Gateway) in the configurations issued, by API and by the auth type of their credentials",
            issued.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "config_reloads",
            "STUNner config loads, by outcome (a failure keeps the last good config)",
            reloads.clone(),
        );
        let rejected = Family::default();
        registry.register(
            "rejected_requests",
            "Requests refused, by API and reason",
            rejected.clone(),
        );
        let lenient = Family::default();
        registry.register(
            "lenient_requests",
            "REST requests answered although the gRPC API would refuse them, by what was accepted",
            lenient.clone(),
        );
        let configs_loaded = Gauge::default();
        registry.register(
            "configs_loaded",
            "STUNner configs (Gateways) currently in force",
            configs_loaded.clone(),
        );
        let sources_up = Family::default();
        registry.register(
            "config_source_up",
            "Whether each config source can be read (1) or not (0): the file exists, the API server or the config discovery service answers",
            sources_up.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                configs,
                issued,
                reloads,
                rejected,
                lenient,
                configs_loaded,
                sources_up,
            }),
        }
    }
}

impl Metrics {
    /// One configuration handed out through `api` ("grpc" or "rest"), holding ICE servers
    /// with credentials of these auth types.
    pub fn issued(&self, api: &'static str, servers: impl IntoIterator<Item = AuthKind>) {
        self.inner.configs.get_or_create(&ApiLabel { api }).inc();
        for auth in servers {
            let auth = auth.as_str();
            self.inner
                .issued
                .get_or_create(&IssuedLabels { api, auth })
                .inc();
        }
    }

    pub fn config_reload(&self, success: bool) {
        let outcome = if success { "success" } else { "failure" };
        self.inner
            .reloads
            .get_or_create(&ReloadLabels { outcome })
            .inc();
    }

    pub fn rejected(&self, api: &'static str, reason: &'static str) {
        self.inner
            .rejected
            .get_or_create(&RejectedLabels { api, reason })
            .inc();
    }

    /// A REST request accepted for compatibility with stunner-auth-service.
    pub fn lenient(&self, what: &'static str) {
        self.inner
            .lenient
            .get_or_create(&LenientLabels { what })
            .inc();
    }

    pub fn source_up(&self, source: &str, up: bool) {
        self.inner
            .sources_up
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .set(i64::from(up));
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
