//! Calls that outlive their credentials and their TURN server: renegotiation (`negotiate`) in the
//! protocol, and ICE restarts by real pages in real Chromium through a real TURN server.
//!
//! The TURN server is coturn with TURN REST credentials (`use-auth-secret`), which ends an
//! allocation when its credential expires, as STUNner refuses an expired credential on the
//! allocation's next request: a relay made with a credential cannot outlive it. Allocations
//! are granted for 10 s (`--max-allocate-lifetime`), so Chromium refreshes them every few
//! seconds, and credentials live 20 s: a minute-long call goes through several of each.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::{
    Browser as Socket, Coturn, Stack,
    coturn::TurnAuth,
    stack::{Flags, ephemeral_config, static_config},
    webdriver::{Browser, Driver},
};

use crate::browser::{MEDIA, call_up, frames_decoded, frames_rise};

const SECRET: &str = "restart-secret";

/// A coturn whose allocations are short-lived, for [`SECRET`].
async fn short_lived_turn(port: u16) -> Coturn {
    Coturn::start_with(
        port,
        TurnAuth::Secret(SECRET),
        &[
            "--max-allocate-lifetime=10",
            "--channel-lifetime=30",
            "--permission-lifetime=30",
            "--verbose",
        ],
    )
    .await
}

/// Two pages in a call through `stack`, media flowing.
async fn in_call(stack: &Stack, driver: &Driver) -> (Browser, Browser) {
    let alice = driver.browser().await;
    let bob = driver.browser().await;
    let page = stack.page_url();
    call_up((&alice, "alice", &page), (&bob, "bob", &page)).await;
    for page in [&alice, &bob] {
        page.wait_for(
            MEDIA,
            "remote video",
            "return document.getElementById('videoOutput').videoWidth > 0",
        )
        .await;
        assert_eq!(
            page.eval("return app.negotiation !== null").await,
            json!(true),
            "both pages can renegotiate"
        );
    }
    (alice, bob)
}

