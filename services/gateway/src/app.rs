//! Wiring: the HTTP port, the link to signaling, the ice-config client, and the drain.

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::Endpoint;

use crate::{
    balance,
    http::{self, HttpState, Origins},
    ice::IceClient,
    link::Link,
    metrics::Metrics,
    session::{SessionLimits, Shared},
    tls,
};

#[derive(Clone, Debug)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub signaling_url: String,
    pub ice_config_url: String,
    /// How often ice-config's name is resolved again (new and vanished replicas).
    pub ice_config_resolve_every: Duration,
    pub static_dir: PathBuf,
    pub origins: Vec<String>,
    pub relay_only: bool,
    pub limits: SessionLimits,
    /// Messages a session may fall behind by before it is closed.
    pub session_queue: usize,
    /// PEM certificate chain and key: serve HTTPS and WSS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub shutdown_grace: Duration,
}

pub struct Application {
    settings: Settings,
    http: TcpListener,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let http = TcpListener::bind(settings.http_addr).await?;
        Ok(Self { settings, http })
    }

    /// Whether it serves HTTPS/WSS.
    pub fn tls(&self) -> bool {
        self.settings.tls.is_some()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.settings.http_addr)
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self { settings, http } = self;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();

        let signaling = Endpoint::from_shared(settings.signaling_url.clone())?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        // Connected lazily: the gateway starts (and reports not ready) without ice-config.
        // Requests are spread over every address its name resolves to.
        let (ice, resolver) = balance::channel(
            &settings.ice_config_url,
            settings.ice_config_resolve_every,
            |endpoint| {
                // Each request is bounded as a whole by the ICE client.
                endpoint
                    .connect_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true)
            },
            stop.clone(),
        )?;
        if let Some(resolver) = resolver {
            tasks.spawn(resolver);
        }
        let (link, upstream) = Link::new(settings.session_queue);
        tasks.spawn(link.clone().run(signaling, upstream, stop.clone()));

        let shared = Arc::new(Shared {
            link,
            metrics: Metrics::default(),
            ice: IceClient::new(ice, settings.relay_only),
            limits: settings.limits,
            stop: stop.clone(),
        });
        let state = HttpState {
            shared,
            origins: Origins::parse(&settings.origins),
            next_session: Arc::default(),
        };
        let router = http::router(state, settings.static_dir.clone());
        let mut server = match &settings.tls {
            Some((cert, key)) => {
                let acceptor = tls::acceptor(cert, key)?;
                let serving = tls::serve(http, acceptor, router, stop.clone(), tasks.clone());
                tokio::spawn(async move {
                    serving.await;
                    Ok(())
                })
            }
            None => {
                let server = axum::serve(
                    // Small messages must not wait for Nagle's algorithm and delayed ACKs.
                    http.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    }),
                    router,
                )
                .with_graceful_shutdown(stop.clone().cancelled_owned());
                tokio::spawn(async move { server.await })
            }
        };

        tokio::select! {
            () = shutdown => tracing::info!("shutting down"),
            ended = &mut server => {
                stop.cancel();
                return Err(anyhow::anyhow!("HTTP server stopped: {ended:?}"));
            }
        }
        stop.cancel();
        tasks.close();
        let drain = async {
            let _ = server.await;
            tasks.wait().await;
        };
        if tokio::time::timeout(settings.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!("grace period over; dropping the connections still open");
        }
        Ok(())
    }
}
