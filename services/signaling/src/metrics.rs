//! Prometheus metrics of signaling, read off what the switchboard delivers.

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{
    directory::Counts,
    vocabulary::{Delivery, Event, Request},
};

pub use svc_common::metrics::CONTENT_TYPE;

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    registrations: Family<OutcomeLabel, Counter>,
    calls: Family<OutcomeLabel, Counter>,
    setup: Histogram,
    names: Gauge,
    sessions: Gauge,
    active_calls: Gauge,
    store_seconds: Family<StoreLabel, Histogram>,
    store_errors: Family<StoreLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("signaling");
        svc_common::metrics::register_build_info(&mut registry);
        let registrations = Family::default();
        registry.register(
            "registrations",
            "Registrations, by outcome (accepted or the refusal reason)",
            registrations.clone(),
        );
        let calls = Family::default();
        registry.register(
            "calls",
            "Calls, by outcome (accepted or why not)",
            calls.clone(),
        );
        // Call setup includes a person deciding to answer: seconds, not milliseconds.
        let setup = Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0]);
        registry.register(
            "call_setup_seconds",
            "Time from call to accept",
            setup.clone(),
        );
        let names = Gauge::default();
        registry.register(
            "names",
            "Registered names, including those held for a resume",
            names.clone(),
        );
        let sessions = Gauge::default();
        registry.register(
            "sessions",
            "Browser sessions known to signaling",
            sessions.clone(),
        );
        let active_calls = Gauge::default();
        registry.register("active_calls", "Calls ringing or up", active_calls.clone());
        // Store round trips on loopback take a fraction of a millisecond; a slow store, tens.
        let store_seconds = Family::<StoreLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0, 2.0,
            ])
        });
        registry.register(
            "store_seconds",
            "Round trips to the shared store (Redis), by operation",
            store_seconds.clone(),
        );
        let store_errors = Family::default();
        registry.register(
            "store_errors",
            "Failed round trips to the shared store (Redis), by operation",
            store_errors.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                registrations,
                calls,
                setup,
                names,
                sessions,
                active_calls,
                store_seconds,
                store_errors,
            }),
        }
    }
}

impl Metrics {
    /// Counts the outcomes in what one transition delivers.
    pub fn observe(&self, deliveries: &[Delivery]) {
        for delivery in deliveries {
            match &delivery.event {
                Event::Registered { .. } => self.registration("accepted"),
                Event::Refused {
                    request: Request::Register,
                    reason,
                    ..
                } => self.registration(reason.as_str()),
                Event::Refused {
                    request: Request::Call,
                    reason,
                    ..
                } => self.call(reason.as_str()),
                Event::CallAccepted { rang_for, .. } => {
                    self.call("accepted");
                    self.inner.setup.observe(rang_for.as_secs_f64());
                }
                _ => {}
            }
        }
    }

    /// One round trip to the shared store.
    pub fn store(&self, operation: &'static str, took: std::time::Duration, ok: bool) {
        let label = StoreLabel { operation };
        if ok {
            self.inner
                .store_seconds
                .get_or_create(&label)
                .observe(took.as_secs_f64());
        } else {
            self.inner.store_errors.get_or_create(&label).inc();
        }
    }

    fn registration(&self, outcome: &'static str) {
        self.inner
            .registrations
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    fn call(&self, outcome: &'static str) {
        self.inner
            .calls
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// The text exposition, with the gauges set to `counts`.
    pub fn render(&self, counts: Counts) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner.names.set(gauge(counts.names));
        self.inner.sessions.set(gauge(counts.sessions));
        self.inner.active_calls.set(gauge(counts.calls));
        svc_common::metrics::render(&self.inner.registry)
    }
}
