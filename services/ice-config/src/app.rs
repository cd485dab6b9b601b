//! Wiring: binds the ports, starts the config sources and both servers, and drains them on
//! shutdown within a grace period.

use std::{future::Future, net::SocketAddr, path::PathBuf, time::Duration};

use futures_util::future::BoxFuture;

use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    Error, Result,
    grpc::IceConfigGrpc,
    http::{self, HttpState},
    ice::TtlPolicy,
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
    pub ttl: TtlPolicy,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
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

/// The service with its ports bound and its configs loaded once, ready to run.
pub struct Application {
    settings: Settings,
    grpc: TcpListener,
    http: TcpListener,
    metrics: Metrics,
    store: ConfigStore,
    sources: Vec<BoxFuture<'static, ()>>,
    stop: CancellationToken,
}

impl Application {
    /// Binds both ports, so callers (and tests binding port 0) know the addresses before
    /// running, and loads every config source once, so the first request finds the config.
    pub async fn build(settings: Settings) -> Result<Self> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })
        };
        let grpc = bind(settings.grpc_addr).await?;
        let http = bind(settings.http_addr).await?;
        let metrics = Metrics::default();
        let store = ConfigStore::new(metrics.clone());
        let stop = CancellationToken::new();
        let sources = start_sources(&settings.source, &store, &stop).await?;
        Ok(Self {
            settings,
            grpc,
            http,
            metrics,
            store,
            sources,
            stop,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.settings.grpc_addr)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.settings.http_addr)
    }

    /// Serves until `shutdown` completes or a server fails, then drains.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Self {
            settings,
            grpc,
            http,
            metrics,
            store,
            sources,
            stop,
        } = self;
        let background = TaskTracker::new();
        for source in sources {
            background.spawn(source);
        }

        let (reporter, health) = tonic_health::server::health_reporter();
        background.spawn(report_health(store.clone(), reporter, stop.clone()));
        background.close();

        // grpcurl builds of today still ask the v1alpha reflection service; newer clients ask v1.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(stunner_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let ice = IceConfigGrpc::new(store.clone(), metrics.clone(), settings.ttl, stop.clone());

        let mut servers = JoinSet::new();
        let grpc_server = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(ice.into_server())
            .serve_with_incoming_shutdown(
                TcpIncoming::from(grpc).with_nodelay(Some(true)),
                stop.clone().cancelled_owned(),
            );
        servers.spawn(async move { grpc_server.await.map_err(Error::Grpc) });
        let state = HttpState {
            store,
            metrics,
            ttl: settings.ttl,
        };
        let http_server = axum::serve(http, http::router(state))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        servers.spawn(async move { http_server.await.map_err(Error::Http) });

        let outcome = tokio::select! {
            () = shutdown => {
                tracing::info!(grace = ?settings.shutdown_grace, "shutting down");
                Ok(())
            }
            Some(ended) = servers.join_next() => {
                tracing::error!("a server stopped unexpectedly");
                ended.unwrap_or_else(|e| Err(Error::Task(e)))
            }
        };
        stop.cancel();

        let drain = async {
            while let Some(ended) = servers.join_next().await {
                if let Err(error) = ended.unwrap_or_else(|e| Err(Error::Task(e))) {
                    tracing::warn!(%error, "server ended with an error while draining");
                }
            }
            background.wait().await;
        };
        if tokio::time::timeout(settings.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!("grace period over; dropping the connections still open");
        }
        outcome
    }
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

/// Keeps the gRPC health of `iceconfig.v1.IceConfigService` in line with readiness; the
/// overall ("") status stays SERVING until shutdown, for liveness.
async fn report_health(store: ConfigStore, reporter: HealthReporter, stop: CancellationToken) {
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
        reporter.set_service_status(service, status).await;
        tokio::select! {
            () = stop.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break },
        }
    }
    reporter
        .set_service_status(service, ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
}
