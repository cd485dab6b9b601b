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

    let urls = |body: Value| testkit::ice_urls(&body);
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

/// Refusals: stunner-auth-service's statuses and texts (a client may match on them), checked
/// in its order (the parameters' format, a config at all, `service`, then our own checks).
#[tokio::test]
async fn errors_are_plain_text_with_compatible_statuses() {
    let app = TestApp::start(Some(EPHEMERAL)).await;
    let not_turn =
        |api| format!(r#"could not generate {api} auth token: "\"service\" must be \"turn\"""#);
    let cases = [
        ("/ice", 400, not_turn("ICE")),
        ("/ice?service=stun", 400, not_turn("ICE")),
        ("/?service=stun", 400, not_turn("TURN")),
        (
            "/?username=a",
            400,
            "Query argument service is required, but not found".into(),
        ),
        (
            "/ice?service=turn&ttl=abc",
            400,
            r#"Invalid format for parameter ttl: "abc" is not a whole number of seconds"#.into(),
        ),
        (
            "/ice?service=turn&namespace=nope",
            404,
            "could not generate ICE config: no valid listener found".into(),
        ),
        (
            "/?service=turn&namespace=stunner&gateway=nope",
            404,
            "could not generate TURN auth token: no valid listener found".into(),
        ),
        // Ours, beyond stunner-auth-service: what would corrupt a credential or a URI.
        (
            "/ice?service=turn&username=a%07b",
            400,
            "username: must not contain ':' or control characters".into(),
        ),
        (
            "/ice?service=turn&public-addr=a%20b",
            400,
            r#"public-addr: "a b" is neither an IP address nor a host name"#.into(),
        ),
    ];
    for (path, status, message) in cases {
        let (got, body) = app.get(path).await;
        assert_eq!(
            (got, body.as_str()),
            (status, format!("{message}\n").as_str()),
            "{path}"
        );
    }

    let unconfigured = TestApp::start(None).await;
    for path in ["/ice?service=turn", "/?service=turn", "/ice"] {
        let (status, body) = unconfigured.get(path).await;
        assert_eq!(status, 500, "{path}");
        assert_eq!(body, "no STUNner configuration available\n");
    }
    // The parameters' format comes first, as there.
    let (status, body) = unconfigured.get("/ice?service=turn&ttl=x").await;
    assert_eq!(status, 400, "{body}");
}

/// What stunner-auth-service answers and the gRPC API refuses is answered here too, brought to
/// something a browser and a TURN server can use, and counted.
#[tokio::test]
async fn lenient_where_stunner_auth_service_is() {
    let app = TestApp::start(Some(EPHEMERAL)).await;
    // A user id with colons: the expiry comes first, so the TURN server still finds it.
    let body = app
        .get_json("/ice?service=turn&username=urn:user:7&namespace=stunner&gateway=udp-gateway")
        .await;
    let username = body["iceServers"][0]["username"]
        .as_str()
        .expect("username");
    let (expiry, user) = username.split_once(':').expect("<expiry>:<user>");
    assert!(expiry.parse::<u64>().is_ok(), "{username}");
    assert_eq!(user, "urn:user:7");
    assert_eq!(
        body["iceServers"][0]["credential"],
        ephemeral_credential("my-shared-secret", username)
    );
    // TTLs out of range are brought within them.
    for (ttl, expected) in [("0", 1), ("-5", 1), ("99999999", 604_800), ("60", 60)] {
        let body = app.get_json(&format!("/?service=turn&ttl={ttl}")).await;
        assert_eq!(body["ttl"], expected, "ttl={ttl}");
    }
    // Policies: any case of a known one; an unknown one is answered as `all`.
    for (policy, expected) in [("RELAY", "relay"), ("none", "all"), ("", "all")] {
        let body = app
            .get_json(&format!("/ice?service=turn&iceTransportPolicy={policy}"))
            .await;
        assert_eq!(body["iceTransportPolicy"], expected, "{policy:?}");
    }
    for (what, count) in [
        ("username_colon", 1.0),
        ("ttl_clamped", 3.0),
        ("unknown_policy", 2.0),
    ] {
        app.wait_for_metric(
            &format!("iceconfig_lenient_requests_total{{what=\"{what}\"}}"),
            count,
        )
        .await;
    }
}

/// `public-addr` (per request) before `STUNNER_PUBLIC_ADDR` (the service's) before the listeners'
/// own addresses; only the host changes, the public port stays.
#[tokio::test]
async fn public_addresses_in_stunner_auth_services_order() {
    let hosts = |body: serde_json::Value| testkit::ice_urls(&body);
    let plain = TestApp::start(Some(EPHEMERAL)).await;
    assert_eq!(
        hosts(plain.get_json("/ice?service=turn").await),
        [
            "turn:198.51.100.1:3478?transport=udp",
            "turn:198.51.100.2:443?transport=tcp"
        ]
    );
    assert_eq!(
        hosts(
            plain
                .get_json("/ice?service=turn&public-addr=203.0.113.1")
                .await
        ),
        [
            "turn:203.0.113.1:3478?transport=udp",
            "turn:203.0.113.1:443?transport=tcp"
        ]
    );
    let env = TestApp::start_env(
        Some(EPHEMERAL),
        &[("STUNNER_PUBLIC_ADDR", "turn.example.com")],
    )
    .await;
    assert_eq!(
        hosts(env.get_json("/ice?service=turn").await),
        [
            "turn:turn.example.com:3478?transport=udp",
            "turn:turn.example.com:443?transport=tcp"
        ]
    );
    assert_eq!(
        hosts(
            env.get_json("/ice?service=turn&public-addr=203.0.113.1")
                .await
        ),
        [
            "turn:203.0.113.1:3478?transport=udp",
            "turn:203.0.113.1:443?transport=tcp"
        ],
        "the request's public-addr comes first"
    );
    let body = env.get_json("/?service=turn&public-addr=2001:db8::1").await;
    assert_eq!(
        body["uris"],
        json!(["turn:[2001:db8::1]:3478?transport=udp"])
    );
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
