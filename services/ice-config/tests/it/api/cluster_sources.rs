//! The binary with the cluster's config sources: `--config-source cds` against the in-test
//! config discovery service, and `--config-source kubernetes` against `testkit`'s stand-in for
//! the Kubernetes API (plain HTTP, reached through a kubeconfig; no real API server can run
//! on these machines), listing and then watching ConfigMaps.

use std::{net::SocketAddr, path::Path, time::Duration};

use serde_json::json;
use testkit::{
    Service,
    cds::{FakeCds, gateway_config},
    eventually,
    kube_api::{ApiStandIn, config_map},
};

const WITHIN: Duration = Duration::from_secs(10);

async fn ice(service: &Service) -> (u16, String) {
    let response = reqwest::get(service.url("http", "/ice?service=turn&username=alice"))
        .await
        .expect("GET /ice");
    (
        response.status().as_u16(),
        response.text().await.expect("body"),
    )
}

async fn until_ice(service: &Service, what: &str, check: impl Fn(u16, &str) -> bool) {
    eventually(WITHIN, what, || async {
        let (status, body) = ice(service).await;
        check(status, &body).then_some(())
    })
    .await;
}

async fn ice_config(args: &[&str], env: &[(&str, &str)]) -> Service {
    let mut all = vec!["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Service::start(Path::new(env!("CARGO_BIN_EXE_ice-config")), &all, env).await
}

#[tokio::test]
async fn follows_the_config_discovery_service() {
    let cds = FakeCds::start().await;
    cds.put(gateway_config("stunner/udp-gateway", "198.51.100.1"));
    let service = ice_config(&["--config-source", "cds", "--cds-url", &cds.url()], &[]).await;
    until_ice(&service, "the CDS config to be served", |status, body| {
        status == 200 && body.contains("turn:198.51.100.1:3478?transport=udp")
    })
    .await;

    cds.put(gateway_config("stunner/udp-gateway", "198.51.100.2"));
    until_ice(&service, "the update to be served", |_, body| {
        body.contains("198.51.100.2")
    })
    .await;

    // The Gateway is deleted: nothing left to issue.
    cds.delete("stunner/udp-gateway");
    until_ice(&service, "the deletion to be served", |status, _| {
        status == 500
    })
    .await;
}

/// A NodePort Gateway as the operator renders it: the listener's only address is STUNner's node
/// address placeholder. Never advertised: skipped with a reason in `/readyz` until a public
/// address is given (STUNNER_PUBLIC_ADDR here, `public-addr` per request).
#[tokio::test]
async fn the_node_address_placeholder_is_never_advertised() {
    let cds = FakeCds::start().await;
    let mut node_port = gateway_config("stunner/node-gateway", "");
    node_port["listeners"][0]["address"] = json!("__node_address_placeholder");
    node_port["listeners"][0]["public_port"] = json!(31478);
    cds.put(node_port);
    cds.put(gateway_config("stunner/udp-gateway", "198.51.100.1"));
    let args = ["--config-source", "cds", "--cds-url", &cds.url()];
    let service = ice_config(&args, &[]).await;
    until_ice(&service, "the CDS configs to be served", |status, body| {
        status == 200 && body.contains("198.51.100.1")
    })
    .await;
    let (_, body) = ice(&service).await;
    assert!(!body.contains("placeholder"), "{body}");
    assert!(!body.contains("0.0.0.0"), "{body}");
    let readyz = reqwest::get(service.url("http", "/readyz"))
        .await
        .expect("GET /readyz");
    assert_eq!(readyz.status().as_u16(), 200, "the other Gateway is served");
    let reasons = readyz.text().await.expect("body");
    assert!(
        reasons.contains("stunner/node-gateway/udp-listener")
            && reasons.contains("__node_address_placeholder")
            && reasons.contains("STUNNER_PUBLIC_ADDR"),
        "{reasons}"
    );

    let service = ice_config(&args, &[("STUNNER_PUBLIC_ADDR", "203.0.113.9")]).await;
    until_ice(
        &service,
        "the node's address to be served",
        |status, body| status == 200 && body.contains("turn:203.0.113.9:31478?transport=udp"),
    )
    .await;
    let (_, body) = ice(&service).await;
    assert!(!body.contains("placeholder"), "{body}");
}

#[tokio::test]
async fn a_cds_url_that_is_not_http_is_refused() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ice-config"))
        .args([
            "--config-source",
            "cds",
            "--cds-url",
            "https://cds.example:13478",
        ])
        .output()
        .await
        .expect("run ice-config");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--cds-url must be an http:// URL"),
        "{stderr}"
    );
}

#[tokio::test]
async fn follows_config_maps_through_the_kubernetes_api() {
    let api = ApiStandIn::start(SocketAddr::from(([127, 0, 0, 1], 0)), None).await;
    api.put(config_map(
        "stunner",
        "stunnerd-config",
        &gateway_config("stunner-daemon", "198.51.100.1"),
    ));
    // Not selected: another label, and another namespace.
    let mut unlabelled = config_map("stunner", "other", &gateway_config("other", "198.51.100.7"));
    unlabelled["metadata"]["labels"] = json!({});
    api.put(unlabelled);
    api.put(config_map(
        "team-b",
        "stunnerd-config",
        &gateway_config("team-b", "198.51.100.8"),
    ));

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters: [{{name: test, cluster: {{server: \"{}\"}}}}]\n\
             users: [{{name: test, user: {{}}}}]\n\
             contexts: [{{name: test, context: {{cluster: test, user: test}}}}]\n",
            api.url()
        ),
    )
    .expect("write kubeconfig");
    let kubeconfig = kubeconfig.to_str().expect("utf-8");
    let service = ice_config(
        &[
            "--config-source",
            "kubernetes",
            "--kube-namespaces",
            "stunner",
        ],
        &[("KUBECONFIG", kubeconfig)],
    )
    .await;
    until_ice(
        &service,
        "the ConfigMap's config to be served",
        |status, body| status == 200 && body.contains("turn:198.51.100.1:3478?transport=udp"),
    )
    .await;
    let (_, body) = ice(&service).await;
    assert!(
        !body.contains("198.51.100.7") && !body.contains("198.51.100.8"),
        "{body}"
    );

    eventually(WITHIN, "the watch to be open", || {
        let watching = api.requests().iter().any(|r| r.verb == "watch");
        async move { watching.then_some(()) }
    })
    .await;
    api.put(config_map(
        "stunner",
        "stunnerd-config",
        &gateway_config("stunner-daemon", "198.51.100.2"),
    ));
    until_ice(
        &service,
        "the modified ConfigMap to be served",
        |_, body| body.contains("198.51.100.2"),
    )
    .await;
    for request in api.requests() {
        assert_eq!(request.namespace.as_deref(), Some("stunner"), "{request:?}");
        assert_eq!(
            request.label_selector.as_deref(),
            Some("stunner.l7mp.io/owned-by=stunner"),
            "{request:?}"
        );
    }
}

#[tokio::test]
async fn the_kubernetes_source_outside_a_cluster_fails_clearly() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ice-config"))
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--config-source",
            "kubernetes",
        ])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .await
        .expect("run ice-config");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no Kubernetes API client"), "{stderr}");
}
