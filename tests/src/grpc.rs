//! gRPC health and reflection, as probes and `grpcurl` see them.

use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A channel to `addr` (`127.0.0.1:port`), connected now.
pub async fn connect(addr: std::net::SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// The gRPC health of `service` ("" for the server as a whole).
pub async fn health(channel: &Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status())
}

/// The services one version of reflection lists (the v1 and v1alpha clients are different
/// generated types of the same shape).
macro_rules! list_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let reply = ServerReflectionClient::new($channel.clone())
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect(concat!("reflection ", stringify!($version)))
            .into_inner()
            .message()
            .await
            .expect("a reply");
        let Some(MessageResponse::ListServicesResponse(list)) =
            reply.and_then(|r| r.message_response)
        else {
            panic!(concat!(stringify!($version), ": expected a service list"));
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        names
    }};
}

/// The services reflection v1 and v1alpha list, each sorted.
pub async fn reflected_services(channel: &Channel) -> (Vec<String>, Vec<String>) {
    (
        list_services!(v1, channel),
        list_services!(v1alpha, channel),
    )
}
