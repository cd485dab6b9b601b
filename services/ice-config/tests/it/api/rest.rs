//! The REST API of stunner-auth-service, against the real binary.

use ice_config::credentials::ephemeral_credential;
use serde_json::{Value, json};

use super::helpers::{EPHEMERAL, STATIC, TestApp};

#[tokio::test]
async fn ice_config_shape_static() {
    let app = TestApp::start(Some(STATIC)).await;
    let body = app
        .get_json("/ice?service=turn&username=alice&iceTransportPolicy=relay")
        .await;
    assert_eq!(
        body,
        json!({
            "iceServers": [{
                "urls": ["turn:192.0.2.10:3478?transport=udp", "turn:192.0.2.11:3478?transport=tcp"],
                "username": "user-1",
                "credential": "pass-1"
            }],
            "iceTransportPolicy": "relay"
        })
    );
}

#[tokio::test]
async fn ice_config_shape_ephemeral_and_filters() {
    let app = TestApp::start(Some(EPHEMERAL)).await;
    let body = app.get_json("/ice?service=turn&username=bob&ttl=120").await;
    assert_eq!(body["iceTransportPolicy"], "all", "the default policy");
    let servers = body["iceServers"].as_array().expect("iceServers");
    assert_eq!(servers.len(), 2, "one per Gateway: {body}");
    for server in servers {
        let username = server["username"].as_str().expect("username");
        assert!(username.ends_with(":bob"), "{username}");
        assert_eq!(
            server["credential"],
            ephemeral_credential("my-shared-secret", username)
        );
        assert!(server.get("url").is_none(), "the W3C key is urls");
    }

    let urls = |body: Value| -> Vec<String> {
        body["iceServers"]
            .as_array()
            .expect("iceServers")
            .iter()
            .flat_map(|s| s["urls"].as_array().cloned().unwrap_or_default())
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect()
    };
    let cases = [
        (
            "namespace=stunner",
            vec![
                "turn:198.51.100.1:3478?transport=udp",
                "turn:198.51.100.2:443?transport=tcp",
            ],
        ),
        (
            "namespace=stunner&gateway=udp-gateway",
            vec!["turn:198.51.100.1:3478?transport=udp"],
        ),
        (
            "namespace=stunner&gateway=tcp-gateway&listener=tcp-listener",
            vec!["turn:198.51.100.2:443?transport=tcp"],
        ),
        // `gateway` without `namespace` is ignored, as in stunner-auth-service.
        (
            "gateway=udp-gateway",
            vec![
                "turn:198.51.100.1:3478?transport=udp",
                "turn:198.51.100.2:443?transport=tcp",
            ],
        ),
    ];
    for (query, expected) in cases {
        let body = app.get_json(&format!("/ice?service=turn&{query}")).await;
        assert_eq!(urls(body), expected, "{query}");
    }
}

#[tokio::test]
async fn turn_rest_api_shape() {
    let app = TestApp::start(Some(EPHEMERAL)).await;
    let body = app.get_json("/?service=turn&username=carol&ttl=300").await;
    let username = body["username"].as_str().expect("username");
    assert!(username.ends_with(":carol"), "{body}");
    assert_eq!(
        body["password"],
        ephemeral_credential("my-shared-secret", username)
    );
    assert_eq!(body["ttl"], 300);
    assert_eq!(
        body["uris"],
        json!(["turn:198.51.100.1:3478?transport=udp"]),
        "the first Gateway"
    );

    let app = TestApp::start(Some(STATIC)).await;
    let body = app.get_json("/?service=turn").await;
    assert_eq!(body["username"], "user-1");
    assert_eq!(body["password"], "pass-1");
    assert_eq!(body["ttl"], 86_400, "the default TTL");
}

#[tokio::test]
async fn errors_are_plain_text_with_compatible_statuses() {
    let app = TestApp::start(Some(EPHEMERAL)).await;
    let cases = [
        ("/ice", 400, r#""service" must be "turn""#),
        ("/ice?service=stun", 400, r#""service" must be "turn""#),
        ("/?username=a", 400, r#""service" must be "turn""#),
        ("/ice?service=turn&ttl=abc", 400, "ttl"),
        ("/ice?service=turn&ttl=0", 400, "between 1 and"),
        ("/ice?service=turn&ttl=99999999", 400, "between 1 and"),
        ("/ice?service=turn&username=a:b", 400, "username"),
        (
            "/ice?service=turn&iceTransportPolicy=none",
            400,
            "iceTransportPolicy",
        ),
        ("/ice?service=turn&namespace=nope", 404, "no valid listener"),
        (
            "/?service=turn&namespace=stunner&gateway=nope",
            404,
            "no valid listener",
        ),
    ];
    for (path, status, message) in cases {
        let (got, body) = app.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(message), "{path}: {body:?}");
    }

    let unconfigured = TestApp::start(None).await;
    for path in ["/ice?service=turn", "/?service=turn"] {
        let (status, body) = unconfigured.get(path).await;
        assert_eq!(status, 500, "{path}");
        assert_eq!(body.trim(), "no STUNner configuration available");
    }
}

/// HEAD on an endpoint that issues credentials is refused and issues nothing (axum would run
/// the GET handler for it and throw the body away).
#[tokio::test]
async fn head_issues_nothing() {
    let app = TestApp::start(Some(EPHEMERAL)).await;
    let client = reqwest::Client::new();
    for path in [
        "/ice?service=turn&username=bob",
        "/?service=turn&username=bob",
    ] {
        let response = client
            .head(app.service.url("http", path))
            .send()
            .await
            .expect("HEAD");
        assert_eq!(response.status().as_u16(), 405, "{path}");
        assert_eq!(
            response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok()),
            Some("GET")
        );
    }
    let metrics = app.get("/metrics").await.1;
    assert!(
        !metrics.contains("iceconfig_ice_configs_issued_total{"),
        "{metrics}"
    );
}
