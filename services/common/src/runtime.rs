//! One way to run a service, shared by the three binaries: ports bound up front (so tests bind
//! port 0 and read the addresses back), a gRPC port serving the service next to gRPC health and
//! reflection for exactly what that port serves, HTTP ports, owned background tasks, and a drain
//! in two phases on SIGTERM:
//!
//! 1. **draining**: gRPC health turns NOT_SERVING for every service and the service's own drain
//!    runs (signaling hands its sessions over, the gateway tells its browsers to go elsewhere)
//!    while the ports still serve;
//! 2. **stopping**: the servers stop accepting and finish what is open; tasks end.
//!
//! Both phases together are bounded by the grace period; what is left after it is dropped.
//! (Over 300 lines: one type, the runtime, and its drain.)

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpSocket},
    sync::Semaphore,
    task::JoinSet,
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{
    server::NamedService,
    service::{Routes, RoutesBuilder},
};

use crate::{
    auth::{Accepted, RequireToken, Token},
    connections::{self, CappedListener, Connection, ConnectionLimits},
};

/// How often a gRPC server pings a quiet client, and how long it waits for the answer: a frozen
/// or vanished peer's streams are ended rather than held (and buffered for) forever.
const GRPC_KEEPALIVE: Duration = Duration::from_secs(5);
use tonic_health::{
    ServingStatus,
    pb::health_server::HealthServer,
    server::{HealthReporter, HealthService},
};

type BoxedFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The gRPC services one port serves, with the descriptor sets reflection describes them from.
pub struct GrpcServices {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    descriptors: Vec<&'static [u8]>,
}

impl GrpcServices {
    /// `descriptors`: encoded `FileDescriptorSet`s covering the services added.
    pub fn new(descriptors: &[&'static [u8]]) -> Self {
        Self {
            routes: RoutesBuilder::default(),
            names: Vec::new(),
            descriptors: descriptors.to_vec(),
        }
    }

    pub fn with<S>(mut self, service: S) -> Self
    where
        S: tonic::codegen::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }
}

/// How a service runs, whatever it serves: its drain, the token its gRPC ports want, its
/// connection limits.
#[derive(Clone, Debug)]
pub struct RuntimeSettings {
    /// How long draining may take after SIGTERM before what is left is dropped.
    pub shutdown_grace: Duration,
    /// What callers of the gRPC ports must present (and the gateway presents).
    pub grpc_token: Option<Token>,
    /// Tokens the gRPC ports accept besides `grpc_token`: one per application allowed to call
    /// (ice-config's `CLIENT_TOKENS`).
    pub client_tokens: Vec<Token>,
    pub connections: ConnectionLimits,
}

impl RuntimeSettings {
    /// The tokens the gRPC ports accept: the shared one and the clients'.
    pub fn accepted(&self) -> Accepted {
        Accepted::new(self.grpc_token.iter().chain(&self.client_tokens).cloned())
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(10),
            grpc_token: None,
            client_tokens: Vec::new(),
            connections: ConnectionLimits::default(),
        }
    }
}

