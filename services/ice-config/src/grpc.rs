//! The gRPC adapter: `iceconfig.v1.IceConfigService` over the domain in [`crate::ice`].
//!
//! Requests are parsed into typed values at this edge; domain errors map to deliberate status
//! codes: a malformed request is `INVALID_ARGUMENT`, no config loaded is `UNAVAILABLE` (it may
//! come), no matching listener is `NOT_FOUND`.

use std::{future::pending, pin::Pin, sync::Arc, time::SystemTime};

use futures_util::{Stream, stream};
use stunner_proto::iceconfig::v1::{
    self as pb,
    ice_config_service_server::{IceConfigService, IceConfigServiceServer},
};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::{
    ice::{
        self, Filter, IceError, IceRequest, IceTransportPolicy, Issuing, PublicAddr, RequestError,
        Ttl, UserId,
    },
    metrics::Metrics,
    store::{ConfigSet, ConfigStore},
};

/// The gRPC service; cheap to clone.
#[derive(Clone)]
pub struct IceConfigGrpc {
    store: ConfigStore,
    metrics: Metrics,
    issuing: Issuing,
    /// Ends open watch streams when the server drains, so graceful shutdown does not wait on them.
    shutdown: CancellationToken,
}

impl IceConfigGrpc {
    pub fn new(
        store: ConfigStore,
        metrics: Metrics,
        issuing: Issuing,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            metrics,
            issuing,
            shutdown,
        }
    }

    pub fn into_server(self) -> IceConfigServiceServer<Self> {
        IceConfigServiceServer::new(self)
    }

    fn parse(&self, request: pb::GetIceConfigRequest) -> Result<IceRequest, Status> {
        parse_request(request, &self.issuing).map_err(|e| {
            self.metrics.rejected("grpc", "invalid_argument");
            Status::invalid_argument(e.grpc())
        })
    }

    fn answer(&self, configs: &ConfigSet, request: &IceRequest) -> Result<ice::IceConfig, Status> {
        match ice::build(configs, request, SystemTime::now()) {
            Ok(config) => {
                self.metrics
                    .issued("grpc", config.ice_servers.iter().map(|s| s.auth_kind));
                Ok(config)
            }
            Err(error) => {
                let (reason, status) = match error {
                    IceError::NoConfig => ("no_config", Status::unavailable(error.to_string())),
                    IceError::NoMatchingListener => {
                        ("no_matching_listener", Status::not_found(error.to_string()))
                    }
                };
                self.metrics.rejected("grpc", reason);
                Err(status)
            }
        }
    }
}

type IceConfigStream = Pin<Box<dyn Stream<Item = Result<pb::IceConfig, Status>> + Send>>;

#[tonic::async_trait]
impl IceConfigService for IceConfigGrpc {
    async fn get_ice_config(
        &self,
        request: Request<pb::GetIceConfigRequest>,
    ) -> Result<Response<pb::IceConfig>, Status> {
        let span = server_span("GetIceConfig", &request);
        let answer = async {
            let answer = self
                .parse(request.into_inner())
                .and_then(|request| self.answer(&self.store.snapshot(), &request));
            record_status(&answer);
            if let Ok(config) = &answer {
                tracing::debug!(servers = config.ice_servers.len(), "ICE config issued");
            }
            answer
        }
        .instrument(span)
        .await;
        Ok(Response::new(to_proto(answer?)))
    }

    type WatchIceConfigStream = IceConfigStream;

    async fn watch_ice_config(
        &self,
        request: Request<pb::GetIceConfigRequest>,
    ) -> Result<Response<Self::WatchIceConfigStream>, Status> {
        let span = server_span("WatchIceConfig", &request);
        let request = span.in_scope(|| {
            let request = self.parse(request.into_inner());
            record_status(&request);
            request
        })?;
        let watch = Watch {
            service: self.clone(),
            changes: self.store.subscribe(),
            request,
            refresh_at: None,
            started: false,
            done: false,
        };
        Ok(Response::new(Box::pin(stream::unfold(watch, Watch::next))))
    }
}

/// The state of one `WatchIceConfig` stream: answers at once, then again whenever the configs
/// change or the last answer's credentials near expiry; ends after an error status.
struct Watch {
    service: IceConfigGrpc,
    changes: watch::Receiver<Arc<ConfigSet>>,
    request: IceRequest,
    refresh_at: Option<Instant>,
    started: bool,
    done: bool,
}

enum Wake {
    Shutdown,
    StoreGone,
    Changed,
    Refresh,
}

