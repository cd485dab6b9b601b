//! Nobody notices a replica going away: signaling replicas killed or drained under calls, Redis
//! stopped and started again (with its data, and empty). Browsers are real WebSocket clients;
//! faults are real signals to real processes.
//! (Over 300 lines: one scenario per fault.)

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{
    Browser,
    stack::{Flags, static_config},
    topology::{Store, Topology},
};

fn candidate(n: u32) -> Value {
    json!({"candidate": format!("candidate:{n} 1 udp 2122260223 127.0.0.1 {} typ relay", 40000 + n),
           "sdpMid": "0", "sdpMLineIndex": 0})
}

/// A call set up between two browsers, the caller on gateway 0, the callee on gateway 1.
struct Call {
    caller: Browser,
    callee: Browser,
    caller_name: String,
    callee_name: String,
}

impl Call {
    async fn start(t: &Topology, n: usize) -> Call {
        let (caller_name, callee_name) = (format!("caller-{n}"), format!("callee-{n}"));
        let mut caller = t.browser_on(0).await;
        caller.register_ok(&caller_name).await;
        let mut callee = t.browser_on(1 % t.gateways.len()).await;
        callee.register_ok(&callee_name).await;
        let (accepted, _) = caller
            .call_answered(&caller_name, &mut callee, &callee_name)
            .await;
        assert_eq!(accepted["response"], "accepted");
        Call {
            caller,
            callee,
            caller_name,
            callee_name,
        }
    }

    /// A candidate each way.
    async fn carries_candidates(&mut self, n: u32) {
        self.caller
            .send(json!({"id": "onIceCandidate", "candidate": candidate(n)}))
            .await;
        expect_candidate(&mut self.callee, n).await;
        self.callee
            .send(json!({"id": "onIceCandidate", "candidate": candidate(n + 1)}))
            .await;
        expect_candidate(&mut self.caller, n + 1).await;
    }

    /// The caller hangs up; the callee hears it.
    async fn hangs_up(&mut self) {
        self.caller.send(json!({"id": "stop"})).await;
        let stop = self.callee.expect("stopCommunication").await;
        assert_eq!(stop["reason"], "hang_up", "{stop}");
    }
}

/// Candidate `n` arrives. A replica lost before it acknowledged an earlier candidate has it
/// sent again, so an earlier one may come twice (a browser adds it once); nothing else may come.
async fn expect_candidate(browser: &mut Browser, n: u32) {
    loop {
        let message = browser.expect("iceCandidate").await;
        if message["candidate"] == candidate(n) {
            return;
        }
        let earlier = (0..n).any(|m| message["candidate"] == candidate(m));
        assert!(earlier, "expected candidate {n}, got {message}");
    }
}

/// Nobody can register `name`: it is held. (Asked again while the service says it is
/// recovering: that is not an answer about the name.)
async fn held(t: &Topology, name: &str) {
    let reply = testkit::eventually(
        Duration::from_secs(10),
        "an answer about the name",
        || async {
            let mut stranger = t.browser().await;
            let reply = stranger.register(name).await;
            (reply["reason"] != "unavailable").then_some(reply)
        },
    )
    .await;
    assert_eq!(
        (reply["response"].as_str(), reply["reason"].as_str()),
        (Some("rejected"), Some("name_taken")),
        "a stranger took {name}: {reply}"
    );
}

#[tokio::test]
async fn a_replica_killed_under_twenty_calls_is_not_noticed() {
    let mut t = Topology::mesh(Store::Redis, 2, 3, &static_config(3478), Flags::default()).await;
    let mut calls = Vec::new();
    for n in 0..20 {
        calls.push(Call::start(&t, n).await);
    }
    for call in &mut calls {
        call.carries_candidates(1).await;
    }

    // A replica dies at once, as on a node failure.
    t.signaling[1].kill().await;
    let killed = Instant::now();
    for call in &mut calls {
        call.carries_candidates(10).await;
    }
    println!(
        "handover: every call carried candidates again {:?} after the kill",
        killed.elapsed()
    );
    // No name was freed for a stranger.
    for call in &calls {
        held(&t, &call.caller_name).await;
        held(&t, &call.callee_name).await;
    }
    // Every call goes on, and ends as its parties say.
    for call in &mut calls {
        call.carries_candidates(20).await;
        call.hangs_up().await;
    }
    // No browser socket was closed: every one still answers.
    for call in &mut calls {
        call.caller.expect_nothing_pending().await;
        call.callee.expect_nothing_pending().await;
    }
}

