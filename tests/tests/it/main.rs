//! Cross-service tests: the real binaries as separate processes on port 0, real TURN servers,
//! real browsers, real Redis; one binary, one module per concern.

mod balancing;
mod browser;
mod calls;
mod dialects;
mod failover;
mod firefox;
mod hardening;
mod manifests;
mod page;
mod replicas;
mod restarts;
mod runtime;
mod setup;
mod telemetry;
mod turn;