impl Watch {
    async fn next(mut self) -> Option<(Result<pb::IceConfig, Status>, Self)> {
        if self.done {
            return None;
        }
        if self.started {
            let refresh_at = self.refresh_at;
            let refresh = async move {
                match refresh_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => pending().await,
                }
            };
            let woke = tokio::select! {
                _ = self.service.shutdown.cancelled() => Wake::Shutdown,
                changed = self.changes.changed() => match changed {
                    Ok(()) => Wake::Changed,
                    Err(_) => Wake::StoreGone,
                },
                () = refresh => Wake::Refresh,
            };
            match woke {
                Wake::Shutdown => {
                    self.done = true;
                    return Some((Err(Status::unavailable("server shutting down")), self));
                }
                Wake::StoreGone => return None,
                Wake::Changed | Wake::Refresh => {}
            }
        }
        self.started = true;
        let configs = self.changes.borrow_and_update().clone();
        match self.service.answer(&configs, &self.request) {
            Ok(config) => {
                self.refresh_at = config
                    .refresh_after(SystemTime::now())
                    .map(|delay| Instant::now() + delay);
                tracing::debug!(generation = configs.generation(), refresh_at = ?self.refresh_at, "pushing ICE config");
                Some((Ok(to_proto(config)), self))
            }
            Err(status) => {
                self.done = true;
                Some((Err(status), self))
            }
        }
    }
}

/// A server span named and attributed by the OpenTelemetry RPC conventions, continuing the
/// caller's trace from the request metadata.
fn server_span(method: &'static str, request: &Request<pb::GetIceConfigRequest>) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = format!("iceconfig.v1.IceConfigService/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = "iceconfig.v1.IceConfigService",
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        enduser.id = request.get_ref().user_id.as_str(),
    );
    svc_common::telemetry::continue_from(&span, request.metadata());
    span
}

/// Records the gRPC status code on the current span, as the RPC conventions name it.
fn record_status<T>(outcome: &Result<T, Status>) {
    let code = outcome
        .as_ref()
        .map_or_else(Status::code, |_| tonic::Code::Ok);
    tracing::Span::current().record("rpc.grpc.status_code", code as i32);
}

/// Parses a request into domain values; empty strings and zero mean "not given".
pub fn parse_request(
    request: pb::GetIceConfigRequest,
    issuing: &Issuing,
) -> Result<IceRequest, RequestError> {
    let policy = match pb::IceTransportPolicy::try_from(request.ice_transport_policy) {
        Ok(pb::IceTransportPolicy::Unspecified | pb::IceTransportPolicy::All) => {
            IceTransportPolicy::All
        }
        Ok(pb::IceTransportPolicy::Public) => IceTransportPolicy::Public,
        Ok(pb::IceTransportPolicy::Relay) => IceTransportPolicy::Relay,
        Err(_) => {
            return Err(RequestError::BadPolicy(
                request.ice_transport_policy.to_string(),
            ));
        }
    };
    let seconds = (request.ttl_seconds != 0).then_some(u64::from(request.ttl_seconds));
    Ok(IceRequest {
        user: UserId::parse(&request.user_id)?,
        ttl: Ttl::parse(seconds, issuing.ttl)?,
        policy,
        filter: Filter::new(
            Some(request.namespace),
            Some(request.gateway),
            Some(request.listener),
        ),
        public_addr: match request.public_addr.as_str() {
            "" => issuing.public_addr.clone(),
            addr => Some(PublicAddr::parse(addr)?),
        },
    })
}

fn to_proto(config: ice::IceConfig) -> pb::IceConfig {
    let policy = match config.policy {
        IceTransportPolicy::All => pb::IceTransportPolicy::All,
        IceTransportPolicy::Public => pb::IceTransportPolicy::Public,
        IceTransportPolicy::Relay => pb::IceTransportPolicy::Relay,
    };
    pb::IceConfig {
        ice_servers: config
            .ice_servers
            .into_iter()
            .map(|server| {
                let (username, credential) = server
                    .credentials
                    .map(|c| (c.username, c.credential))
                    .unwrap_or_default();
                pb::IceServer {
                    urls: server.urls,
                    username,
                    credential,
                }
            })
            .collect(),
        ice_transport_policy: policy.into(),
        expire_time: config.expires_at.map(prost_types::Timestamp::from),
        ttl_seconds: u32::try_from(config.ttl.as_duration().as_secs()).unwrap_or(u32::MAX),
    }
}
