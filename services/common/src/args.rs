//! Flag groups every service shares, flattened into each binary's `Args` (as linkerd's kubert
//! does). Each binary sets its own default listen address with
//! `#[command(mut_arg("grpc_addr", |a| a.default_value("…").required(false)))]`, so the flag,
//! its environment variable and its help text are written once.

use std::net::SocketAddr;

use crate::Duration;

/// The gRPC port: the service itself, gRPC health and reflection.
#[derive(Clone, Debug, clap::Args)]
pub struct GrpcArgs {
    /// gRPC listen address (the service, gRPC health, reflection).
    #[arg(long, env = "GRPC_ADDR")]
    pub grpc_addr: SocketAddr,
}

/// The HTTP port: probes and metrics (and whatever else the service serves there).
#[derive(Clone, Debug, clap::Args)]
pub struct HttpArgs {
    /// HTTP listen address (/healthz, /readyz, /metrics, and the service's own routes).
    #[arg(long, env = "HTTP_ADDR")]
    pub http_addr: SocketAddr,
}

/// How shutdown drains.
#[derive(Clone, Debug, clap::Args)]
pub struct DrainArgs {
    /// How long the service may take to drain after SIGTERM before what is left is dropped.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = crate::parse_duration)]
    pub shutdown_grace: Duration,
}

/// How many connections the process keeps open, how long HTTP clients have to speak.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectionArgs {
    /// Connections open at once across every port; over it, new ones wait to be accepted.
    /// 0: as many as the process's file descriptor limit allows, less a reserve.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// How long an HTTP client may take to send a request's headers, and how long an idle
    /// kept-alive connection stays open.
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "10s", value_parser = crate::parse_duration)]
    pub header_timeout: Duration,
}

impl ConnectionArgs {
    pub fn limits(&self) -> crate::ConnectionLimits {
        crate::ConnectionLimits::new(self.max_connections, *self.header_timeout)
    }
}

/// The secret the services share: callers of a gRPC port present it, the gateway sends it.
#[derive(Clone, Debug, clap::Args)]
pub struct TokenArgs {
    /// A shared secret for the services' gRPC ports (`authorization: Bearer <token>`): servers
    /// refuse calls without it (gRPC health excepted, for probes), the gateway sends it. Unset:
    /// the ports trust whoever reaches them (keep them behind a NetworkPolicy).
    #[arg(long, env = "GRPC_TOKEN", hide_env_values = true)]
    pub grpc_token: Option<crate::auth::Token>,
}

/// What every service takes besides its own flags.
#[derive(Clone, Debug, clap::Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub token: TokenArgs,

    #[command(flatten)]
    pub connections: ConnectionArgs,

    #[command(flatten)]
    pub drain: DrainArgs,
}

impl ServiceArgs {
    pub fn runtime(&self) -> crate::runtime::RuntimeSettings {
        crate::runtime::RuntimeSettings {
            shutdown_grace: *self.drain.shutdown_grace,
            grpc_token: self.token.grpc_token.clone(),
            client_tokens: Vec::new(),
            connections: self.connections.limits(),
        }
    }
}

/// Checks that every flag of `command` also reads an environment variable, so Kubernetes can set
/// everything through env; for each binary's unit tests.
pub fn assert_every_flag_reads_env(command: &clap::Command) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        assert!(
            arg.get_env().is_some(),
            "{}: --{id} has no environment variable",
            command.get_name()
        );
    }
}
