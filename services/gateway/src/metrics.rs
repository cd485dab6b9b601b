//! Prometheus metrics of the gateway: sessions, registrations by result, rejected inputs by
//! reason. Counted where replies are written, so every refusal a browser sees is counted once.

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    protocol::{ServerMessage, Verdict},
    reason::GatewayReason,
};

pub use svc_common::metrics::CONTENT_TYPE;

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    sessions: Gauge,
    replicas: Gauge,
    registrations: Family<Label, Counter>,
    rejected: Family<Label, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Label {
    reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gateway");
        let sessions = Gauge::default();
        registry.register("sessions", "Open browser sessions", sessions.clone());
        let replicas = Gauge::default();
        registry.register(
            "signaling_replicas",
            "Signaling replicas attached and not draining",
            replicas.clone(),
        );
        let registrations = Family::default();
        registry.register(
            "registrations",
            "Registrations answered, by reason (accepted, or why not)",
            registrations.clone(),
        );
        let rejected = Family::default();
        registry.register(
            "rejected_messages",
            "Browser messages refused with an error, by reason",
            rejected.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                sessions,
                replicas,
                registrations,
                rejected,
            }),
        }
    }
}

impl Metrics {
    /// Counts what a reply says about the browser's request.
    pub fn reply(&self, reply: &ServerMessage) {
        match reply {
            ServerMessage::RegisterResponse {
                response: Verdict::Accepted,
                ..
            } => self.registration("accepted"),
            ServerMessage::RegisterResponse { reason, .. } => {
                self.registration(reason.unwrap_or("unspecified"))
            }
            ServerMessage::Error { reason, .. } => self.count_rejected(reason),
            _ => {}
        }
    }

    /// A refusal that is not a reply (an oversized frame, a foreign origin).
    pub fn rejected(&self, reason: GatewayReason) {
        self.count_rejected(reason.as_str());
    }

    fn count_rejected(&self, reason: &'static str) {
        self.inner.rejected.get_or_create(&Label { reason }).inc();
    }

    fn registration(&self, reason: &'static str) {
        self.inner
            .registrations
            .get_or_create(&Label { reason })
            .inc();
    }

    pub fn render(&self, sessions: usize, replicas: usize) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner.sessions.set(gauge(sessions));
        self.inner.replicas.set(gauge(replicas));
        svc_common::metrics::render(&self.inner.registry)
    }
}
