//! `iceconfig.v1.IceConfigService` against the real binary.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ice_config::credentials::ephemeral_credential;
use stunner_proto::iceconfig::v1::{GetIceConfigRequest, IceConfig, IceServer, IceTransportPolicy};
use tonic::Code;

use super::helpers::{EPHEMERAL, STATIC, TestApp, all_urls};

fn request(user: &str) -> GetIceConfigRequest {
    GetIceConfigRequest {
        user_id: user.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn static_credentials_from_the_tutorial_config() {
    let app = TestApp::start(Some(STATIC)).await;
    let config = app
        .grpc()
        .await
        .get_ice_config(GetIceConfigRequest {
            ice_transport_policy: IceTransportPolicy::Relay.into(),
            ..request("alice")
        })
        .await
        .expect("answer")
        .into_inner();
    assert_eq!(
        config,
        IceConfig {
            ice_servers: vec![IceServer {
                urls: vec![
                    "turn:192.0.2.10:3478?transport=udp".into(),
                    "turn:192.0.2.11:3478?transport=tcp".into()
                ],
                username: "user-1".into(),
                credential: "pass-1".into(),
            }],
            ice_transport_policy: IceTransportPolicy::Relay.into(),
            expire_time: None,
            ttl_seconds: 86_400,
        }
    );
}

#[tokio::test]
async fn ephemeral_credentials_per_gateway() {
    let app = TestApp::start(Some(EPHEMERAL)).await;
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let config = app
        .grpc()
        .await
        .get_ice_config(GetIceConfigRequest {
            ttl_seconds: 600,
            ..request("bob")
        })
        .await
        .expect("answer")
        .into_inner();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();

    assert_eq!(
        config.ice_transport_policy,
        i32::from(IceTransportPolicy::All),
        "default policy"
    );
    assert_eq!(config.ttl_seconds, 600);
    assert_eq!(
        all_urls(&config),
        [
            "turn:198.51.100.1:3478?transport=udp",
            "turn:198.51.100.2:443?transport=tcp"
        ]
    );
    for server in &config.ice_servers {
        let (expiry, user) = server.username.split_once(':').expect("<expiry>:<user>");
        let expiry: u64 = expiry.parse().expect("numeric expiry");
        assert!(
            (before + 600..=after + 600).contains(&expiry),
            "expiry {expiry}"
        );
        assert_eq!(user, "bob");
        assert_eq!(
            server.credential,
            ephemeral_credential("my-shared-secret", &server.username)
        );
    }
    let expire_time = config.expire_time.expect("ephemeral credentials expire");
    assert_eq!(
        u64::try_from(expire_time.seconds).expect("positive"),
        config.ice_servers[0]
            .username
            .split(':')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .expect("expiry")
    );

    // Filters: namespace + gateway + listener.
    let only_tcp = app
        .grpc()
        .await
        .get_ice_config(GetIceConfigRequest {
            namespace: "stunner".into(),
            gateway: "tcp-gateway".into(),
            listener: "tcp-listener".into(),
            ..request("bob")
        })
        .await
        .expect("answer")
        .into_inner();
    assert_eq!(all_urls(&only_tcp), ["turn:198.51.100.2:443?transport=tcp"]);
}

#[tokio::test]
async fn errors_have_deliberate_codes() {
    let app = TestApp::start_with(
        Some(EPHEMERAL),
        &["--max-ttl", "1h", "--default-ttl", "10m"],
    )
    .await;
    let mut client = app.grpc().await;
    let cases = [
        // Messages name the proto's fields.
        (
            request("a:b"),
            Code::InvalidArgument,
            "user_id: must not contain ':'",
        ),
        (
            request(&"x".repeat(300)),
            Code::InvalidArgument,
            "user_id: longer than 256",
        ),
        (
            GetIceConfigRequest {
                ttl_seconds: 3601,
                ..request("a")
            },
            Code::InvalidArgument,
            "ttl_seconds: must be between 1 and 3600",
        ),
        (
            GetIceConfigRequest {
                public_addr: "not a host".into(),
                ..request("a")
            },
            Code::InvalidArgument,
            "public_addr: \"not a host\" is neither",
        ),
        (
            GetIceConfigRequest {
                ice_transport_policy: 9,
                ..request("a")
            },
            Code::InvalidArgument,
            "ice_transport_policy: \"9\" is not one of",
        ),
        (
            GetIceConfigRequest {
                namespace: "elsewhere".into(),
                ..request("a")
            },
            Code::NotFound,
            "no valid listener",
        ),
    ];
    for (request, code, message) in cases {
        let status = client
            .get_ice_config(request.clone())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        assert!(
            status.message().contains(message),
            "{request:?}: {status:?}"
        );
    }

    let unconfigured = TestApp::start(None).await;
    let status = unconfigured
        .grpc()
        .await
        .get_ice_config(request("a"))
        .await
        .expect_err("no config yet");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("no STUNner configuration"),
        "{status:?}"
    );
}

#[tokio::test]
async fn watch_pushes_on_config_change() {
    let app = TestApp::start(Some(STATIC)).await;
    let mut stream = app
        .grpc()
        .await
        .watch_ice_config(request("carol"))
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut stream).await.expect("first config");
    assert_eq!(first.ice_servers[0].username, "user-1");

    app.write_config(&STATIC.replace("pass-1", "pass-2"));
    let second = next(&mut stream).await.expect("pushed after the change");
    assert_eq!(second.ice_servers[0].credential, "pass-2");
    assert_eq!(second.expire_time, None, "static credentials do not expire");

    // A config that no longer has a matching listener ends the stream with NOT_FOUND.
    app.write_config(
        &STATIC
            .replace("192.0.2.10", "$STUNNER_ADDR")
            .replace("192.0.2.11", ""),
    );
    let status = next(&mut stream).await.expect_err("stream ends");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("stream closes")
            .ok(),
        Some(None)
    );
}

#[tokio::test]
async fn watch_pushes_before_credentials_expire() {
    let app = TestApp::start(Some(EPHEMERAL)).await;
    let mut stream = app
        .grpc()
        .await
        .watch_ice_config(GetIceConfigRequest {
            ttl_seconds: 3,
            ..request("dave")
        })
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut stream).await.expect("first config");
    let expires = first.expire_time.expect("expires").seconds;

    let second = next(&mut stream).await.expect("a refresh");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let now = i64::try_from(now).expect("fits");
    assert!(
        now < expires,
        "the refresh came at {now}, after the expiry {expires}"
    );
    let renewed = second.expire_time.expect("expires").seconds;
    assert!(
        renewed > expires,
        "fresh credentials: {renewed} > {expires}"
    );
    assert_ne!(
        second.ice_servers[0].username,
        first.ice_servers[0].username
    );
}

#[tokio::test]
async fn watch_refuses_bad_requests_up_front() {
    let app = TestApp::start(Some(STATIC)).await;
    let status = app
        .grpc()
        .await
        .watch_ice_config(request("a\u{7}"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
}

/// The next message of a watch stream, within a bound.
async fn next(stream: &mut tonic::Streaming<IceConfig>) -> Result<IceConfig, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message within 10s")
        .map(|m| m.expect("the stream is open"))
}
