//! The API of the real binary, on port 0, fed from real files.

mod cluster_sources;
mod grpc;
mod health;
mod helpers;
mod reload;
mod rest;
