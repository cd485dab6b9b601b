//! Wiring: the gRPC port (SignalingService, health, reflection), the HTTP port (`/healthz`,
//! `/readyz`, `/metrics`), the deadline timer, and the drain on shutdown.

use std::{net::SocketAddr, time::Duration};

use svc_common::{GrpcServices, Runtime, admin::Readiness};

use crate::{
    directory::{Directory, MemoryDirectory},
    grpc::SignalingGrpc,
    hub::Hub,
    metrics::Metrics,
    vocabulary::Limits,
};

#[derive(Clone, Debug)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub limits: Limits,
    pub shutdown_grace: Duration,
}

/// The service, its ports bound and serving: run it with [`Runtime::run`].
pub async fn build(settings: Settings) -> anyhow::Result<Runtime> {
    let mut runtime = Runtime::bind(
        "signaling",
        settings.shutdown_grace,
        &[("grpc", settings.grpc_addr), ("http", settings.http_addr)],
    )
    .await?;
    serve(&mut runtime, MemoryDirectory::default(), settings.limits).await?;
    Ok(runtime)
}

/// Serves signaling over `directory` on the runtime's ports.
async fn serve<D: Directory>(
    runtime: &mut Runtime,
    directory: D,
    limits: Limits,
) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    let hub = Hub::new(directory, limits, metrics.clone());
    let tasks = runtime.tasks();
    tasks.spawn(hub.clone().run_timers(runtime.stopping()));
    tasks.spawn(hub.clone().run_sweeper(runtime.stopping()));

    let grpc = SignalingGrpc::new(hub.clone(), tasks, runtime.stopping());
    runtime
        .serve_grpc(
            "grpc",
            GrpcServices::new(&[stunner_proto::FILE_DESCRIPTOR_SET]).with(grpc.into_server()),
            |server| server,
        )
        .await?;
    let admin = svc_common::admin::router(Readiness::ready, move || metrics.render(hub.counts()));
    runtime.serve_http("http", admin)?;
    Ok(())
}
