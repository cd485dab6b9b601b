//! signaling: presence (unique names, resume) and the call state machine.
//!
//! The domain is [`vocabulary`] (the words), [`name`], [`record`] (what is kept per name, and
//! its pure rules) and [`switchboard`] (the state machine, over a [`directory`] it is handed:
//! in memory for one replica, or shared). [`hub`] runs it with timers and per-session order;
//! [`grpc`] adapts it to `signaling.v1`; [`app`] wires it; [`cli`] is the binary.

pub mod app;
pub mod cli;
pub mod directory;
pub mod grpc;
pub mod hub;
pub mod metrics;
pub use svc_common::name;
pub mod record;
pub mod switchboard;
pub mod vocabulary;
pub mod wire;
