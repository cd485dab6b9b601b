//! ice-config: TURN credentials and ICE configurations from the running STUNner config.
//!
//! The domain ([`stunner_config`], [`credentials`], [`ice`], [`store`]) knows nothing of gRPC or
//! HTTP; [`grpc`] and [`http`] adapt it; [`app`] wires it; [`cli`] is the binary.

pub mod app;
pub mod cli;
pub mod credentials;
mod error;
pub mod grpc;
pub mod http;
pub mod ice;
pub mod metrics;
pub mod source;
pub mod store;
pub mod stunner_config;

pub use error::{Error, Result};
