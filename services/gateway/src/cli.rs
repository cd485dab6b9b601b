//! Command-line flags, each also read from an environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use svc_common::{parse_duration, shutdown_signal};

use crate::{
    app::{Application, Settings},
    session::SessionLimits,
};

/// The browsers' edge: serves the page and the WebSocket at /one2one, translating to gRPC.
#[derive(Debug, Parser)]
#[command(name = "gateway", version)]
pub struct Args {
    /// HTTP listen address (page, /one2one, /healthz, /readyz, /metrics).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// The signaling service.
    #[arg(long, env = "SIGNALING_URL", default_value = "http://127.0.0.1:50052")]
    pub signaling_url: String,

    /// The ice-config service.
    #[arg(long, env = "ICE_CONFIG_URL", default_value = "http://127.0.0.1:50051")]
    pub ice_config_url: String,

    /// How often ICE_CONFIG_URL's host name is resolved again, so requests reach every
    /// replica behind a headless Service.
    #[arg(long, env = "ICE_CONFIG_RESOLVE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub ice_config_resolve_interval: Duration,

    /// The folder of the browser client.
    #[arg(long, env = "STATIC_DIR", default_value = "static")]
    pub static_dir: PathBuf,

    /// Origins whose pages may open the WebSocket, comma-separated; the gateway's own origin is
    /// always allowed; `*` allows any (local development only).
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Hand out `iceTransportPolicy: relay` (STUNner's headless model) rather than `all`.
    #[arg(long, env = "RELAY_ONLY", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_only: bool,

    /// Messages per second one browser may send, on average.
    #[arg(long, env = "SESSION_RATE", default_value_t = 50)]
    pub session_rate: u32,

    /// Messages one browser may send at once above the rate.
    #[arg(long, env = "SESSION_BURST", default_value_t = 200)]
    pub session_burst: u32,

    /// Messages a browser may fall behind by before it is closed.
    #[arg(long, env = "SESSION_QUEUE", default_value_t = 256)]
    pub session_queue: usize,

    /// How often browsers are pinged; one silent for two intervals is closed.
    #[arg(long, env = "PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// PEM certificate chain: serve HTTPS and WSS (needs --tls-key).
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How long connections may take to finish after SIGTERM.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl Args {
    pub async fn parse_and_run() -> anyhow::Result<()> {
        let args = Self::parse();
        let telemetry = svc_common::init_telemetry("gateway");
        let run = async {
            let app = Application::build(args.settings()).await?;
            let scheme = if app.tls() { "https" } else { "http" };
            println!("gateway listening {scheme}={}", app.http_addr());
            app.run_until_stopped(shutdown_signal()).await
        };
        let outcome = run.await;
        telemetry.shutdown().await;
        outcome
    }

    pub fn settings(self) -> Settings {
        Settings {
            http_addr: self.http_addr,
            signaling_url: self.signaling_url,
            ice_config_url: self.ice_config_url,
            ice_config_resolve_every: self.ice_config_resolve_interval,
            static_dir: self.static_dir,
            origins: self.allowed_origins,
            relay_only: self.relay_only,
            limits: SessionLimits {
                rate: self.session_rate,
                burst: self.session_burst,
                ping_interval: self.ping_interval,
            },
            session_queue: self.session_queue,
            tls: self.tls_cert.zip(self.tls_key),
            shutdown_grace: self.shutdown_grace,
        }
    }
}
