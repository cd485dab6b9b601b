//! Command-line flags, each also read from an environment variable.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use svc_common::{parse_duration, shutdown_signal};

use crate::{
    app::{Application, Settings},
    switchboard::Limits,
};

/// Presence and call routing for browser sessions carried by the gateway.
#[derive(Debug, Parser)]
#[command(name = "signaling", version)]
pub struct Args {
    /// gRPC listen address (SignalingService, health, reflection).
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50052")]
    pub grpc_addr: SocketAddr,

    /// HTTP listen address (/healthz, /readyz, /metrics).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8089")]
    pub http_addr: SocketAddr,

    /// How long a call may ring unanswered.
    #[arg(long, env = "RING_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub ring_timeout: Duration,

    /// How long a disconnected user's name stays reserved for its resume token.
    #[arg(long, env = "RESUME_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub resume_grace: Duration,

    /// Candidates buffered per call until the callee can take them.
    #[arg(long, env = "MAX_BUFFERED_CANDIDATES", default_value_t = 64)]
    pub max_buffered_candidates: usize,

    /// How long open streams may take to finish after SIGTERM.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl Args {
    pub async fn parse_and_run() -> anyhow::Result<()> {
        let args = Self::parse();
        let telemetry = svc_common::init_telemetry("signaling");
        let run = async {
            let app = Application::build(Settings {
                grpc_addr: args.grpc_addr,
                http_addr: args.http_addr,
                limits: Limits {
                    ring_timeout: args.ring_timeout,
                    resume_grace: args.resume_grace,
                    max_buffered_candidates: args.max_buffered_candidates,
                },
                shutdown_grace: args.shutdown_grace,
            })
            .await?;
            println!(
                "signaling listening grpc={} http={}",
                app.grpc_addr(),
                app.http_addr()
            );
            app.run_until_stopped(shutdown_signal()).await
        };
        let outcome = run.await;
        telemetry.shutdown().await;
        outcome
    }
}