/// The service being run: its bound ports, its tasks and its shutdown.
pub struct Runtime {
    name: &'static str,
    grace: Duration,
    draining: CancellationToken,
    stop: CancellationToken,
    tasks: TaskTracker,
    servers: JoinSet<anyhow::Result<()>>,
    /// Bound and not yet served, by key.
    listeners: Vec<(&'static str, TcpListener)>,
    addrs: Vec<(&'static str, SocketAddr)>,
    health: HealthReporter,
    served: Vec<&'static str>,
    drain: Option<BoxedFuture>,
    /// Open connections, across every port.
    connections: Arc<Semaphore>,
    header_timeout: Duration,
    /// What callers of the gRPC ports must present.
    token: Accepted,
}

/// Connections the kernel may hold for a port before they are accepted (it caps this at
/// `net.core.somaxconn`, 4096 by default).
const BACKLOG: u32 = 4096;

/// Listens on `addr` with room for a burst of connections: a gateway's browsers all coming
/// back at once after it restarts. With tokio's default backlog (1024) the rest of such a burst
/// is dropped, and each dropped connection costs its browser a second before it tries again.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

impl Runtime {
    /// Binds every port (`key`, address) of service `name`.
    pub fn bind(
        name: &'static str,
        settings: &RuntimeSettings,
        ports: &[(&'static str, SocketAddr)],
    ) -> anyhow::Result<Self> {
        let limits = settings.connections;
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for &(key, addr) in ports {
            let listener =
                listen(addr).with_context(|| format!("cannot listen on {addr} ({key})"))?;
            addrs.push((key, listener.local_addr().unwrap_or(addr)));
            listeners.push((key, listener));
        }
        Ok(Self {
            name,
            grace: settings.shutdown_grace,
            draining: CancellationToken::new(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            servers: JoinSet::new(),
            listeners,
            addrs,
            health: HealthReporter::new(),
            served: Vec::new(),
            drain: None,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            header_timeout: limits.header_timeout,
            token: settings.accepted(),
        })
    }

    /// The address bound for `key`.
    pub fn addr(&self, key: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(k, _)| *k == key).map(|(_, a)| *a)
    }

    /// `<name> listening key=addr …`: printed once on stdout, for people and for tests that
    /// bind port 0.
    pub fn announce(&self) -> String {
        let mut line = format!("{} listening", self.name);
        for (key, addr) in &self.addrs {
            line.push_str(&format!(" {key}={addr}"));
        }
        line
    }

    /// Renames a port in the announcement (the gateway's `http` port says `https` with TLS).
    pub fn rename(&mut self, key: &str, new: &'static str) {
        for (k, _) in &mut self.addrs {
            if *k == key {
                *k = new;
            }
        }
        for (k, _) in &mut self.listeners {
            if *k == key {
                *k = new;
            }
        }
    }

    /// Cancelled when draining starts (phase 1).
    pub fn draining(&self) -> CancellationToken {
        self.draining.clone()
    }

    /// Cancelled when the servers stop (phase 2).
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Owns background tasks; shutdown waits for them.
    pub fn tasks(&self) -> TaskTracker {
        self.tasks.clone()
    }

    /// Sets gRPC services' health.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// What the service does in phase 1 of a shutdown, before the servers stop.
    pub fn on_drain(&mut self, drain: impl Future<Output = ()> + Send + 'static) {
        self.drain = Some(Box::pin(drain));
    }

    fn take_listener(&mut self, key: &str) -> anyhow::Result<CappedListener> {
        let at = self
            .listeners
            .iter()
            .position(|(k, _)| *k == key)
            .with_context(|| format!("no port {key} bound"))?;
        let listener = self.listeners.swap_remove(at).1;
        Ok(CappedListener::new(listener, self.connections.clone()))
    }

    /// Serves `services` on port `key`, with gRPC health and reflection (v1 and v1alpha, which
    /// today's grpcurl builds still ask) listing exactly what this port serves. Every service
    /// starts SERVING.
    pub async fn serve_grpc(
        &mut self,
        key: &'static str,
        services: GrpcServices,
        configure: impl FnOnce(tonic::transport::Server) -> tonic::transport::Server,
    ) -> anyhow::Result<()> {
        let listener = self.take_listener(key)?;
        let GrpcServices {
            mut routes,
            names,
            descriptors,
        } = services;
        for name in &names {
            self.health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        let reflection = || {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health")
                .with_service_name("grpc.reflection.v1.ServerReflection")
                .with_service_name("grpc.reflection.v1alpha.ServerReflection");
            for descriptor in &descriptors {
                builder = builder.register_encoded_file_descriptor_set(descriptor);
            }
            for name in &names {
                builder = builder.with_service_name(*name);
            }
            builder
        };
        routes
            .add_service(HealthServer::new(HealthService::from_health_reporter(
                self.health.clone(),
            )))
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
        self.served.extend(names);
        let routes: Routes = routes.routes();
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(GRPC_KEEPALIVE))
            .http2_keepalive_timeout(Some(GRPC_KEEPALIVE));
        let server = configure(server)
            .layer(RequireToken(self.token.clone()))
            .layer(crate::metered::GrpcMetrics)
            .add_routes(routes)
            .serve_with_incoming_shutdown(listener.incoming(), self.stop.clone().cancelled_owned());
        self.servers
            .spawn(async move { server.await.context("gRPC server") });
        Ok(())
    }

    /// Serves `router` on port `key` (plain HTTP/1.1).
    pub fn serve_http(&mut self, key: &'static str, router: axum::Router) -> anyhow::Result<()> {
        self.serve_http_with(key, router, connections::plain)
    }

    /// Serves `router` on port `key` over what `handshake` makes of each connection (TLS).
    pub fn serve_http_with<H, Fut, Io>(
        &mut self,
        key: &'static str,
        router: axum::Router,
        handshake: H,
    ) -> anyhow::Result<()>
    where
        H: Fn(Connection) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Option<Io>> + Send + 'static,
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let listener = self.take_listener(key)?;
        let server = connections::serve_http(
            listener,
            router.layer(crate::metered::HttpMetrics),
            self.header_timeout,
            self.stop.clone(),
            handshake,
        );
        self.servers.spawn(async move {
            server.await;
            Ok(())
        });
        Ok(())
    }

    /// Runs until `shutdown` completes (or a server fails), then drains within the grace period.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let outcome = tokio::select! {
            () = shutdown => {
                tracing::info!(grace = ?self.grace, "shutting down");
                Ok(())
            }
            Some(ended) = self.servers.join_next() => {
                let error = match ended {
                    Ok(Err(error)) => error,
                    Ok(Ok(())) => anyhow::anyhow!("a server stopped unexpectedly"),
                    Err(error) => anyhow::Error::from(error).context("a server task failed"),
                };
                tracing::error!(%error, "stopping");
                Err(error)
            }
        };
        let deadline = Instant::now() + self.grace;

        // Phase 1: tell health checkers and peers, let the service hand its work over.
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in &self.served {
            self.health
                .set_service_status(*name, ServingStatus::NotServing)
                .await;
        }
        self.draining.cancel();
        if let Some(drain) = self.drain.take()
            && tokio::time::timeout_at(deadline, drain).await.is_err()
        {
            tracing::warn!("grace period over while draining");
        }

        // Phase 2: stop the servers and wait for what is open.
        self.stop.cancel();
        self.tasks.close();
        let mut servers = self.servers;
        let tasks = self.tasks;
        let rest = async move {
            while let Some(ended) = servers.join_next().await {
                if let Ok(Err(error)) = ended {
                    tracing::warn!(%error, "server ended with an error while draining");
                }
            }
            tasks.wait().await;
        };
        if tokio::time::timeout_at(deadline, rest).await.is_err() {
            tracing::warn!("grace period over; dropping what is still open");
        }
        outcome
    }
}

/// The whole binary once its flags are parsed: telemetry, the service built by `build`, its
/// announce line, and a run until SIGINT/SIGTERM; spans are flushed before returning.
pub async fn run_binary<Fut>(name: &'static str, build: Fut) -> anyhow::Result<()>
where
    Fut: Future<Output = anyhow::Result<Runtime>>,
{
    let telemetry = crate::init_telemetry(name);
    let run = async {
        let runtime = build.await?;
        println!("{}", runtime.announce());
        runtime.run(crate::shutdown_signal()).await
    };
    let outcome = run.await;
    telemetry.shutdown().await;
    outcome
}
