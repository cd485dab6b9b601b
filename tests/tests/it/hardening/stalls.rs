//! A signaling replica or ice-config that stops answering (finding 2): the gateway's memory
//! stays bounded whatever browsers send meanwhile, nothing that must not be lost is, and
//! readiness says so.

use std::time::Duration;

use testkit::{
    Stack, eventually,
    stack::{Flags, static_config},
};

use super::{big_candidate, in_call, register_when_free};

/// `kill -STOP` signaling; twenty browsers in ten calls flood candidates and close; `kill -CONT`.
/// The gateway once grew from 8 MB to 649 MB and kept it, and the closed sessions' names were
/// still taken 15 s later (their `Closed` dropped on a full queue). Now its queues are bounded in
/// bytes, it reports not ready while signaling is frozen, and every name comes free.
#[tokio::test]
async fn a_frozen_signaling_leaves_no_ghost_names_and_no_bloat() {
    let stack = Stack::start(
        &static_config(3478),
        Flags {
            gateway: &["--session-rate", "1000000", "--session-burst", "1000000"],
            signaling: &["--resume-grace", "2s"],
            ..Default::default()
        },
    )
    .await;
    let mut browsers = Vec::new();
    for n in 0..10 {
        let (a, b) = in_call(&stack, &format!("a-{n}"), &format!("b-{n}")).await;
        browsers.extend([a, b]);
    }
    let gateway_before = stack.gateway.rss_kib();
    let signaling_before = stack.signaling.rss_kib();

    stack.signaling.freeze().await;
    let flood = big_candidate(60_000).to_string();
    let floods = browsers.into_iter().map(|mut browser| {
        let flood = flood.clone();
        tokio::spawn(async move {
            for _ in 0..300 {
                if !browser.try_send_text(&flood, Duration::from_secs(5)).await {
                    break;
                }
            }
            browser.close().await;
        })
    });
    for flood in floods.collect::<Vec<_>>() {
        flood.await.expect("a flooding browser");
    }
    eventually(
        Duration::from_secs(10),
        "the gateway to report not ready",
        || async { (stack.gateway.get("http", "/readyz").await?.0 == 503).then_some(()) },
    )
    .await;
    let gateway_peak = stack.gateway.rss_kib();

    stack.signaling.thaw().await;
    eventually(
        Duration::from_secs(10),
        "the gateway to be ready again",
        || async { (stack.gateway.get("http", "/readyz").await?.0 == 200).then_some(()) },
    )
    .await;
    let mut stranger = stack.browser().await;
    for n in 0..10 {
        for name in [format!("a-{n}"), format!("b-{n}")] {
            let t = std::time::Instant::now();
            let shown = name.clone();
            let ok = tokio::spawn(async move {
                register_when_free(&mut stranger, &name, Duration::from_secs(15)).await;
                stranger
            });
            let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(20), ok).await else {
                for s in [&stack.gateway, &stack.signaling] {
                    let m = s
                        .get("http", "/metrics")
                        .await
                        .map(|(_, b)| b)
                        .unwrap_or_default();
                    let lines: Vec<&str> = m
                        .lines()
                        .filter(|l| !l.starts_with('#') && !l.contains("bucket"))
                        .collect();
                    eprintln!("metrics after {:?}: {lines:?}", t.elapsed());
                }
                panic!("{shown} could not register within 20 s of the thaw");
            };
            stranger = s;
            stranger.close().await;
            stranger = stack.browser().await;
        }
    }
    let gateway_after = stack.gateway.rss_kib();
    let signaling_after = stack.signaling.rss_kib();
    println!(
        "RSS gateway {gateway_before} KiB -> {gateway_peak} KiB frozen -> {gateway_after} KiB; \
         signaling {signaling_before} KiB -> {signaling_after} KiB"
    );
    // 20 browsers × 300 × 60 KB = 360 MB were sent while signaling was frozen.
    assert!(
        gateway_peak.saturating_sub(gateway_before) < 96 * 1024,
        "the gateway grew by {} KiB",
        gateway_peak - gateway_before
    );
    assert!(
        signaling_after.saturating_sub(signaling_before) < 96 * 1024,
        "signaling grew by {} KiB",
        signaling_after - signaling_before
    );
}

/// Readiness follows the services behind the gateway: not ready while ice-config is frozen
/// (registrations would fail), ready again once it answers.
#[tokio::test]
async fn readiness_turns_false_while_ice_config_is_frozen() {
    let stack = Stack::start(&static_config(3478), Flags::default()).await;
    let status = || async { stack.gateway.get("http", "/readyz").await };
    assert_eq!(status().await.map(|(s, _)| s), Some(200));
    stack.ice_config.freeze().await;
    let (_, body) = eventually(Duration::from_secs(15), "not ready", || async {
        status().await.filter(|(s, _)| *s == 503)
    })
    .await;
    assert!(body.contains("ice-config"), "{body}");
    stack.ice_config.thaw().await;
    eventually(Duration::from_secs(15), "ready again", || async {
        status().await.filter(|(s, _)| *s == 200)
    })
    .await;
}
