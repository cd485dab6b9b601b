//! The gateway spreads its ice-config requests over every address ice-config's name resolves
//! to (a headless Service: one address per pod), and follows the name as pods come and go.
//! Two real ice-config processes listen on 127.0.0.1 and 127.0.0.2 (same port); the gateway
//! sees the name `ice-config-grpc` resolve to both through its own `/etc/hosts`.

use std::time::Duration;

use testkit::{
    Service, eventually,
    hosts::Hosts,
    metric,
    stack::{Launch, static_config},
};

const ISSUED: &str = "iceconfig_ice_configs_issued_total{api=\"grpc\"}";

async fn issued(service: &Service) -> f64 {
    let body = reqwest::get(service.url("http", "/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    metric(&body, ISSUED).unwrap_or(0.0)
}

#[tokio::test]
async fn ice_config_requests_are_spread_over_every_replica_and_follow_the_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("stunnerd.conf");
    std::fs::write(&config, static_config(3478)).expect("write config");
    let first = Launch::ice_config(&config).start().await;
    let port = first.addr("grpc").port();
    // The same port on another loopback address: a second pod behind the same Service port.
    let mut second = Launch::ice_config(&config)
        .set("--grpc-addr", &format!("127.0.0.2:{port}"))
        .set("--http-addr", "127.0.0.2:0")
        .start()
        .await;
    let signaling = Launch::signaling().start().await;
    let hosts = Hosts::new(&[
        ("127.0.0.1", "ice-config-grpc"),
        ("127.0.0.2", "ice-config-grpc"),
    ]);
    let ice_url = format!("http://ice-config-grpc:{port}");
    let gateway = Launch::gateway(&ice_url, &signaling.url("grpc", ""))
        .args(["--ice-config-resolve-interval", "100ms"])
        .hosts(&hosts)
        .start()
        .await;
    let ws = format!("ws://{}/one2one", gateway.addr("http"));

    let mut browsers = Vec::new();
    for i in 0..16 {
        let mut browser = testkit::Browser::connect(&ws).await;
        browser.register_ok(&format!("user-{i}")).await;
        browsers.push(browser);
    }
    let (a, b) = (issued(&first).await, issued(&second).await);
    assert_eq!(a + b, 16.0, "one ICE config per registration");
    assert!(
        a > 0.0 && b > 0.0,
        "both replicas served requests: {a} and {b}"
    );

    // The second pod goes away: its address leaves the name, then the process stops.
    hosts.rewrite(&[("127.0.0.1", "ice-config-grpc")]);
    eventually(
        Duration::from_secs(10),
        "the gateway to drop the vanished address",
        || {
            let gone = gateway.logs().contains("upstream address gone");
            async move { gone.then_some(()) }
        },
    )
    .await;
    second.terminate(Duration::from_secs(10)).await;
    for i in 16..24 {
        let mut browser = testkit::Browser::connect(&ws).await;
        browser.register_ok(&format!("user-{i}")).await;
        browsers.push(browser);
    }
    assert_eq!(
        issued(&first).await,
        a + 8.0,
        "every later request went to the remaining replica"
    );
}

#[tokio::test]
async fn a_name_that_resolves_to_nothing_refuses_registrations_in_bounded_time() {
    let signaling = Launch::signaling().start().await;
    // No address for the name, as when a headless Service has no ready pod yet.
    let hosts = Hosts::new(&[]);
    // Not ready, and saying why: no ice-config answers.
    let gateway = Launch::gateway("http://ice-config-grpc:50051", &signaling.url("grpc", ""))
        .hosts(&hosts)
        .unready()
        .start()
        .await;
    let (status, body) = testkit::eventually(Duration::from_secs(10), "a readiness answer", || {
        gateway.get("http", "/readyz")
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("ice-config does not answer"), "{body}");
    let mut browser =
        testkit::Browser::connect(&format!("ws://{}/one2one", gateway.addr("http"))).await;
    let reply = tokio::time::timeout(Duration::from_secs(15), browser.register("alice"))
        .await
        .expect("a registration is answered even when ice-config cannot be reached");
    assert_eq!(reply["response"], "rejected", "{reply}");
    assert_eq!(reply["reason"], "ice_config_unavailable", "{reply}");
}
