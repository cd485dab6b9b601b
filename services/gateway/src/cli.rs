//! Command-line flags, each also read from an environment variable.

use std::path::PathBuf;

use clap::Parser;
use svc_common::{
    Duration,
    args::{HttpArgs, ServiceArgs},
    parse_duration,
};

use crate::{
    app::{self, Settings, TlsSettings},
    ice::GatewayFilter,
    session::SessionLimits,
    tls::CertFiles,
};

/// The browsers' edge: serves the page and the WebSocket at /one2one, translating to gRPC.
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    mut_arg("http_addr", |a| a.default_value("0.0.0.0:8080").required(false)),
)]
pub struct Args {
    #[command(flatten)]
    pub http: HttpArgs,

    /// The signaling replicas: one URL, several comma-separated, or a name whose every address
    /// is a replica (a headless Service), resolved again every --signaling-resolve-interval.
    #[arg(long, env = "SIGNALING_URL", default_value = "http://127.0.0.1:50052")]
    pub signaling_url: String,

    /// How often SIGNALING_URL's host names are resolved again.
    #[arg(long, env = "SIGNALING_RESOLVE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub signaling_resolve_interval: Duration,

    /// The ice-config service.
    #[arg(long, env = "ICE_CONFIG_URL", default_value = "http://127.0.0.1:50051")]
    pub ice_config_url: String,

    /// How often ICE_CONFIG_URL's host name is resolved again, so requests reach every
    /// replica behind a headless Service.
    #[arg(long, env = "ICE_CONFIG_RESOLVE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub ice_config_resolve_interval: Duration,

    /// The folder of the browser client.
    #[arg(long, env = "STATIC_DIR", default_value = crate::assets::DEFAULT)]
    pub static_dir: PathBuf,

    /// Origins whose pages may open the WebSocket, comma-separated; the gateway's own origin is
    /// always allowed; `*` allows any (local development only).
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Hand out `iceTransportPolicy: relay` (STUNner's headless model) rather than `all`.
    #[arg(long, env = "RELAY_ONLY", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_only: bool,

    /// Give browsers only this namespace's STUNner Gateways (as the tutorial's server).
    #[arg(long, env = "STUNNER_NAMESPACE")]
    pub stunner_namespace: Option<String>,

    /// …only this Gateway of --stunner-namespace.
    #[arg(long, env = "STUNNER_GATEWAY")]
    pub stunner_gateway: Option<String>,

    /// …only this listener of --stunner-gateway.
    #[arg(long, env = "STUNNER_LISTENER")]
    pub stunner_listener: Option<String>,

    /// Messages per second one browser may send, on average.
    #[arg(long, env = "SESSION_RATE", default_value_t = SessionLimits::default().rate)]
    pub session_rate: u32,

    /// Messages one browser may send at once above the rate.
    #[arg(long, env = "SESSION_BURST", default_value_t = SessionLimits::default().burst)]
    pub session_burst: u32,

    /// Messages a browser may fall behind by before it is closed.
    #[arg(long, env = "SESSION_QUEUE", default_value_t = crate::app::SESSION_QUEUE)]
    pub session_queue: usize,

    /// How often browsers are pinged; one silent for two intervals is closed.
    #[arg(long, env = "PING_INTERVAL", default_value_t = SessionLimits::default().ping_interval.into(), value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// PEM certificate chain: serve HTTPS and WSS (needs --tls-key).
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How often the certificate and key files are read again (a renewed pair is used for new
    /// connections).
    #[arg(long, env = "TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,

    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Args {
    pub async fn parse_and_run() -> anyhow::Result<()> {
        let args = Self::parse();
        svc_common::run_binary("gateway", async move { app::build(args.settings()?).await }).await
    }

    pub fn settings(self) -> anyhow::Result<Settings> {
        let gateways = GatewayFilter::new(
            self.stunner_namespace,
            self.stunner_gateway,
            self.stunner_listener,
        )?;
        Ok(Settings {
            http_addr: self.http.http_addr,
            signaling_url: self.signaling_url,
            signaling_resolve_every: *self.signaling_resolve_interval,
            ice_config_url: self.ice_config_url,
            ice_config_resolve_every: *self.ice_config_resolve_interval,
            static_dir: self.static_dir,
            origins: self.allowed_origins,
            relay_only: self.relay_only,
            gateways,
            limits: SessionLimits {
                rate: self.session_rate,
                burst: self.session_burst,
                ping_interval: *self.ping_interval,
            },
            session_queue: self.session_queue,
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsSettings {
                    files: CertFiles { cert, key },
                    reload_every: *self.tls_reload_interval,
                }),
            runtime: self.service.runtime(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = Args::parse_from(["gateway"]).settings().expect("defaults");
        assert_eq!(settings.http_addr.port(), 8080);
        assert_eq!((settings.limits.rate, settings.limits.burst), (50, 200));
        assert_eq!(
            settings.limits.ping_interval,
            std::time::Duration::from_secs(20)
        );
        assert_eq!(settings.session_queue, 256);
        assert_eq!(settings.gateways, GatewayFilter::default());
    }

    #[test]
    fn a_gateway_without_its_namespace_is_refused() {
        let error = Args::parse_from(["gateway", "--stunner-gateway", "udp-gateway"])
            .settings()
            .expect_err("no namespace");
        assert!(error.to_string().contains("STUNNER_NAMESPACE"), "{error}");
    }
}
