//! Config changes take effect without a restart; a broken config never replaces a good one;
//! SIGTERM drains.

use std::{os::unix::fs::symlink, path::Path, time::Duration};

use stunner_proto::iceconfig::v1::GetIceConfigRequest;
use tonic::Code;

use super::helpers::{EPHEMERAL, STATIC, TestApp, all_urls, metric};

fn username(config: &stunner_proto::iceconfig::v1::IceConfig) -> Option<&str> {
    Some(config.ice_servers.first()?.username.as_str())
}

#[tokio::test]
async fn a_rewritten_file_changes_the_issued_config() {
    let app = TestApp::start(Some(STATIC)).await;
    app.wait_for_config("the first config", GetIceConfigRequest::default(), |c| {
        username(c) == Some("user-1")
    })
    .await;

    app.write_config(&STATIC.replace("user-1", "user-2"));
    app.wait_for_config(
        "the rewritten config",
        GetIceConfigRequest::default(),
        |c| username(c) == Some("user-2"),
    )
    .await;

    // From static to ephemeral, in place (no rename).
    std::fs::write(&app.config, EPHEMERAL).expect("write");
    let config = app
        .wait_for_config(
            "the ephemeral config",
            GetIceConfigRequest::default(),
            |c| c.ice_servers.len() == 2,
        )
        .await;
    assert!(config.expire_time.is_some());
}

/// Kubernetes updates a mounted ConfigMap by writing a new timestamped folder and atomically
/// renaming a `..data` symlink onto it; `stunnerd.conf` is a symlink through `..data`.
#[tokio::test]
async fn a_configmap_symlink_swap_changes_the_issued_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write_configmap_version(root, "..2026_11_23_10_00_00.0001", STATIC);
    symlink("..2026_11_23_10_00_00.0001", root.join("..data")).expect("..data");
    symlink("..data/stunnerd.conf", root.join("stunnerd.conf")).expect("stunnerd.conf");
    let config = root.join("stunnerd.conf");
    let app = TestApp::start_at(dir, config, &[]).await;
    app.wait_for_config("the mounted config", GetIceConfigRequest::default(), |c| {
        username(c) == Some("user-1")
    })
    .await;

    for (n, user) in [(2, "user-2"), (3, "user-3")] {
        let root = app.dir.path();
        let version = format!("..2026_11_23_10_00_00.000{n}");
        write_configmap_version(root, &version, &STATIC.replace("user-1", user));
        symlink(&version, root.join("..data_tmp")).expect("..data_tmp");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap ..data");
        app.wait_for_config(&format!("swap {n}"), GetIceConfigRequest::default(), |c| {
            username(c) == Some(user)
        })
        .await;
    }
}

fn write_configmap_version(root: &Path, version: &str, text: &str) {
    let folder = root.join(version);
    std::fs::create_dir(&folder).expect("version folder");
    std::fs::write(folder.join("stunnerd.conf"), text).expect("config");
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_config() {
    let app = TestApp::start(Some(STATIC)).await;
    app.wait_for_metric("iceconfig_config_reloads_total{outcome=\"success\"}", 1.0)
        .await;
    let before = app.get_json("/ice?service=turn").await;

    for (n, broken) in [
        r#"{"version":"v1","auth":{"type":"static""#,
        r#"{"version":"v7","auth":{"type":"none"}}"#,
        r#"{"version":"v1","auth":{"type":"static","credentials":{"username":"only"}}}"#,
        "",
    ]
    .into_iter()
    .enumerate()
    {
        app.write_config(broken);
        app.wait_for_metric(
            "iceconfig_config_reloads_total{outcome=\"failure\"}",
            (n + 1) as f64,
        )
        .await;
        assert_eq!(
            app.get_json("/ice?service=turn").await,
            before,
            "after {broken:?}"
        );
        let (status, body) = app.get("/readyz").await;
        assert_eq!(status, 200, "still serving");
        assert!(
            body.contains("invalid STUNner config")
                && body.contains("serving the last good config"),
            "{body}"
        );
    }

    // A deleted file too: the last good config stays, readiness says why.
    std::fs::remove_file(&app.config).expect("remove");
    app.wait_for_metric("iceconfig_config_reloads_total{outcome=\"failure\"}", 5.0)
        .await;
    assert_eq!(app.get_json("/ice?service=turn").await, before);
    assert!(app.get("/readyz").await.1.contains("file not found"));

    // Mending the file clears the complaint.
    app.write_config(&STATIC.replace("pass-1", "mended"));
    app.wait_for_config("the mended config", GetIceConfigRequest::default(), |c| {
        c.ice_servers[0].credential == "mended"
    })
    .await;
    assert_eq!(app.get("/readyz").await, (200, "ready\n".into()));
    assert!(app.service.logs().contains("STUNner config rejected"));
    let metrics = app.get("/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            "iceconfig_config_reloads_total{outcome=\"success\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn several_files_are_several_sources() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("a.json");
    let second = dir.path().join("b.yaml");
    std::fs::write(&first, STATIC).expect("write");
    std::fs::write(
        &second,
        "version: v1\nadmin: {name: media/gw}\nauth: {type: none}\nlisteners:\n- {name: media/gw/l, protocol: TURN-TCP, public_address: 203.0.113.5}\n",
    )
    .expect("write");
    let paths = format!("{},{}", first.display(), second.display());
    let service = testkit::Service::start(
        Path::new(env!("CARGO_BIN_EXE_ice-config")),
        &["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
        &[("STUNNER_CONFIG_FILENAME", paths.as_str())],
    )
    .await;
    let mut client =
        stunner_proto::iceconfig::v1::ice_config_service_client::IceConfigServiceClient::connect(
            service.url("grpc", ""),
        )
        .await
        .expect("connect");
    let config = testkit::eventually(Duration::from_secs(5), "both files", || {
        let mut client = client.clone();
        async move {
            let config = client
                .get_ice_config(GetIceConfigRequest::default())
                .await
                .ok()?
                .into_inner();
            (config.ice_servers.len() == 2).then_some(config)
        }
    })
    .await;
    assert_eq!(
        all_urls(&config),
        [
            "turn:192.0.2.10:3478?transport=udp",
            "turn:192.0.2.11:3478?transport=tcp",
            "turn:203.0.113.5:3478?transport=tcp"
        ]
    );
    let status = client
        .get_ice_config(GetIceConfigRequest {
            namespace: "media".into(),
            gateway: "other".into(),
            ..Default::default()
        })
        .await
        .expect_err("no match");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn sigterm_drains_and_ends_open_watch_streams() {
    let mut app = TestApp::start(Some(STATIC)).await;
    let mut stream = app
        .grpc()
        .await
        .watch_ice_config(GetIceConfigRequest::default())
        .await
        .expect("watch")
        .into_inner();
    stream.message().await.expect("first").expect("open");

    let exit = app.service.terminate(Duration::from_secs(10)).await;
    assert_eq!(exit, Some(0), "a clean exit");
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends");
    match ended {
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(None) => {}
        Ok(Some(message)) => panic!("unexpected message {message:?}"),
    }
}
