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
