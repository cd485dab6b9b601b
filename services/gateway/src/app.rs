//! Wiring: the HTTP port, the link to signaling, the ice-config client, and the drain.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use svc_common::{Runtime, RuntimeSettings, auth::Bearer};
use tokio_util::task::TaskTracker;
use tonic::transport::Endpoint;

use crate::{
    assets, balance,
    http::{self, HttpState, Origins},
    ice::{GatewayFilter, IceClient},
    link::{self, Link},
    metrics::Metrics,
    resolve,
    session::{SessionLimits, Shared},
    tls,
    upstream::IceConfigHealth,
};

/// Messages a session may fall behind by before it is closed, by default.
pub const SESSION_QUEUE: usize = 256;

#[derive(Clone, Debug)]
pub struct Settings {
    pub http_addr: SocketAddr,
    /// One signaling endpoint, several (comma-separated), or a name standing for every
    /// address it resolves to (a headless Service).
    pub signaling_url: String,
    /// How often signaling's names are resolved again.
    pub signaling_resolve_every: Duration,
    pub ice_config_url: String,
    /// How often ice-config's name is resolved again (new and vanished replicas).
    pub ice_config_resolve_every: Duration,
    pub static_dir: PathBuf,
    pub origins: Vec<String>,
    pub relay_only: bool,
    /// Which STUNner Gateways browsers get.
    pub gateways: GatewayFilter,
    pub limits: SessionLimits,
    /// Messages a session may fall behind by before it is closed.
    pub session_queue: usize,
    /// Serve HTTPS and WSS.
    pub tls: Option<TlsSettings>,
    /// The drain, the services' shared token, connection limits.
    pub runtime: RuntimeSettings,
}

/// The certificate files and how often they are looked at again.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub files: tls::CertFiles,
    pub reload_every: Duration,
}

/// The gateway, its port bound and serving: run it with [`Runtime::run`]. On SIGTERM every
/// browser is told the server is going away (1001) and its closing handshake is waited for,
/// before the port stops.
pub async fn build(settings: Settings) -> anyhow::Result<Runtime> {
    let mut runtime = Runtime::bind(
        "gateway",
        &settings.runtime,
        &[("http", settings.http_addr)],
    )?;
    let tasks = runtime.tasks();

    // Connected lazily: the gateway starts (and reports not ready) without ice-config.
    // Requests are spread over every address its name resolves to.
    let (ice, resolver) = balance::channel(
        &settings.ice_config_url,
        settings.ice_config_resolve_every,
        // Each request is bounded as a whole by the ICE client.
        internal,
        runtime.stopping(),
    )?;
    tasks.spawn(resolver);
    let ice_health = IceConfigHealth::default();
    tasks.spawn(ice_health.clone().watch(ice.clone(), runtime.stopping()));
    // One stream per signaling replica; a replica that stops answering (a frozen process, a
    // lost node) is noticed by HTTP/2 keepalive within two seconds.
    let (replicas, resolver) = resolve::watch(
        &settings.signaling_url,
        settings.signaling_resolve_every,
        runtime.stopping(),
    )?;
    if let Some(resolver) = resolver {
        tasks.spawn(resolver);
    }
    let bearer = Bearer::new(settings.runtime.grpc_token.as_ref());
    let link = Link::new(settings.session_queue, bearer.clone());
    tasks.spawn(link::run(
        link.clone(),
        replicas,
        internal,
        runtime.stopping(),
    ));

    let sessions = TaskTracker::new();
    let shared = Arc::new(Shared {
        link,
        metrics: Metrics::default(),
        ice: IceClient::new(ice, settings.relay_only, settings.gateways.clone(), bearer),
        ice_health,
        limits: settings.limits,
        stop: runtime.draining(),
        sessions: sessions.clone(),
    });
    let state = HttpState {
        shared,
        origins: Origins::parse(&settings.origins),
        next_session: Arc::default(),
    };
    let router = http::router(state, assets::locate(&settings.static_dir)?);
    match &settings.tls {
        Some(tls) => {
            let certificates = tls::Certificates::load(tls.files.clone())?;
            let acceptor = certificates.acceptor()?;
            runtime
                .tasks()
                .spawn(certificates.follow(tls.reload_every, runtime.stopping()));
            runtime.rename("http", "https");
            runtime.serve_http_with("https", router, move |connection| {
                tls::handshake(acceptor.clone(), connection)
            })?;
        }
        None => runtime.serve_http("http", router)?,
    }
    // Phase 1 of the drain: the sessions close themselves (1001) when draining starts; wait for
    // their closing handshakes and their last word to signaling.
    runtime.on_drain(async move {
        sessions.close();
        sessions.wait().await;
    });
    Ok(runtime)
}

/// A connection to signaling or ice-config: a replica that stops answering (a frozen process, a
/// lost node) is noticed by HTTP/2 keepalive within two seconds, and left for the others.
fn internal(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true)
}
