//! The service runtime every binary shares: gRPC health and reflection for exactly what each
//! port serves, and the drain that health reports.

use std::time::Duration;

use testkit::{
    eventually,
    grpc::{connect, health, reflected_services},
    stack::Launch,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn listed(service: &str) -> Vec<String> {
    let mut names: Vec<String> = [service, HEALTH]
        .into_iter()
        .chain(REFLECTION)
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[test]
fn every_flag_of_every_service_reads_its_environment_variable() {
    use clap::CommandFactory;
    // Kubernetes sets env, people set flags: every flag must have both.
    for command in [
        ice_config::cli::Args::command(),
        signaling::cli::Args::command(),
        gateway::cli::Args::command(),
    ] {
        svc_common::args::assert_every_flag_reads_env(&command);
    }
}

#[tokio::test]
async fn each_grpc_port_lists_exactly_what_it_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("stunnerd.conf");
    std::fs::write(&config, testkit::stack::static_config(3478)).expect("config");
    let ice = Launch::ice_config(&config).start().await;
    let signaling = Launch::signaling().start().await;

    for (process, service, other) in [
        (
            &ice,
            "iceconfig.v1.IceConfigService",
            "signaling.v1.SignalingService",
        ),
        (
            &signaling,
            "signaling.v1.SignalingService",
            "iceconfig.v1.IceConfigService",
        ),
    ] {
        let channel = connect(process.addr("grpc")).await;
        let (v1, v1alpha) = reflected_services(&channel).await;
        assert_eq!(v1, listed(service), "v1");
        assert_eq!(v1alpha, listed(service), "v1alpha");
        assert!(!v1.iter().any(|s| s == other));
        assert_eq!(
            health(&channel, service).await.ok(),
            Some(ServingStatus::Serving)
        );
        assert_eq!(
            health(&channel, "").await.ok(),
            Some(ServingStatus::Serving)
        );
    }
}

#[tokio::test]
async fn signaling_reports_not_serving_while_it_drains() {
    let mut signaling = Launch::signaling()
        .args(["--shutdown-grace", "5s"])
        .start()
        .await;
    let channel = connect(signaling.addr("grpc")).await;
    let service = "signaling.v1.SignalingService";
    assert_eq!(
        health(&channel, service).await.ok(),
        Some(ServingStatus::Serving)
    );

    // A watcher (as a load balancer's health checker) sees the drain begin before the port
    // closes.
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let status =
        |message: Option<tonic_health::pb::HealthCheckResponse>| message.map(|m| m.status());
    assert_eq!(
        status(watch.message().await.expect("status")),
        Some(ServingStatus::Serving)
    );
    let pid = signaling.pid().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("a status change within 5s")
        .expect("status");
    assert_eq!(status(next), Some(ServingStatus::NotServing));
    drop(watch);
    eventually(Duration::from_secs(10), "signaling to exit", || {
        let code = signaling.try_exit_code();
        async move { code }
    })
    .await;
}

/// cert-manager renews the gateway's certificate in place: new connections get the new one
/// without a restart; a half-written or broken pair is refused and the last good one kept.
#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    testkit::tls::self_signed(&cert, &key, "first").await;
    let gateway = Launch::gateway("http://127.0.0.1:9", "http://127.0.0.1:9")
        .args([
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
            "--tls-reload-interval",
            "100ms",
        ])
        .unready()
        .start()
        .await;
    let port = gateway.addr("https").port();
    let presented = |name: &'static str| async move {
        eventually(Duration::from_secs(10), name, || async {
            let subject = testkit::tls::presented_subject(port).await?;
            subject.contains(&format!("CN = {name}")).then_some(())
        })
        .await;
    };
    presented("first").await;

    // Renewed: written elsewhere, then moved over the old files, as a Secret volume swaps.
    let renewed = tempfile::tempdir().expect("temp dir");
    let (new_cert, new_key) = (
        renewed.path().join("tls.crt"),
        renewed.path().join("tls.key"),
    );
    testkit::tls::self_signed(&new_cert, &new_key, "second").await;
    std::fs::rename(&new_key, &key).expect("move the key");
    std::fs::rename(&new_cert, &cert).expect("move the certificate");
    presented("second").await;

    // Broken: the old pair keeps being served, and the log says why.
    std::fs::write(&cert, "not a certificate").expect("write");
    eventually(
        Duration::from_secs(10),
        "the refusal in the log",
        || async {
            gateway
                .logs()
                .contains("TLS certificate changed but does not load")
                .then_some(())
        },
    )
    .await;
    presented("second").await;
}

/// `local-stack` started outside the repository still serves the page (and says where its
/// services' metrics are).
#[tokio::test]
async fn the_local_stack_serves_the_page_from_any_directory() {
    let binary = testkit::binary("local-stack");
    let script = format!(
        "cd / && exec {} --http-addr 127.0.0.1:0 --turn-addr 127.0.0.1:0",
        binary.display()
    );
    let stack =
        testkit::Service::start(std::path::Path::new("/bin/sh"), &["-c", &script], &[]).await;
    let (status, page) = stack.get("http", "/").await.expect("the page");
    assert_eq!(status, 200);
    assert!(page.contains("One-to-one video call"), "{page}");
    for (key, service) in [
        ("ice-config-http", "iceconfig"),
        ("signaling-http", "signaling"),
    ] {
        let (status, metrics) = stack.get(key, "/metrics").await.expect("metrics");
        assert_eq!(status, 200, "{key}");
        assert!(metrics.contains(&format!("{service}_build_info")), "{key}");
    }
}