/// Pairs of browsers, registered, for [`closed_loop`].
async fn pairs(t: &Topology, pairs: usize) -> Vec<Call> {
    let mut calls = Vec::new();
    for n in 0..pairs {
        let mut call = Call::start(t, 1000 + n).await;
        call.hangs_up().await;
        calls.push(call);
    }
    calls
}

/// The pairs calling back to back until told to stop; counts the calls made.
async fn closed_loop(calls: Vec<Call>, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for mut call in calls {
        let mut stop = stop.clone();
        tasks.spawn(async move {
            let mut cycles = 0;
            while !*stop.borrow_and_update() {
                call.caller
                    .send(json!({"id": "call", "to": call.callee_name, "sdpOffer": "o"}))
                    .await;
                call.callee.expect("incomingCall").await;
                call.callee
                    .send(json!({"id": "incomingCallResponse", "from": call.caller_name, "callResponse": "accept", "sdpAnswer": "a"}))
                    .await;
                let answer = call.caller.expect("callResponse").await;
                assert_eq!(answer["response"], "accepted", "{answer}");
                call.callee.expect("startCommunication").await;
                call.carries_candidates(1).await;
                call.hangs_up().await;
                cycles += 1;
            }
            cycles
        });
    }
    let mut cycles = 0;
    while let Some(done) = tasks.join_next().await {
        cycles += done.expect("a call cycle failed");
    }
    cycles
}

#[tokio::test]
async fn replicas_drained_one_by_one_under_load_fail_no_call_and_no_registration() {
    let mut t = Topology::mesh(Store::Redis, 2, 3, &static_config(3478), Flags::default()).await;
    let (stop, running) = tokio::sync::watch::channel(false);
    let load = closed_loop(pairs(&t, 8).await, running);
    let restarts = async {
        let mut registered = 0;
        for replica in 0..t.signaling.len() {
            // A rolling update: SIGTERM, a clean exit within the grace period, and a new pod
            // at the same address.
            let code = t.signaling[replica]
                .terminate(Duration::from_secs(15))
                .await;
            assert_eq!(code, Some(0), "replica {replica} drains and exits cleanly");
            t.restart_signaling(replica).await;
            // As a rollout waits for the new pod (minReadySeconds), before the next.
            for gateway in &t.gateways {
                let url = gateway.url("http", "/metrics");
                testkit::eventually(
                    Duration::from_secs(15),
                    "the gateways to attach to the new replica",
                    || {
                        let url = url.clone();
                        async move {
                            let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
                            (testkit::metric(&body, "gateway_signaling_replicas") == Some(3.0))
                                .then_some(())
                        }
                    },
                )
                .await;
            }
            // Registrations keep working throughout.
            for _ in 0..3 {
                let mut browser = t.browser().await;
                browser.register_ok(&format!("newcomer-{registered}")).await;
                registered += 1;
            }
        }
        let _ = stop.send(true);
        registered
    };
    let (cycles, registered) = tokio::join!(load, restarts);
    assert!(cycles > 0, "calls were made during the restarts");
    println!("{cycles} calls and {registered} registrations while every replica was replaced");
}

