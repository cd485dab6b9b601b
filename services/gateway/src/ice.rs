//! ICE configurations for browsers, from ice-config.

use std::{sync::Arc, time::Duration};

use stunner_proto::iceconfig::v1::{
    GetIceConfigRequest, IceTransportPolicy, ice_config_service_client::IceConfigServiceClient,
};
use svc_common::auth::Bearer;
use tokio::sync::Semaphore;
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

use crate::protocol::{IceConfiguration, IceServer};

/// How long a browser's registration may wait for its ICE configuration, once its request is
/// under way.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests to ice-config under way at once: a registration storm queues here (each waits its
/// turn) instead of piling thousands of streams on ice-config's connections, which HTTP/2
/// servers answer by telling the client to calm down.
const CONCURRENCY: usize = 128;

#[derive(Clone)]
pub struct IceClient {
    client: IceConfigServiceClient<InterceptedService<Channel, Bearer>>,
    policy: IceTransportPolicy,
    gateways: GatewayFilter,
    turns: Arc<Semaphore>,
}

/// Which STUNner Gateways browsers get, as the tutorial's server selects them
/// (`STUNNER_NAMESPACE`, `STUNNER_GATEWAY`, `STUNNER_LISTENER`); unset parts match every one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayFilter {
    namespace: String,
    gateway: String,
    listener: String,
}

/// A gateway or listener named without what it belongs to: ice-config would ignore it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct FilterError(&'static str);

/// A configuration and when to replace it.
pub struct Issued {
    pub config: IceConfiguration,
    /// `None` when the credentials do not expire.
    pub refresh_in: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum IceError {
    #[error("{0}")]
    InvalidUser(String),
    #[error("TURN credentials are unavailable: {0}")]
    Unavailable(String),
}

impl IceClient {
    pub fn new(
        channel: Channel,
        relay_only: bool,
        gateways: GatewayFilter,
        bearer: Bearer,
    ) -> Self {
        let policy = if relay_only {
            IceTransportPolicy::Relay
        } else {
            IceTransportPolicy::All
        };
        Self {
            client: IceConfigServiceClient::with_interceptor(channel, bearer),
            policy,
            gateways,
            turns: Arc::new(Semaphore::new(CONCURRENCY)),
        }
    }

    /// Credentials for `user`, under a client span whose W3C context travels in the metadata.
    #[tracing::instrument(
        name = "iceconfig.v1.IceConfigService/GetIceConfig",
        skip_all,
        fields(
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "iceconfig.v1.IceConfigService",
            rpc.method = "GetIceConfig",
            rpc.grpc.status_code = tracing::field::Empty,
        )
    )]
    pub async fn issue(&self, user: &str) -> Result<Issued, IceError> {
        let mut request = tonic::Request::new(GetIceConfigRequest {
            user_id: user.to_owned(),
            ice_transport_policy: self.policy.into(),
            namespace: self.gateways.namespace.clone(),
            gateway: self.gateways.gateway.clone(),
            listener: self.gateways.listener.clone(),
            ..Default::default()
        });
        svc_common::telemetry::inject_current(request.metadata_mut());
        let _turn = self
            .turns
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"));
        // Bounded here as a whole: a balanced channel with no address yet (ice-config's name
        // does not resolve) would otherwise hold the request forever.
        let answer =
            tokio::time::timeout(REQUEST_TIMEOUT, self.client.clone().get_ice_config(request))
                .await
                .unwrap_or_else(|_| {
                    Err(tonic::Status::deadline_exceeded(format!(
                        "ice-config did not answer within {REQUEST_TIMEOUT:?}"
                    )))
                });
        let code = answer
            .as_ref()
            .map_or_else(tonic::Status::code, |_| Code::Ok);
        tracing::Span::current().record("rpc.grpc.status_code", code as i32);
        let answer = answer.map_err(|status| match status.code() {
            Code::InvalidArgument => IceError::InvalidUser(status.message().to_owned()),
            _ => IceError::Unavailable(status.message().to_owned()),
        })?;
        let answer = answer.into_inner();
        // Renew at four fifths of the lifetime, well before the TURN server refuses them.
        let refresh_in = answer
            .expire_time
            .is_some()
            .then(|| Duration::from_secs(u64::from(answer.ttl_seconds)) * 4 / 5);
        let ice_transport_policy = match answer.ice_transport_policy() {
            IceTransportPolicy::Relay => "relay",
            IceTransportPolicy::Public => "public",
            IceTransportPolicy::All | IceTransportPolicy::Unspecified => "all",
        };
        Ok(Issued {
            config: IceConfiguration {
                ice_servers: answer
                    .ice_servers
                    .into_iter()
                    .map(|s| IceServer {
                        urls: s.urls,
                        username: s.username,
                        credential: s.credential,
                    })
                    .collect(),
                ice_transport_policy,
            },
            refresh_in,
        })
    }
}

impl GatewayFilter {
    /// A filter from optional parts (empty means unset). As stunner-auth-service reads them, a
    /// gateway only counts within a namespace and a listener only within a gateway: naming one
    /// without the other is refused rather than silently ignored.
    pub fn new(
        namespace: Option<String>,
        gateway: Option<String>,
        listener: Option<String>,
    ) -> Result<Self, FilterError> {
        let part = |s: Option<String>| s.map(|s| s.trim().to_owned()).unwrap_or_default();
        let (namespace, gateway, listener) = (part(namespace), part(gateway), part(listener));
        if !gateway.is_empty() && namespace.is_empty() {
            return Err(FilterError(
                "STUNNER_GATEWAY needs STUNNER_NAMESPACE: a Gateway is named within its namespace",
            ));
        }
        if !listener.is_empty() && gateway.is_empty() {
            return Err(FilterError(
                "STUNNER_LISTENER needs STUNNER_GATEWAY: a listener is named within its Gateway",
            ));
        }
        Ok(Self {
            namespace,
            gateway,
            listener,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_names_each_part_within_the_one_above() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            GatewayFilter::new(None, None, None),
            Ok(GatewayFilter::default())
        );
        let full = GatewayFilter::new(some("stunner"), some("udp-gateway"), some("udp"))
            .expect("complete");
        assert_eq!(
            (
                full.namespace.as_str(),
                full.gateway.as_str(),
                full.listener.as_str()
            ),
            ("stunner", "udp-gateway", "udp")
        );
        assert!(GatewayFilter::new(some(" "), some("gw"), None).is_err());
        assert!(GatewayFilter::new(some("ns"), None, some("l")).is_err());
    }
}
