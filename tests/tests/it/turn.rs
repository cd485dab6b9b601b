//! Credentials issued by the running ice-config service allocate relays on a real TURN server
//! (coturn, the same TURN REST API check as STUNner), and bad ones are refused.
//!
//! Each test starts its own coturn on a free loopback port and its own ice-config on port 0,
//! with a STUNner config pointing at that coturn.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ice_config::credentials::{ephemeral_credential, ephemeral_username};
use serde_json::Value;
use testkit::{Coturn, Service, coturn::TurnAuth};

async fn ice_config(stunner_config: &str) -> (Service, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stunnerd.conf");
    std::fs::write(&path, stunner_config).expect("write config");
    let path = path.to_str().expect("utf-8").to_owned();
    let service = Service::start(
        &testkit::binary("ice-config"),
        &["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
        &[("STUNNER_CONFIG_FILENAME", path.as_str())],
    )
    .await;
    (service, dir)
}

fn stunner_config(port: u16, auth: &str) -> String {
    format!(
        r#"{{"version":"v1","admin":{{"name":"stunner/udp-gateway"}},"auth":{auth},
        "listeners":[{{"name":"stunner/udp-gateway/udp-listener","protocol":"TURN-UDP",
        "public_address":"127.0.0.1","public_port":{port},"address":"$STUNNER_ADDR","port":3478}}]}}"#
    )
}

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.expect("HTTP request");
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn ephemeral_credentials_allocate_on_coturn() {
    let secret = "turn-rest-secret";
    let turn = Coturn::start(TurnAuth::Secret(secret)).await;
    let (service, _dir) = ice_config(&stunner_config(
        turn.port(),
        &format!(r#"{{"type":"ephemeral","credentials":{{"secret":"{secret}"}}}}"#),
    ))
    .await;

    // Over REST, as a browser app would fetch them.
    let body = get_json(&service.url(
        "http",
        "/ice?service=turn&username=alice&ttl=600&iceTransportPolicy=relay",
    ))
    .await;
    let server = &body["iceServers"][0];
    assert_eq!(
        server["urls"][0],
        format!("turn:127.0.0.1:{}?transport=udp", turn.port())
    );
    let (username, credential) = (
        server["username"].as_str().expect("username"),
        server["credential"].as_str().expect("credential"),
    );
    let allocation = turn.allocate(username, credential).await;
    assert!(
        allocation.relayed,
        "REST credentials refused:\n{}",
        allocation.output
    );

    // Over gRPC too.
    let mut client =
        stunner_proto::iceconfig::v1::ice_config_service_client::IceConfigServiceClient::connect(
            service.url("grpc", ""),
        )
        .await
        .expect("connect");
    let config = client
        .get_ice_config(stunner_proto::iceconfig::v1::GetIceConfigRequest {
            user_id: "bob".into(),
            ttl_seconds: 60,
            ..Default::default()
        })
        .await
        .expect("answer")
        .into_inner();
    let server = &config.ice_servers[0];
    let allocation = turn.allocate(&server.username, &server.credential).await;
    assert!(
        allocation.relayed,
        "gRPC credentials refused:\n{}",
        allocation.output
    );

    // A tampered credential is refused.
    let allocation = turn
        .allocate(&server.username, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .await;
    assert!(
        !allocation.relayed,
        "a wrong credential was accepted:\n{}",
        allocation.output
    );

    // So is a username with its expiry pushed out but the old credential.
    let (_, user) = server.username.split_once(':').expect("<expiry>:<user>");
    let stretched = format!("{}:{user}", now() + 86_400);
    let allocation = turn.allocate(&stretched, &server.credential).await;
    assert!(
        !allocation.relayed,
        "a stretched expiry was accepted:\n{}",
        allocation.output
    );

    // And a correctly signed credential that has expired.
    let expired = ephemeral_username(now() - 10, "alice");
    let allocation = turn
        .allocate(&expired, &ephemeral_credential(secret, &expired))
        .await;
    assert!(
        !allocation.relayed,
        "an expired credential was accepted:\n{}",
        allocation.output
    );
}

#[tokio::test]
async fn static_credentials_allocate_on_coturn() {
    let turn = Coturn::start(TurnAuth::Static {
        username: "user-1",
        password: "pass-1",
    })
    .await;
    let (service, _dir) = ice_config(&stunner_config(
        turn.port(),
        r#"{"type":"plaintext","credentials":{"username":"user-1","password":"pass-1"}}"#,
    ))
    .await;

    let body = get_json(&service.url("http", "/?service=turn&username=alice")).await;
    assert_eq!(
        body["uris"][0],
        format!("turn:127.0.0.1:{}?transport=udp", turn.port())
    );
    let (username, password) = (
        body["username"].as_str().expect("username"),
        body["password"].as_str().expect("password"),
    );
    assert_eq!((username, password), ("user-1", "pass-1"));
    let allocation = turn.allocate(username, password).await;
    assert!(
        allocation.relayed,
        "static credentials refused:\n{}",
        allocation.output
    );

    let allocation = turn.allocate(username, "pass-2").await;
    assert!(
        !allocation.relayed,
        "a wrong password was accepted:\n{}",
        allocation.output
    );
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}
