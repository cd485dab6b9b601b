//! ice-config's integration tests, one binary: the real binary on port 0 fed from real files and
//! in-test cluster stand-ins ([`api`]), and the cluster-following config sources in-process
//! ([`sources`]).

mod api;
mod sources;
