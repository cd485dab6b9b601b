//! Several signaling replicas on one store: races between replicas are settled by the store,
//! whichever replica and gateway each party came through.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tempfile::TempDir;
use testkit::{
    Browser, Service,
    redis::RedisSentinel,
    stack::{Flags, Launch, static_config, wait_ready, ws_url},
    topology::{Store, Topology},
};

async fn topology(store: Store) -> Topology {
    Topology::start(store, &static_config(3478), Flags::default()).await
}

async fn one_name_claimed_at_once_everywhere_goes_to_exactly_one(store: Store) {
    let t = topology(store).await;
    let mut browsers: Vec<Browser> = Vec::new();
    for _ in 0..50 {
        browsers.push(t.browser().await);
    }
    // All fifty ask at once, spread over both gateways and every replica.
    join_all(
        browsers
            .iter_mut()
            .map(|b| b.send(json!({"id": "register", "name": "popular", "extensions": true}))),
    )
    .await;
    let replies = join_all(browsers.iter_mut().map(|b| b.expect("registerResponse"))).await;
    let accepted = replies
        .iter()
        .filter(|r| r["response"] == "accepted")
        .count();
    assert_eq!(accepted, 1, "exactly one claim wins: {replies:?}");
    for reply in replies.iter().filter(|r| r["response"] != "accepted") {
        assert_eq!(reply["reason"], "name_taken", "{reply}");
    }
}

async fn callers_ringing_one_callee_at_once_one_rings_and_the_rest_are_busy(store: Store) {
    let t = topology(store).await;
    let mut bob = t.browser().await;
    bob.register_ok("bob").await;
    let mut callers = Vec::new();
    for i in 0..20 {
        let mut caller = t.browser().await;
        caller.register_ok(&format!("caller-{i}")).await;
        callers.push(caller);
    }
    join_all(
        callers
            .iter_mut()
            .map(|c| c.send(json!({"id": "call", "to": "bob", "sdpOffer": "o"}))),
    )
    .await;
    let incoming = bob.expect("incomingCall").await;
    bob.expect_nothing_pending().await;
    // Every caller but the one ringing is told busy; the one ringing hears nothing yet.
    let mut busy = 0;
    let mut ringing = Vec::new();
    for caller in &mut callers {
        let reply = caller.recv_or_none().await;
        match reply {
            Some(reply) => {
                assert_eq!(
                    (reply["id"].as_str(), reply["reason"].as_str()),
                    (Some("callResponse"), Some("busy")),
                    "{reply}"
                );
                busy += 1;
            }
            None => ringing.push(caller),
        }
    }
    assert_eq!(busy, 19);
    assert_eq!(ringing.len(), 1, "one call rings");
    let from = incoming["from"].as_str().expect("a caller").to_owned();
    bob.send(json!({"id": "incomingCallResponse", "from": from, "callResponse": "accept", "sdpAnswer": "a"}))
        .await;
    assert_eq!(
        ringing[0].expect("callResponse").await["response"],
        "accepted"
    );
}

/// Browsers registering all at once through six gateways, each attached to both replicas: every
/// registration waits its turn and is accepted. (Each replica then handles more commands at
/// once than it lets run on the store; a stream reader that awaited the store itself while its
/// commands waited for it to poll them stopped every registration for good.)
#[tokio::test]
async fn a_registration_storm_through_six_gateways_queues_and_every_one_is_accepted() {
    let t = Topology::mesh(Store::Redis, 6, 2, &static_config(3478), Flags::default()).await;
    let mut browsers: Vec<Browser> = Vec::new();
    for _ in 0..2400 {
        browsers.push(t.browser().await);
    }
    join_all(browsers.iter_mut().enumerate().map(|(n, b)| {
        b.send(json!({"id": "register", "name": format!("storm-{n}"), "extensions": true}))
    }))
    .await;
    let replies = join_all(browsers.iter_mut().map(|b| b.expect("registerResponse"))).await;
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r["response"] != "accepted")
        .collect();
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        refused.first()
    );
}

/// Replicas that know the store only through a Sentinel (`redis+sentinel://…/<master>`), as
/// with a managed Redis: a call between browsers on different gateways and different replicas
/// is set up and carries a candidate, and what they share is in the master Sentinel names.
#[tokio::test]
async fn replicas_find_the_store_through_sentinel() {
    let sentinel = RedisSentinel::start().await;
    let services = TwoReplicas::on(&sentinel.url()).await;
    let (mut alice, mut bob) = services.alice_calling_bob().await;
    let candidate = candidate(1);
    alice
        .send(json!({"id": "onIceCandidate", "candidate": candidate}))
        .await;
    assert_eq!(bob.expect("iceCandidate").await["candidate"], candidate);
    assert!(
        sentinel.master.keys().await > 0,
        "the names and the call are in the master"
    );
}

