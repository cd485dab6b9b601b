//! Wiring: the gRPC port (SignalingService, health, reflection), the HTTP port (`/healthz`,
//! `/readyz`, `/metrics`), the deadline timer, and the drain on shutdown.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::server::TcpIncoming;

use std::sync::Arc;

use axum::{Router, http::header, routing::get};

use crate::{
    grpc::SignalingGrpc,
    hub::Hub,
    metrics::{self, Metrics},
    switchboard::Limits,
};

/// `/healthz` and `/readyz` (alive and serving once listening), `/metrics`.
fn router(hub: Arc<Hub>, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render(hub.counts());
                async move { ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body) }
            }),
        )
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub limits: Limits,
    pub shutdown_grace: Duration,
}

pub struct Application {
    settings: Settings,
    grpc: TcpListener,
    http: TcpListener,
}

impl Application {
    pub async fn build(settings: Settings) -> std::io::Result<Self> {
        let grpc = TcpListener::bind(settings.grpc_addr).await?;
        let http = TcpListener::bind(settings.http_addr).await?;
        Ok(Self {
            settings,
            grpc,
            http,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.settings.http_addr)
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.settings.grpc_addr)
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let metrics = Metrics::default();
        let hub = Hub::new(self.settings.limits, metrics.clone());
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(hub.clone().run_timers(stop.clone()));

        let (_reporter, health) = tonic_health::server::health_reporter();
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(stunner_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let server = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(SignalingGrpc::new(hub.clone(), tasks.clone(), stop.clone()).into_server())
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.grpc).with_nodelay(Some(true)),
                stop.clone().cancelled_owned(),
            );
        let mut server = tokio::spawn(server);
        let http = axum::serve(self.http, router(hub, metrics))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        tasks.spawn(async move {
            if let Err(error) = http.await {
                tracing::error!(%error, "HTTP server failed");
            }
        });

        tokio::select! {
            () = shutdown => tracing::info!("shutting down"),
            ended = &mut server => {
                stop.cancel();
                return Err(anyhow::anyhow!("gRPC server stopped: {:?}", ended));
            }
        }
        stop.cancel();
        tasks.close();
        let drain = async {
            let _ = server.await;
            tasks.wait().await;
        };
        if tokio::time::timeout(self.settings.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!("grace period over; dropping the streams still open");
        }
        Ok(())
    }
}
