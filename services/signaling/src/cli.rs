//! Command-line flags, each also read from an environment variable.

use clap::Parser;
use svc_common::{
    Duration,
    args::{GrpcArgs, HttpArgs, ServiceArgs},
    parse_duration,
};

use crate::{
    app::{self, Settings},
    directory::StoreUrl,
    vocabulary::Limits,
};

/// Presence and call routing for browser sessions carried by the gateway.
#[derive(Debug, Parser)]
#[command(
    name = "signaling",
    version,
    mut_arg("grpc_addr", |a| a.default_value("0.0.0.0:50052").required(false)),
    mut_arg("http_addr", |a| a.default_value("0.0.0.0:8089").required(false)),
)]
pub struct Args {
    #[command(flatten)]
    pub grpc: GrpcArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    /// How long a call may ring unanswered.
    #[arg(long, env = "RING_TIMEOUT", default_value_t = Limits::default().ring_timeout.into(), value_parser = parse_duration)]
    pub ring_timeout: Duration,

    /// How long a disconnected user's name stays reserved for its resume token.
    #[arg(long, env = "RESUME_GRACE", default_value_t = Limits::default().resume_grace.into(), value_parser = parse_duration)]
    pub resume_grace: Duration,

    /// The store several replicas share: `redis://[:password@]host:6379[/db]`,
    /// `redis+sentinel://[:password@]host:26379[,host:26379]/<master>[/db]` or
    /// `redis+cluster://[:password@]host:6379[,host:6379]`. Without it, names and calls live
    /// in this process (one replica).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<StoreUrl>,

    /// Candidates buffered per call until the callee can take them.
    #[arg(long, env = "MAX_BUFFERED_CANDIDATES", default_value_t = Limits::default().max_buffered_candidates)]
    pub max_buffered_candidates: usize,

    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Args {
    pub async fn parse_and_run() -> anyhow::Result<()> {
        let args = Self::parse();
        svc_common::run_binary("signaling", app::build(args.settings())).await
    }

    pub fn settings(self) -> Settings {
        Settings {
            grpc_addr: self.grpc.grpc_addr,
            http_addr: self.http.http_addr,
            limits: Limits {
                ring_timeout: *self.ring_timeout,
                resume_grace: *self.resume_grace,
                max_buffered_candidates: self.max_buffered_candidates,
                ..Limits::default()
            },
            redis: self.redis_url,
            runtime: self.service.runtime(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = Args::parse_from(["signaling"]).settings();
        assert_eq!(settings.grpc_addr.port(), 50052);
        assert_eq!(settings.http_addr.port(), 8089);
        assert_eq!(
            settings.limits.ring_timeout,
            std::time::Duration::from_secs(30)
        );
        assert_eq!(
            settings.limits.resume_grace,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(settings.limits.max_buffered_candidates, 64);
    }
}