/// What the store's outage does, and that everything comes back: a registration and a call
/// are refused with `unavailable` meanwhile, sockets stay up, and afterwards every live
/// session's name is its own and its call goes on.
async fn redis_stopped_for_ten_seconds(keep_data: bool) {
    let mut t = Topology::start(Store::Redis, &static_config(3478), Flags::default()).await;
    let mut call = Call::start(&t, 0).await;
    call.carries_candidates(1).await;
    let mut idle = t.browser().await;
    idle.register_ok("idle").await;

    let redis = t.redis.as_mut().expect("a Redis");
    if keep_data {
        redis.stop_keeping_data().await;
    } else {
        redis.stop_losing_data().await;
    }
    let started = Instant::now();
    let mut refused_newcomer = t.browser().await;
    let refused = refused_newcomer.register("newcomer").await;
    assert_eq!(
        (refused["response"].as_str(), refused["reason"].as_str()),
        (Some("rejected"), Some("unavailable")),
        "{refused}"
    );
    idle.send(json!({"id": "call", "to": "newcomer", "sdpOffer": "o"}))
        .await;
    let refused = idle.expect("callResponse").await;
    assert_eq!(refused["reason"], "unavailable", "{refused}");
    for signaling in &t.signaling {
        let ready = reqwest::get(signaling.url("http", "/readyz"))
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 503);
        let body = ready.text().await.expect("body");
        assert!(body.contains("redis unreachable"), "{body}");
    }
    // The outage lasts ten seconds (the fault itself, not a wait for something to happen).
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    t.redis.as_mut().expect("a Redis").restart().await;

    // Everything comes back by itself: readiness, the names, the call.
    for signaling in &t.signaling {
        let url = signaling.url("http", "/readyz");
        testkit::eventually(Duration::from_secs(15), "signaling ready again", || {
            let url = url.clone();
            async move { (reqwest::get(&url).await.ok()?.status() == 200).then_some(()) }
        })
        .await;
    }
    // An empty Redis: the gateways assert their sessions' names and calls again by themselves.
    if !keep_data {
        for gateway in &t.gateways {
            testkit::eventually(
                Duration::from_secs(15),
                "the gateways to assert their sessions again",
                || {
                    let done = gateway.logs().contains("asserting names and calls again");
                    async move { done.then_some(()) }
                },
            )
            .await;
        }
    }
    testkit::eventually(
        Duration::from_secs(15),
        "every live name to be its owner's",
        || async {
            let mut stranger = t.browser().await;
            let reply = stranger.register("idle").await;
            (reply["reason"] == "name_taken").then_some(())
        },
    )
    .await;
    held(&t, &call.caller_name).await;
    held(&t, &call.callee_name).await;
    call.carries_candidates(10).await;
    // New names are taken again once the service is back (a page retries `unavailable`).
    let mut newcomer = testkit::eventually(Duration::from_secs(10), "a new name", || async {
        let mut browser = t.browser_on(1).await;
        let reply = browser.register("newcomer").await;
        if reply["reason"] == "unavailable" {
            return None;
        }
        assert_eq!(reply["response"], "accepted", "{reply}");
        Some(browser)
    })
    .await;
    idle.send(json!({"id": "call", "to": "newcomer", "sdpOffer": "o"}))
        .await;
    newcomer.expect("incomingCall").await;
    call.hangs_up().await;
}

#[tokio::test]
async fn redis_stopped_and_started_with_its_data_loses_nothing() {
    redis_stopped_for_ten_seconds(true).await;
}

#[tokio::test]
async fn redis_started_empty_gets_every_live_name_and_call_back() {
    redis_stopped_for_ten_seconds(false).await;
}

#[tokio::test]
async fn a_page_whose_gateway_dies_rejoins_its_call_through_another() {
    let mut t = Topology::mesh(Store::Redis, 2, 2, &static_config(3478), Flags::default()).await;
    let mut alice = t.browser_on(0).await;
    let alice_token = alice.register_ok("alice").await["resumeToken"]
        .as_str()
        .expect("a token")
        .to_owned();
    let mut bob = t.browser_on(1).await;
    bob.register_ok("bob").await;
    let (_, started) = alice.call_answered("alice", &mut bob, "bob").await;
    let call_id = started["callId"].clone();

    // Alice's gateway dies with her socket; Bob is not told the call ended.
    t.gateways[0].kill().await;
    drop(alice);
    bob.expect_nothing_pending().await;
    // Bob's candidates meanwhile are kept for her.
    bob.send(json!({"id": "onIceCandidate", "candidate": candidate(7)}))
        .await;
    // Her page reconnects through the other gateway, resumes her name, rejoins the call.
    let mut again = t.browser_on(1).await;
    again
        .send(json!({"id": "register", "name": "alice", "resumeToken": alice_token, "rejoin": call_id, "extensions": true}))
        .await;
    let reply = again.expect("registerResponse").await;
    assert_eq!(reply["response"], "accepted", "{reply}");
    assert_eq!(reply["call"]["callId"], call_id, "{reply}");
    assert_eq!(reply["call"]["peer"], "bob", "{reply}");
    expect_candidate(&mut again, 7).await;
    again
        .send(json!({"id": "onIceCandidate", "candidate": candidate(8)}))
        .await;
    expect_candidate(&mut bob, 8).await;
    again.send(json!({"id": "stop"})).await;
    assert_eq!(bob.expect("stopCommunication").await["reason"], "hang_up");
}
