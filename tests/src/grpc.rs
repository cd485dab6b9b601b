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

/// The services reflection v1 and v1alpha list, each sorted.
pub async fn reflected_services(channel: &Channel) -> (Vec<String>, Vec<String>) {
    let v1 = {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let reply = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("reflection v1")
            .into_inner()
            .message()
            .await
            .expect("a reply");
        let Some(MessageResponse::ListServicesResponse(list)) =
            reply.and_then(|r| r.message_response)
        else {
            panic!("v1: expected a service list");
        };
        list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
    };
    let v1alpha = {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let reply = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("reflection v1alpha")
            .into_inner()
            .message()
            .await
            .expect("a reply");
        let Some(MessageResponse::ListServicesResponse(list)) =
            reply.and_then(|r| r.message_response)
        else {
            panic!("v1alpha: expected a service list");
        };
        list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
    };
    let sorted = |mut names: Vec<String>| {
        names.sort();
        names
    };
    (sorted(v1), sorted(v1alpha))
}
