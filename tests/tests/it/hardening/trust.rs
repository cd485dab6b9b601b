//! Who may call the services' gRPC ports (finding 5), and what a name may write to the logs
//! (finding 6).

use std::time::Duration;

use stunner_proto::{
    iceconfig::v1::{GetIceConfigRequest, ice_config_service_client::IceConfigServiceClient},
    signaling::v1::{
        GatewayMessage, Hello, Register, gateway_message::Body as Up,
        signaling_service_client::SignalingServiceClient,
    },
};
use testkit::{
    Stack,
    grpc::{connect, health},
    stack::{Flags, Launch, static_config},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use super::in_call;

const TOKEN: &str = "s3cret-shared-token";

fn hello() -> GatewayMessage {
    GatewayMessage {
        body: Some(Up::Hello(Hello {
            gateway_id: "0123456789abcdef".into(),
        })),
        ..Default::default()
    }
}

fn with_authorization<T>(message: T, authorization: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("a header value"));
    }
    request
}

/// Finding 5: signaling's gRPC port trusted anyone. With `GRPC_TOKEN` set, the gateway presents
/// the token and calls work; a caller without it (or with another) is refused on signaling and
/// ice-config alike; gRPC health stays open for probes; the REST API is unaffected.
#[tokio::test]
async fn grpc_ports_refuse_callers_without_the_shared_token() {
    let stack = Stack::start(
        &static_config(3478),
        Flags {
            env: &[("GRPC_TOKEN", TOKEN)],
            ..Default::default()
        },
    )
    .await;
    let (_alice, _bob) = in_call(&stack, "alice", "bob").await;

    let signaling = connect(stack.signaling.addr("grpc")).await;
    let ice_config = connect(stack.ice_config.addr("grpc")).await;
    for authorization in [None, Some("Bearer not-the-token"), Some(TOKEN)] {
        let (tx, rx) = mpsc::channel(4);
        tx.send(hello()).await.expect("queued");
        let attached = SignalingServiceClient::new(signaling.clone())
            .attach(with_authorization(ReceiverStream::new(rx), authorization))
            .await;
        assert_eq!(
            attached.err().map(|status| status.code()),
            Some(Code::Unauthenticated),
            "{authorization:?}"
        );
        let issued = IceConfigServiceClient::new(ice_config.clone())
            .get_ice_config(with_authorization(
                GetIceConfigRequest {
                    user_id: "mallory".into(),
                    ..Default::default()
                },
                authorization,
            ))
            .await;
        assert_eq!(
            issued.err().map(|status| status.code()),
            Some(Code::Unauthenticated),
            "{authorization:?}"
        );
    }
    assert_eq!(
        health(&signaling, "").await.ok(),
        Some(ServingStatus::Serving)
    );
    assert_eq!(
        health(&ice_config, "").await.ok(),
        Some(ServingStatus::Serving)
    );
    let (status, _) = stack
        .ice_config
        .get("http", "/ice?service=turn&username=mallory")
        .await
        .expect("an answer");
    assert_eq!(status, 200);
}

/// Applications calling ice-config directly get tokens of their own (CLIENT_TOKENS, from a
/// Secret), accepted on gRPC beside the gateways' shared token and then required on REST too.
#[tokio::test]
async fn applications_call_ice_config_with_their_own_tokens() {
    let stack = Stack::start(
        &static_config(3478),
        Flags {
            env: &[("GRPC_TOKEN", TOKEN)],
            ice_config: &["--client-tokens", "app-1,app-2"],
            ..Default::default()
        },
    )
    .await;
    // The gateways' token still works.
    let (_alice, _bob) = in_call(&stack, "alice", "bob").await;

    let ice_config = connect(stack.ice_config.addr("grpc")).await;
    for (authorization, code) in [
        (Some("Bearer app-1"), Code::Ok),
        (Some("Bearer app-2"), Code::Ok),
        (Some("Bearer app-3"), Code::Unauthenticated),
        (None, Code::Unauthenticated),
    ] {
        let issued = IceConfigServiceClient::new(ice_config.clone())
            .get_ice_config(with_authorization(
                GetIceConfigRequest {
                    user_id: "app-user".into(),
                    ..Default::default()
                },
                authorization,
            ))
            .await;
        assert_eq!(
            issued.err().map_or(Code::Ok, |status| status.code()),
            code,
            "{authorization:?}"
        );
    }
    let http = reqwest::Client::new();
    let url = stack
        .ice_config
        .url("http", "/ice?service=turn&username=app-user");
    for (authorization, status) in [
        (Some("Bearer app-2"), 200),
        (Some("Bearer wrong"), 401),
        (None, 401),
    ] {
        let mut request = http.get(&url);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status().as_u16(), status, "{authorization:?}");
        if status == 401 {
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some(r#"Bearer realm="ice-config""#)
            );
        }
    }
}

/// Finding 5: a fake gateway registered 20,001 names and never read its stream; signaling grew
/// by 381 MiB. Its stream's backlog is bounded in bytes: the stream is cut instead.
#[tokio::test]
async fn a_gateway_that_never_reads_cannot_grow_signaling() {
    let signaling = Launch::signaling().start().await;
    let before = signaling.rss_kib();
    let channel = connect(signaling.addr("grpc")).await;
    let (tx, rx) = mpsc::channel(1024);
    tx.send(hello()).await.expect("queued");
    let inbound = SignalingServiceClient::new(channel)
        .attach(ReceiverStream::new(rx))
        .await
        .expect("attached")
        .into_inner();
    let mut sent = 0;
    for n in 0..20_001u64 {
        let register = GatewayMessage {
            session_id: n + 1,
            seq: n + 1,
            body: Some(Up::Register(Register {
                name: format!("fake-{n:0>58}"),
                ..Default::default()
            })),
            ..Default::default()
        };
        match tokio::time::timeout(Duration::from_secs(5), tx.send(register)).await {
            Ok(Ok(())) => sent += 1,
            // Signaling stopped reading (backpressure) or cut the stream: either bounds it.
            _ => break,
        }
    }
    let after = signaling.rss_kib();
    println!("signaling RSS {before} KiB -> {after} KiB after {sent} registrations never read");
    assert!(
        after.saturating_sub(before) < 96 * 1024,
        "signaling grew by {} KiB",
        after - before
    );
    drop(inbound);
}

/// Finding 6: a name with a newline and escape codes forged log lines at debug level, because
/// it was recorded before it was validated. No service writes a line a name began, nor a
/// terminal escape.
#[tokio::test]
async fn names_cannot_write_log_lines() {
    let stack = Stack::start(
        &static_config(3478),
        Flags {
            env: &[("RUST_LOG", "debug")],
            ..Default::default()
        },
    )
    .await;
    let forged = "evil\n2026-01-01T00:00:00.000000Z  INFO forged: operator logged in\u{1b}[2J";
    let mut browser = stack.browser().await;
    assert_eq!(browser.register(forged).await["reason"], "invalid_name");
    browser.register_ok("honest").await;
    browser
        .send(serde_json::json!({"id": "call", "to": forged, "sdpOffer": "o"}))
        .await;
    assert_eq!(browser.expect("callResponse").await["response"], "rejected");
    for service in [&stack.gateway, &stack.signaling, &stack.ice_config] {
        for line in service.logs().lines() {
            assert!(
                !line.starts_with("2026-01-01") && !line.contains('\u{1b}'),
                "a forged line: {line:?}"
            );
        }
    }
}
