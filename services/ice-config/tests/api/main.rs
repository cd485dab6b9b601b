//! ice-config's API tests: the real binary, on port 0, fed from real files.

mod grpc;
mod health;
mod helpers;
mod reload;
mod rest;
