//! Wiring: the store (in memory, or Redis when replicas share it), the gRPC port
//! (SignalingService, health, reflection), the HTTP port (`/healthz`, `/readyz`, `/metrics`),
//! the timers, the sweeper of lost gateways, and the drain on shutdown.

use std::{net::SocketAddr, time::Duration};

use svc_common::{GrpcServices, Runtime, RuntimeSettings, admin::Readiness};

use crate::{
    directory::{Directory, MemoryDirectory, RedisDirectory, StoreUrl},
    grpc::SignalingGrpc,
    hub::Hub,
    metrics::Metrics,
    vocabulary::Limits,
};

/// How often a shared store is checked for having lost its data (and for being reachable).
const EPOCH_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub limits: Limits,
    /// The shared store; in memory (one replica) without it.
    pub redis: Option<StoreUrl>,
    /// The drain, the services' shared token, connection limits.
    pub runtime: RuntimeSettings,
}

/// The service, its ports bound and serving: run it with [`Runtime::run`].
pub async fn build(settings: Settings) -> anyhow::Result<Runtime> {
    let mut runtime = Runtime::bind(
        "signaling",
        &settings.runtime,
        &[("grpc", settings.grpc_addr), ("http", settings.http_addr)],
    )?;
    let metrics = Metrics::default();
    match &settings.redis {
        Some(url) => {
            let redis = RedisDirectory::connect(url, metrics.clone()).await?;
            let (closing, stop) = (redis.clone(), runtime.stopping());
            serve(&mut runtime, redis, settings.limits, metrics).await?;
            runtime.tasks().spawn(async move {
                stop.cancelled().await;
                closing.close().await;
            });
        }
        None => {
            serve(
                &mut runtime,
                MemoryDirectory::default(),
                settings.limits,
                metrics,
            )
            .await?
        }
    }
    Ok(runtime)
}

/// Serves signaling over `directory` on the runtime's ports.
async fn serve<D: Directory>(
    runtime: &mut Runtime,
    directory: D,
    limits: Limits,
    metrics: Metrics,
) -> anyhow::Result<()> {
    let shared = directory.shared();
    let hub = Hub::with_draining(directory, limits, metrics.clone(), runtime.draining());
    let tasks = runtime.tasks();
    let stop = runtime.stopping();
    tasks.spawn(hub.clone().run_timers(stop.clone()));
    tasks.spawn(hub.clone().run_sweeper(stop.clone()));
    tasks.spawn(hub.clone().run_retries(stop.clone()));
    // The epoch is read once before any gateway attaches; a shared store is watched.
    hub.clone().follow_epoch(None, stop.clone()).await;
    if shared {
        tasks.spawn(hub.clone().follow_epoch(Some(EPOCH_EVERY), stop.clone()));
    }

    let grpc = SignalingGrpc::new(hub.clone(), tasks, stop);
    runtime
        .serve_grpc(
            "grpc",
            GrpcServices::new(&[stunner_proto::FILE_DESCRIPTOR_SET]).with(grpc.into_server()),
            |server| {
                // A gateway that stops answering (frozen, or its node gone) is noticed.
                server
                    .http2_keepalive_interval(Some(Duration::from_secs(5)))
                    .http2_keepalive_timeout(Some(Duration::from_secs(5)))
            },
        )
        .await?;
    let (ready, drained) = (hub.clone(), hub.clone());
    let admin = svc_common::admin::router(
        move || match ready.directory().problem() {
            None => Readiness::ready(),
            Some(problem) => Readiness {
                ready: false,
                problems: vec![problem],
            },
        },
        move || metrics.render(hub.counts()),
    );
    runtime.serve_http("http", admin)?;
    // With a shared store, the gateways move their sessions to other replicas when told this
    // one is draining; the drain waits for them to leave. Alone, there is nowhere to go.
    if shared {
        runtime.on_drain(async move { drained.streams_gone().await });
    }
    Ok(())
}
