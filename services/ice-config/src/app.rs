//! Wiring: binds the ports, starts the config sources and both servers on the shared service
//! runtime, and keeps gRPC health in line with readiness.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use futures_util::future::BoxFuture;
use svc_common::{GrpcServices, Runtime, RuntimeSettings, auth::Accepted};
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    Error, Result,
    grpc::IceConfigGrpc,
    http::{self, HttpState},
    ice::Issuing,
    metrics::Metrics,
    source::{CdsSource, FileSource, KubeSource, cds, kube::Selection},
    store::ConfigStore,
};

/// Everything the service needs to run, already parsed.
#[derive(Clone, Debug)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Where the STUNner configs come from.
    pub source: SourceSettings,
    /// Credential lifetimes and the public address override.
    pub issuing: Issuing,
    /// The drain, the services' shared token, connection limits.
    pub runtime: RuntimeSettings,
}

/// Where the STUNner configs come from.
#[derive(Clone, Debug)]
pub enum SourceSettings {
    /// Config files, each one config or a list of them under `items`, polled for changes.
    Files {
        paths: Vec<PathBuf>,
        poll_interval: Duration,
    },
    /// ConfigMaps watched through the Kubernetes API, one watch per namespace (`None`: all).
    Kubernetes {
        namespaces: Vec<Option<String>>,
        labels: String,
        key: String,
    },
    /// STUNner's config discovery service.
    ConfigDiscovery {
        url: String,
        namespace: Option<String>,
        timing: cds::Timing,
    },
}

/// The service, its ports bound and serving, its configs loaded once (so the first request finds
/// them): run it with [`Runtime::run`].
pub async fn build(settings: Settings) -> anyhow::Result<Runtime> {
    let mut runtime = Runtime::bind(
        "ice-config",
        &settings.runtime,
        &[("grpc", settings.grpc_addr), ("http", settings.http_addr)],
    )?;
    let metrics = Metrics::default();
    let store = ConfigStore::new(metrics.clone());
    let tasks = runtime.tasks();
    for source in start_sources(&settings.source, &store, &runtime.stopping()).await? {
        tasks.spawn(source);
    }

    let ice = IceConfigGrpc::new(
        store.clone(),
        metrics.clone(),
        settings.issuing.clone(),
        runtime.stopping(),
    );
    runtime
        .serve_grpc(
            "grpc",
            GrpcServices::new(&[stunner_proto::FILE_DESCRIPTOR_SET]).with(ice.into_server()),
            |server| server,
        )
        .await?;
    tasks.spawn(report_health(
        store.clone(),
        runtime.health(),
        runtime.draining(),
    ));
    let state = HttpState {
        store,
        metrics,
        issuing: settings.issuing,
        clients: if settings.runtime.client_tokens.is_empty() {
            Accepted::default()
        } else {
            settings.runtime.accepted()
        },
    };
    runtime.serve_http("http", http::router(state))?;
    Ok(runtime)
}

/// Creates the configured sources, each as the future that runs it until `stop`. Files are read
/// once here, so the first request finds their configs.
async fn start_sources(
    settings: &SourceSettings,
    store: &ConfigStore,
    stop: &CancellationToken,
) -> Result<Vec<BoxFuture<'static, ()>>> {
    let mut sources: Vec<BoxFuture<'static, ()>> = Vec::new();
    match settings {
        SourceSettings::Files {
            paths,
            poll_interval,
        } => {
            for path in paths {
                let mut source = FileSource::new(path, *poll_interval, store);
                source.poll().await;
                sources.push(Box::pin(source.run(stop.clone())));
            }
        }
        SourceSettings::Kubernetes {
            namespaces,
            labels,
            key,
        } => {
            let client = ::kube::Client::try_default().await.map_err(Error::Kube)?;
            for namespace in namespaces {
                let selection = Selection {
                    namespace: namespace.clone(),
                    labels: labels.clone(),
                    key: key.clone(),
                };
                let source = KubeSource::new(client.clone(), selection, store);
                sources.push(Box::pin(source.run(stop.clone())));
            }
        }
        SourceSettings::ConfigDiscovery {
            url,
            namespace,
            timing,
        } => {
            let source = CdsSource::new(url, namespace.as_deref(), *timing, store);
            sources.push(Box::pin(source.run(stop.clone())));
        }
    }
    Ok(sources)
}

/// Keeps the gRPC health of `iceconfig.v1.IceConfigService` in line with readiness until the
/// drain starts (the runtime then reports NOT_SERVING for everything).
async fn report_health(store: ConfigStore, reporter: HealthReporter, draining: CancellationToken) {
    let service = <stunner_proto::iceconfig::v1::ice_config_service_server::IceConfigServiceServer<
        IceConfigGrpc,
    > as NamedService>::NAME;
    let mut changes = store.subscribe();
    loop {
        let status = if store.readiness().ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        tokio::select! {
            () = draining.cancelled() => return,
            () = reporter.set_service_status(service, status) => {}
        }
        tokio::select! {
            () = draining.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}
