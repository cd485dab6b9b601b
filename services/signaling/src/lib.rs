//! signaling: presence (unique names, resume) and the call state machine.
//!
//! The domain ([`name`], [`presence`], [`switchboard`]) is pure and synchronous; [`hub`] runs it
//! with a lock and timers; [`grpc`] adapts it to `signaling.v1`.

pub mod app;
pub mod cli;
pub mod grpc;
pub mod hub;
pub mod metrics;
pub mod name;
pub mod presence;
pub mod switchboard;
