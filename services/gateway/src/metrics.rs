//! Prometheus metrics of the gateway: sessions, registrations by result, rejected inputs by
//! reason (counted where replies are written, so every refusal a browser sees is counted once);
//! bytes queued and bounds hit, by queue; ICE restarts pages report, and how long media took to
//! come back.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::{
    link::{Overflows, Queued},
    protocol::{RestartCause, RestartOutcome, ServerMessage, Verdict},
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
    registrations: Family<OutcomeLabel, Counter>,
    rejected: Family<Label, Counter>,
    queued_bytes: Family<QueueLabel, Gauge>,
    overflows: Family<QueueLabel, Counter>,
    restarts: Family<RestartLabel, Counter>,
    recovery: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestartLabel {
    cause: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Label {
    reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gateway");
        svc_common::metrics::register_build_info(&mut registry);
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
        let queued_bytes = Family::default();
        registry.register(
            "queued_bytes",
            "Bytes queued: to_browsers (every session's queue), to_signaling (sent, not yet acknowledged), held (for a replica to come back)",
            queued_bytes.clone(),
        );
        let overflows = Family::default();
        registry.register(
            "queue_overflows",
            "Bounds hit, by queue: to_browsers (a session closed as too slow), to_signaling (a message refused), held (a message dropped)",
            overflows.clone(),
        );
        let restarts = Family::default();
        registry.register(
            "ice_restarts",
            "ICE restarts pages report (their calls renegotiated), by cause and outcome",
            restarts.clone(),
        );
        let recovery = Histogram::new([0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0]);
        registry.register_with_unit(
            "ice_restart_recovery",
            "How long media took to come back after an ICE restart, as pages report it",
            Unit::Seconds,
            recovery.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                sessions,
                replicas,
                registrations,
                rejected,
                queued_bytes,
                overflows,
                restarts,
                recovery,
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

    /// An ICE restart a page reports.
    pub fn ice_restart(&self, cause: RestartCause, outcome: RestartOutcome, took: Duration) {
        let label = RestartLabel {
            cause: cause.as_str(),
            outcome: outcome.as_str(),
        };
        self.inner.restarts.get_or_create(&label).inc();
        if outcome == RestartOutcome::Recovered {
            self.inner.recovery.observe(took.as_secs_f64());
        }
    }

    /// A refusal that is not a reply (an oversized frame, a foreign origin).
    pub fn rejected(&self, reason: GatewayReason) {
        self.count_rejected(reason.as_str());
    }

    fn count_rejected(&self, reason: &'static str) {
        self.inner.rejected.get_or_create(&Label { reason }).inc();
    }

    fn registration(&self, outcome: &'static str) {
        self.inner
            .registrations
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn render(
        &self,
        sessions: usize,
        replicas: usize,
        queued: Queued,
        overflows: &Overflows,
    ) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner.sessions.set(gauge(sessions));
        self.inner.replicas.set(gauge(replicas));
        let inner = &self.inner;
        for (queue, bytes, overflowed) in [
            ("to_browsers", queued.to_browsers, &overflows.to_browsers),
            ("to_signaling", queued.to_signaling, &overflows.to_signaling),
            ("held", queued.held, &overflows.held),
        ] {
            let label = QueueLabel { queue };
            inner.queued_bytes.get_or_create(&label).set(gauge(bytes));
            // The link counts; the counter follows it.
            let counter = inner.overflows.get_or_create(&label);
            let now = overflowed.load(std::sync::atomic::Ordering::Relaxed);
            counter.inc_by(now.saturating_sub(counter.get()));
        }
        svc_common::metrics::render(&self.inner.registry)
    }
}
