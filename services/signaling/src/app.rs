//! Wiring: the gRPC port (SignalingService, health, reflection), the deadline timer, and the
//! drain on shutdown.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::server::TcpIncoming;

use crate::{grpc::SignalingGrpc, hub::Hub, switchboard::Limits};

#[derive(Clone, Debug)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    pub limits: Limits,
    pub shutdown_grace: Duration,
}

pub struct Application {
    settings: Settings,
    grpc: TcpListener,
}

impl Application {
    pub async fn build(settings: Settings) -> std::io::Result<Self> {
        let grpc = TcpListener::bind(settings.grpc_addr).await?;
        Ok(Self { settings, grpc })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.settings.grpc_addr)
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let hub = Hub::new(self.settings.limits);
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
            .add_service(SignalingGrpc::new(hub, tasks.clone(), stop.clone()).into_server())
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.grpc).with_nodelay(Some(true)),
                stop.clone().cancelled_owned(),
            );
        let mut server = tokio::spawn(server);

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