/// The master a Sentinel names is SIGKILLed mid-call and the Sentinel promotes its replica:
/// both signaling replicas follow it there. The call goes on (a candidate crosses replicas
/// again), the names are still held, and a new name is served.
#[tokio::test]
async fn replicas_follow_a_sentinel_failover_with_names_and_calls_kept() {
    let mut sentinel = RedisSentinel::with_replica().await;
    let services = TwoReplicas::on(&sentinel.url()).await;
    let (mut alice, mut bob) = services.alice_calling_bob().await;
    sentinel.fail_over().await;
    for replica in [&services.a, &services.b] {
        wait_ready(replica).await;
    }
    // A candidate sent while a replica is still finding the new master may be refused
    // (`unavailable`); the page's next one goes through.
    let mut crossed = false;
    for n in 0..20 {
        let candidate = candidate(n);
        alice
            .send(json!({"id": "onIceCandidate", "candidate": candidate}))
            .await;
        let relayed = tokio::time::timeout(
            Duration::from_secs(2),
            bob.recv_within(Duration::from_secs(60)),
        )
        .await;
        if let Ok(message) = relayed {
            assert_eq!(message["id"], "iceCandidate", "{message}");
            assert_eq!(message["candidate"], candidate);
            crossed = true;
            break;
        }
    }
    assert!(
        crossed,
        "a candidate crossed the replicas after the failover"
    );
    let mut stranger = Browser::connect(&ws_url(&services.gateway_b)).await;
    let taken = stranger.register("alice").await;
    assert_eq!(
        taken["reason"], "name_taken",
        "alice is still held: {taken}"
    );
    let mut carol = Browser::connect(&ws_url(&services.gateway_a)).await;
    carol.register_ok("carol").await;
    let replica = sentinel.replica.as_ref().expect("started with one");
    assert!(
        replica.keys().await > 0,
        "the store is the promoted replica"
    );
}

fn candidate(n: u16) -> Value {
    json!({"candidate": format!("candidate:{n} 1 udp 2122260223 127.0.0.1 {} typ relay", 40000 + n), "sdpMid": "0", "sdpMLineIndex": 0})
}

/// Two signaling replicas that reach the store at `url`, each with a gateway of its own.
struct TwoReplicas {
    a: Service,
    b: Service,
    gateway_a: Service,
    gateway_b: Service,
    _ice_config: Service,
    _dir: TempDir,
}

impl TwoReplicas {
    async fn on(url: &str) -> TwoReplicas {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("stunnerd.conf");
        std::fs::write(&config, static_config(3478)).expect("write config");
        let ice_config = Launch::ice_config(&config).start().await;
        let a = Launch::signaling().args(["--redis-url", url]).start().await;
        let b = Launch::signaling().args(["--redis-url", url]).start().await;
        let ice_url = ice_config.url("grpc", "");
        let gateway_a = Launch::gateway(&ice_url, &a.url("grpc", "")).start().await;
        let gateway_b = Launch::gateway(&ice_url, &b.url("grpc", "")).start().await;
        TwoReplicas {
            a,
            b,
            gateway_a,
            gateway_b,
            _ice_config: ice_config,
            _dir: dir,
        }
    }

    /// Alice on the first gateway and replica has called Bob on the second; he answered.
    async fn alice_calling_bob(&self) -> (Browser, Browser) {
        let mut alice = Browser::connect(&ws_url(&self.gateway_a)).await;
        alice.register_ok("alice").await;
        let mut bob = Browser::connect(&ws_url(&self.gateway_b)).await;
        bob.register_ok("bob").await;
        let (accepted, _) = alice.call_answered("alice", &mut bob, "bob").await;
        assert_eq!(accepted["response"], "accepted", "{accepted}");
        (alice, bob)
    }
}

macro_rules! on_shared_stores {
    ($($test:ident),* $(,)?) => {
        mod redis {
            $(#[tokio::test]
            async fn $test() {
                super::$test(testkit::topology::Store::Redis).await
            })*
        }
        mod redis_cluster {
            $(#[tokio::test]
            async fn $test() {
                super::$test(testkit::topology::Store::Cluster).await
            })*
        }
    };
}

on_shared_stores!(
    one_name_claimed_at_once_everywhere_goes_to_exactly_one,
    callers_ringing_one_callee_at_once_one_rings_and_the_rest_are_busy,
);

/// Every key of a user or of a gateway expires: records of live sessions, their gateway's sets
/// and inbox within the lease (renewed while the gateway lives), an away user's record with
/// its grace period. A record changed while its user stays live keeps the lease it had.
#[tokio::test]
async fn every_key_of_a_user_or_a_gateway_expires_with_its_lease_or_grace_period() {
    const LEASE_MS: i64 = 3_600_000;
    let t = topology(Store::Redis).await;
    let (mut alice, mut bob) = (t.browser().await, t.browser().await);
    alice.register_ok("alice").await;
    bob.register_ok("bob").await;
    let (accepted, _) = alice.call_answered("alice", &mut bob, "bob").await;
    assert_eq!(accepted["response"], "accepted", "{accepted}");
    alice
        .send(json!({"id": "onIceCandidate", "candidate": {"candidate": "c1"}}))
        .await;
    bob.expect("iceCandidate").await;
    alice.send(json!({"id": "stop"})).await;
    bob.expect("stopCommunication").await;
    let mut carol = t.browser().await;
    carol.register_ok("carol").await;
    carol.close().await;
    let redis = t.redis.as_ref().expect("a Redis topology");
    // Carol's record goes away with her grace period (10s by default, a minute's slack).
    let carol_ttl = testkit::eventually(Duration::from_secs(10), "carol away", || async {
        let ttls = redis.ttls("sig:u:{carol}").await;
        ttls.first()
            .map(|(_, ttl)| *ttl)
            .filter(|ttl| (0..=70_000).contains(ttl))
    })
    .await;
    assert!(carol_ttl > 0);
    let ttls = redis.ttls("sig:*").await;
    let scoped: Vec<_> = ttls
        .iter()
        .filter(|(key, _)| key.starts_with("sig:u:") || key.starts_with("sig:gw:"))
        .collect();
    for user in ["alice", "bob", "carol"] {
        let key = format!("sig:u:{{{user}}}");
        assert!(scoped.iter().any(|(k, _)| *k == key), "{key} in {ttls:?}");
    }
    assert!(
        scoped.iter().any(|(k, _)| k.ends_with(":inbox")),
        "the gateways' inboxes: {ttls:?}"
    );
    for (key, ttl) in scoped {
        assert!(
            (1..=LEASE_MS).contains(ttl),
            "{key} expires within the lease: {ttl} ms"
        );
    }
}
