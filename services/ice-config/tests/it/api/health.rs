//! Health, readiness, metrics and reflection, against the real binary.

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::helpers::{EPHEMERAL, RELOAD, STATIC, TestApp, metric};

const SERVICE: &str = "iceconfig.v1.IceConfigService";

#[tokio::test]
async fn ready_once_the_config_loads() {
    let app = TestApp::start(None).await;
    assert_eq!(app.get("/healthz").await, (200, "ok\n".into()));
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("not ready") && body.contains("file not found"),
        "{body}"
    );
    wait_for_health(&app, SERVICE, ServingStatus::NotServing).await;
    // Alive all the same: the overall status is for liveness.
    wait_for_health(&app, "", ServingStatus::Serving).await;

    app.write_config(STATIC);
    testkit::eventually(RELOAD, "readiness", || async {
        (app.get("/readyz").await == (200, "ready\n".into())).then_some(())
    })
    .await;
    wait_for_health(&app, SERVICE, ServingStatus::Serving).await;
}

#[tokio::test]
async fn metrics_count_what_happens() {
    // Two Gateways: each configuration carries two ICE servers.
    let app = TestApp::start(Some(EPHEMERAL)).await;
    app.wait_for_metric("iceconfig_configs_loaded", 2.0).await;
    app.wait_for_metric("iceconfig_config_reloads_total{outcome=\"success\"}", 1.0)
        .await;

    app.get_json("/ice?service=turn").await;
    app.get_json("/ice?service=turn").await;
    let _ = app.get("/ice?service=turn&ttl=abc").await;
    let _ = app
        .grpc()
        .await
        .get_ice_config(stunner_proto::iceconfig::v1::GetIceConfigRequest::default())
        .await
        .expect("answer");

    let (status, body) = app.get("/metrics").await;
    assert_eq!(status, 200);
    let value = |sample: &str| metric(&body, sample);
    for (sample, expected) in [
        ("iceconfig_ice_configs_issued_total{api=\"rest\"}", 2.0),
        ("iceconfig_ice_configs_issued_total{api=\"grpc\"}", 1.0),
        (
            "iceconfig_ice_servers_issued_total{api=\"rest\",auth=\"ephemeral\"}",
            4.0,
        ),
        (
            "iceconfig_ice_servers_issued_total{api=\"grpc\",auth=\"ephemeral\"}",
            2.0,
        ),
    ] {
        assert_eq!(value(sample), Some(expected), "{sample}: {body}");
    }
    assert_eq!(
        value("iceconfig_rejected_requests_total{api=\"rest\",reason=\"invalid_argument\"}"),
        Some(1.0),
        "{body}"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    assert_eq!(body.matches("# EOF").count(), 1, "one exposition");

    // What every service has: its build, its process, how long its servers take.
    let version = env!("CARGO_PKG_VERSION");
    for (sample, expected) in [
        (format!("iceconfig_build_info{{version=\"{version}\"}}"), 1.0),
        (
            "rpc_server_duration_seconds_count{rpc_service=\"iceconfig.v1.IceConfigService\",rpc_method=\"GetIceConfig\",rpc_grpc_status_code=\"0\"}".into(),
            1.0,
        ),
        (
            "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/ice\",http_response_status_code=\"200\"}".into(),
            2.0,
        ),
        (
            "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/ice\",http_response_status_code=\"400\"}".into(),
            1.0,
        ),
    ] {
        assert_eq!(value(&sample), Some(expected), "{sample}: {body}");
    }
    // CPU time is counted in hundredths of a second: a fresh process may not have one yet.
    assert!(value("process_cpu_seconds_total").is_some_and(|v| v >= 0.0));
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(value(name).is_some_and(|v| v > 0.0), "{name}: {body}");
    }
    let source_up = body
        .lines()
        .find(|l| l.starts_with("iceconfig_config_source_up{source=\"file"))
        .unwrap_or_else(|| panic!("the file source's state: {body}"));
    assert!(source_up.ends_with(" 1"), "{source_up}");
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_and_describe_the_service() {
    let app = TestApp::start(Some(STATIC)).await;
    let channel = app.channel().await;

    {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel.clone());
        let ask = |request: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut replies = client
            .server_reflection_info(tokio_stream::iter([
                ask(MessageRequest::ListServices(String::new())),
                ask(MessageRequest::FileContainingSymbol(SERVICE.into())),
            ]))
            .await
            .expect("reflection v1")
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) = replies
            .message()
            .await
            .expect("reply")
            .and_then(|r| r.message_response)
        else {
            panic!("v1: expected a service list");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for expected in [SERVICE, "grpc.health.v1.Health"] {
            assert!(names.contains(&expected), "v1 lists {names:?}");
        }
        let Some(MessageResponse::FileDescriptorResponse(files)) = replies
            .message()
            .await
            .expect("reply")
            .and_then(|r| r.message_response)
        else {
            panic!("v1: expected a file descriptor");
        };
        assert!(contains(
            &files.file_descriptor_proto,
            "iceconfig/v1/iceconfig.proto"
        ));
    }

    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) = replies
            .message()
            .await
            .expect("reply")
            .and_then(|r| r.message_response)
        else {
            panic!("v1alpha: expected a service list");
        };
        assert!(
            list.service.iter().any(|s| s.name == SERVICE),
            "v1alpha lists {:?}",
            list.service
        );
    }
}

async fn wait_for_health(app: &TestApp, service: &str, expected: ServingStatus) {
    let client = HealthClient::new(app.channel().await);
    testkit::eventually(
        RELOAD,
        &format!("gRPC health of {service:?} to be {expected:?}"),
        || {
            let mut client = client.clone();
            async move {
                let response = client
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await;
                response
                    .is_ok_and(|r| r.into_inner().status() == expected)
                    .then_some(())
            }
        },
    )
    .await;
}

fn contains(files: &[Vec<u8>], needle: &str) -> bool {
    files
        .iter()
        .any(|file| file.windows(needle.len()).any(|w| w == needle.as_bytes()))
}
