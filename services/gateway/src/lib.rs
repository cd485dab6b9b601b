//! gateway: the browsers' WebSocket edge. Speaks the tutorial's JSON protocol ([`protocol`]) on
//! `/one2one`, carries every session over one stream to signaling ([`link`]), and fetches
//! credentials from ice-config ([`ice`], whose health [`upstream`] follows). Holds no call state
//! of its own.

pub mod app;
pub mod assets;
pub mod balance;
pub mod cli;
pub mod http;
pub mod ice;
pub mod link;
pub mod metrics;
pub mod protocol;
pub mod reason;
pub mod resolve;
pub mod session;
pub mod tls;
pub mod upstream;