/// TURN usernames coturn allocated for.
fn allocated_usernames(turn: &Coturn) -> std::collections::BTreeSet<String> {
    turn.logs()
        .lines()
        .iter()
        .filter(|line| line.contains("ALLOCATE processed, success"))
        .filter_map(|line| {
            let (_, rest) = line.split_once("user <")?;
            Some(rest.split('>').next()?.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_outlives_its_credentials() {
    let turn = short_lived_turn(testkit::free_port()).await;
    let stack = Stack::start(
        &ephemeral_config(turn.port(), SECRET),
        Flags {
            ice_config: &["--default-ttl", "20s"],
            ..Default::default()
        },
    )
    .await;
    let driver = Driver::start().await;
    let (alice, bob) = in_call(&stack, &driver).await;

    // Three credential lifetimes: frames keep being decoded on both sides throughout.
    let until = Instant::now() + Duration::from_secs(65);
    let mut last = [frames_decoded(&alice).await, frames_decoded(&bob).await];
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = [frames_decoded(&alice).await, frames_decoded(&bob).await];
        assert!(
            now[0] > last[0] && now[1] > last[1],
            "frames stopped: {last:?} -> {now:?}"
        );
        last = now;
    }
    // …over new allocations made with new credentials.
    let usernames = allocated_usernames(&turn);
    assert!(
        usernames.len() >= 6,
        "allocations under {usernames:?}: {:?}",
        turn.logs()
            .lines()
            .iter()
            .filter(|l| l.contains("ALLOCATE") || l.contains("expired") || l.contains("401"))
            .take(30)
            .collect::<Vec<_>>()
    );
    let restarts = alice.eval("return app.restarts").await;
    println!(
        "usernames allocated for: {}; alice's restarts: {restarts}",
        usernames.len()
    );
    alice.quit().await;
    bob.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_turn_server_is_replaced_without_hanging_up() {
    let port = testkit::free_port();
    let turn = short_lived_turn(port).await;
    let stack = Stack::start(&ephemeral_config(port, SECRET), Flags::default()).await;
    let driver = Driver::start().await;
    let (alice, bob) = in_call(&stack, &driver).await;
    frames_rise(&bob, "frames before the TURN server is lost").await;

    // A new TURN server on the same address, as a new STUNner pod behind the same load
    // balancer: every allocation of the old one is gone.
    turn.kill().await;
    let killed = Instant::now();
    let _turn = short_lived_turn(port).await;
    let before = [frames_decoded(&alice).await, frames_decoded(&bob).await];
    let resumed = testkit::until(Duration::from_secs(30), || async {
        let now = [frames_decoded(&alice).await, frames_decoded(&bob).await];
        // Rising again by more than what was in flight at the kill.
        (now[0] > before[0] + 10 && now[1] > before[1] + 10).then_some(())
    })
    .await;
    if resumed.is_none() {
        for page in [&alice, &bob] {
            let log = page
                .eval("return document.getElementById('console').innerText.slice(-3000)")
                .await;
            eprintln!("--- page log ---\n{}", log.as_str().unwrap_or_default());
        }
        panic!("video did not resume within 30 s of the TURN server's loss");
    }
    println!(
        "video resumed {:?} after the TURN server was killed",
        killed.elapsed()
    );
    for page in [&alice, &bob] {
        assert_eq!(page.eval("return app.callState").await, json!("In call"));
    }
    // The pages said so: a recovered restart after a failure, counted by the gateway.
    let sample = "gateway_ice_restarts_total{cause=\"failure\",outcome=\"recovered\"}";
    testkit::eventually(
        Duration::from_secs(20),
        "a recovered restart in the gateway's metrics",
        || async {
            let (_, body) = stack.gateway.get("http", "/metrics").await?;
            (testkit::metric(&body, sample)? >= 1.0).then_some(())
        },
    )
    .await;
    alice.quit().await;
    bob.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn both_pages_restarting_at_once_settle_on_one_negotiation() {
    let turn = short_lived_turn(testkit::free_port()).await;
    let stack = Stack::start(&ephemeral_config(turn.port(), SECRET), Flags::default()).await;
    let driver = Driver::start().await;
    let (alice, bob) = in_call(&stack, &driver).await;
    frames_rise(&bob, "frames before the glare").await;
    // Both at once: each makes an offer; the polite callee gives way.
    let restart = "restartIce('network'); return true";
    let (a, b) = tokio::join!(alice.eval(restart), bob.eval(restart));
    assert_eq!((a, b), (json!(true), json!(true)));
    for page in [&alice, &bob] {
        page.wait_for(
            MEDIA,
            "the negotiation to settle",
            "return app.pc.signalingState === 'stable' && app.restart === null",
        )
        .await;
    }
    frames_rise(&alice, "alice's video after the glare").await;
    frames_rise(&bob, "bob's video after the glare").await;
    alice.quit().await;
    bob.quit().await;
}

// === the protocol ===

async fn page(stack: &Stack, name: &str, extensions: bool) -> Socket {
    let mut socket = stack.browser().await;
    let reply = if extensions {
        socket.register(name).await
    } else {
        socket.register_as_tutorial(name).await
    };
    assert_eq!(reply["response"], "accepted", "{reply}");
    socket
}

/// Alice calls Bob, who accepts: alice's `callResponse`, bob's `startCommunication`.
async fn call(alice: &mut Socket, bob: &mut Socket) -> (serde_json::Value, serde_json::Value) {
    alice.call_answered("alice", bob, "bob").await
}

fn negotiate(kind: &str, sdp: &str) -> serde_json::Value {
    json!({"id": "negotiate", "description": {"type": kind, "sdp": sdp}})
}

async fn refused(socket: &mut Socket, message: serde_json::Value) -> String {
    socket.send(message).await;
    let reply = socket.expect("error").await;
    reply["reason"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn descriptions_go_only_to_the_other_party_of_a_call_that_is_up() {
    let stack = Stack::start(&static_config(3478), Flags::default()).await;
    let mut alice = page(&stack, "alice", true).await;
    let mut bob = page(&stack, "bob", true).await;
    let mut carol = page(&stack, "carol", true).await;
    // Outside a call.
    assert_eq!(
        refused(&mut alice, negotiate("offer", "v=0")).await,
        "not_in_call"
    );
    let (accepted, started) = call(&mut alice, &mut bob).await;
    // Roles for a collision: the caller goes first, the callee gives way.
    assert_eq!(accepted["negotiation"], json!({"polite": false}));
    assert_eq!(started["negotiation"], json!({"polite": true}));
    let call_id = started["callId"].clone();

    alice.send(negotiate("offer", "v=0 restart")).await;
    let relayed = bob.expect("negotiate").await;
    assert_eq!(
        relayed,
        json!({"id": "negotiate", "callId": call_id, "description": {"type": "offer", "sdp": "v=0 restart"}})
    );
    bob.send(negotiate("answer", "v=0 answer")).await;
    assert_eq!(
        alice.expect("negotiate").await["description"],
        json!({"type": "answer", "sdp": "v=0 answer"})
    );
    // A stranger, malformed descriptions: refused, nothing else disturbed.
    assert_eq!(
        refused(&mut carol, negotiate("offer", "v=0")).await,
        "not_in_call"
    );
    for bad in [
        negotiate("pranswer", "v=0"),
        json!({"id": "negotiate", "description": {"type": "offer"}}),
        negotiate("offer", " "),
    ] {
        assert_eq!(refused(&mut alice, bad).await, "invalid_message");
    }
    alice.expect_nothing_pending().await;
    bob.expect_nothing_pending().await;
    carol.expect_nothing_pending().await;
    // A flood is throttled (ten at once, one a second after that).
    let mut limited = 0;
    for n in 0..30 {
        alice.send(negotiate("offer", &format!("v=0 {n}"))).await;
    }
    // Answered after everything sent before it: the refusals of the flood come first.
    alice
        .send(json!({"id": "incomingCallResponse", "from": "~nobody", "callResponse": "reject"}))
        .await;
    loop {
        let reply = alice.recv().await;
        match reply["reason"].as_str() {
            Some("rate_limited") => limited += 1,
            Some("no_such_call") => break,
            _ => panic!("{reply}"),
        }
    }
    assert!(limited >= 15, "only {limited} of 30 throttled");
    // The call goes on.
    alice
        .send(json!({"id": "onIceCandidate", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}))
        .await;
    loop {
        let message = bob.recv().await;
        if message["id"] == "iceCandidate" {
            break;
        }
        assert_eq!(message["id"], "negotiate", "{message}");
    }
}

#[tokio::test]
async fn the_tutorials_page_is_never_sent_a_description() {
    let stack = Stack::start(&static_config(3478), Flags::default()).await;
    let mut alice = page(&stack, "alice", true).await;
    // Bob's page is the tutorial's: it never says it speaks the extensions.
    let mut bob = page(&stack, "bob", false).await;
    let (accepted, started) = call(&mut alice, &mut bob).await;
    assert!(accepted.get("negotiation").is_none(), "{accepted}");
    assert!(started.get("negotiation").is_none(), "{started}");
    assert_eq!(
        refused(&mut alice, negotiate("offer", "v=0")).await,
        "not_supported"
    );
    // What alice sends next reaches bob next: no description went before it.
    alice
        .send(json!({"id": "onIceCandidate", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}))
        .await;
    bob.expect("iceCandidate").await;
}
