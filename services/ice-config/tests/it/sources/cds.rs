//! The config discovery service source against `testkit::cds::FakeCds`.

use std::time::Duration;

use ice_config::source::{CdsSource, cds::Timing};
use serde_json::json;
use testkit::cds::FakeCds;
use tokio_util::sync::CancellationToken;

use super::*;

/// STUNner's timings scaled down, so reconnects take milliseconds.
fn fast() -> Timing {
    Timing {
        ping_every: Duration::from_millis(100),
        pong_within: Duration::from_millis(300),
        retry: Duration::from_millis(50),
        max_retry: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
    }
}

/// Runs a CDS source on `cds` until the returned token is dropped or cancelled.
fn follow(
    cds: &FakeCds,
    namespace: Option<&str>,
    store: &ConfigStore,
) -> tokio_util::sync::DropGuard {
    let stop = CancellationToken::new();
    let source = CdsSource::new(&cds.url(), namespace, fast(), store);
    tokio::spawn(source.run(stop.clone()));
    stop.drop_guard()
}

#[tokio::test]
async fn lists_then_follows_updates_and_zero_config_deletions() {
    let cds = FakeCds::start().await;
    cds.put(gateway_config("stunner/udp-gateway", "198.51.100.1"));
    cds.put(gateway_config("team-b/gateway", "198.51.100.2"));
    let store = new_store();
    let _running = follow(&cds, None, &store);
    assert!(
        !store.readiness().ready,
        "not ready before the first listing"
    );

    until_served(
        &store,
        &[
            ("stunner/udp-gateway", "198.51.100.1"),
            ("team-b/gateway", "198.51.100.2"),
        ],
    )
    .await;
    assert!(store.readiness().ready);
    testkit::eventually(WITHIN, "the watch to open", || async {
        (cds.watches() == 1).then_some(())
    })
    .await;

    cds.put(gateway_config("stunner/udp-gateway", "198.51.100.9"));
    until_served(
        &store,
        &[
            ("stunner/udp-gateway", "198.51.100.9"),
            ("team-b/gateway", "198.51.100.2"),
        ],
    )
    .await;

    cds.put(gateway_config("stunner/tcp-gateway", "198.51.100.3"));
    cds.delete("team-b/gateway");
    until_served(
        &store,
        &[
            ("stunner/tcp-gateway", "198.51.100.3"),
            ("stunner/udp-gateway", "198.51.100.9"),
        ],
    )
    .await;
    assert_eq!(
        cds.lists(),
        1,
        "updates came over the watch, not by listing again"
    );
    assert_eq!(store.readiness().problems, Vec::<String>::new());
}

#[tokio::test]
async fn a_namespace_sees_only_its_own_gateways() {
    let cds = FakeCds::start().await;
    cds.put(gateway_config("stunner/udp-gateway", "198.51.100.1"));
    cds.put(gateway_config("team-b/gateway", "198.51.100.2"));
    let store = new_store();
    let _running = follow(&cds, Some("team-b"), &store);
    until_served(&store, &[("team-b/gateway", "198.51.100.2")]).await;
    testkit::eventually(WITHIN, "the watch to open", || async {
        (cds.watches() == 1).then_some(())
    })
    .await;

    cds.put(gateway_config("stunner/udp-gateway", "198.51.100.7"));
    cds.put(gateway_config("team-b/other", "198.51.100.8"));
    until_served(
        &store,
        &[
            ("team-b/gateway", "198.51.100.2"),
            ("team-b/other", "198.51.100.8"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_malformed_config_keeps_the_last_good_one_until_fixed() {
    let cds = FakeCds::start().await;
    cds.put(gateway_config("stunner/udp-gateway", "198.51.100.1"));
    let store = new_store();
    let _running = follow(&cds, None, &store);
    until_served(&store, &[("stunner/udp-gateway", "198.51.100.1")]).await;
    testkit::eventually(WITHIN, "the watch to open", || async {
        (cds.watches() == 1).then_some(())
    })
    .await;

    let mut broken = gateway_config("stunner/udp-gateway", "198.51.100.5");
    broken["listeners"][0]["protocol"] = json!("SCTP");
    cds.push_raw("stunner/udp-gateway", broken);
    let readiness = until_readiness(&store, "the bad config to be reported", |r| {
        !r.problems.is_empty()
    })
    .await;
    assert!(readiness.ready, "still serving the last good config");
    assert!(
        readiness.problems[0].contains("stunner/udp-gateway")
            && readiness.problems[0].contains("SCTP"),
        "{readiness:?}"
    );
    assert_eq!(
        served(&store),
        pairs(&[("stunner/udp-gateway", "198.51.100.1")])
    );

    cds.push_raw("stunner/udp-gateway", json!({"no": "name"}));
    cds.put(gateway_config("stunner/udp-gateway", "198.51.100.6"));
    until_served(&store, &[("stunner/udp-gateway", "198.51.100.6")]).await;
    assert_eq!(store.readiness().problems, Vec::<String>::new());
}

#[tokio::test]
async fn reconnects_after_an_outage_and_drops_what_was_deleted_meanwhile() {
    let cds = FakeCds::start().await;
    cds.put(gateway_config("stunner/a", "198.51.100.1"));
    cds.put(gateway_config("stunner/b", "198.51.100.2"));
    let store = new_store();
    let _running = follow(&cds, None, &store);
    until_served(
        &store,
        &[("stunner/a", "198.51.100.1"), ("stunner/b", "198.51.100.2")],
    )
    .await;

    cds.set_available(false);
    let readiness = until_readiness(&store, "the outage to be reported", |r| {
        r.problems.iter().any(|p| p.contains("503"))
    })
    .await;
    assert!(
        readiness.ready,
        "the last good configs stay in force: {readiness:?}"
    );
    // Changes nobody hears about: b's zero config reaches no watch.
    cds.delete("stunner/b");
    cds.put(gateway_config("stunner/c", "198.51.100.3"));
    assert_eq!(served(&store).len(), 2);

    cds.set_available(true);
    until_served(
        &store,
        &[("stunner/a", "198.51.100.1"), ("stunner/c", "198.51.100.3")],
    )
    .await;
    until_readiness(&store, "the problem to clear", |r| r.problems.is_empty()).await;
    assert!(cds.lists() >= 2);
}

#[tokio::test]
async fn a_dropped_or_silent_watch_is_reopened() {
    let cds = FakeCds::start().await;
    cds.put(gateway_config("stunner/a", "198.51.100.1"));
    let store = new_store();
    let _running = follow(&cds, None, &store);
    testkit::eventually(WITHIN, "the watch to open", || async {
        (cds.watches() == 1).then_some(())
    })
    .await;

    cds.disconnect_watches();
    testkit::eventually(WITHIN, "a second watch", || async {
        (cds.watches() >= 2).then_some(())
    })
    .await;

    // A watch that stops answering pings is given up after the pong timeout.
    cds.set_deaf(true);
    testkit::eventually(WITHIN, "a third watch after the missing pong", || async {
        (cds.watches() >= 3).then_some(())
    })
    .await;
    cds.set_deaf(false);

    cds.put(gateway_config("stunner/a", "198.51.100.4"));
    until_served(&store, &[("stunner/a", "198.51.100.4")]).await;
}
