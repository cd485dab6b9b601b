//! The browser protocol end to end: ice-config, signaling and gateway as real processes on
//! port 0, browsers as real WebSocket clients, and the exact messages both parties see.
//! (Over 300 lines: one scenario per function, the protocol's whole surface.)

use serde_json::{Value, json};
use testkit::{
    Browser, Stack,
    stack::{Flags, Launch, static_config},
    topology::{Store, Topology},
};
use tokio_tungstenite::tungstenite::Message;

async fn stack() -> Stack {
    Stack::start(&static_config(3478), Flags::default()).await
}

/// The services on `store`, with the default STUNner config (static credentials).
async fn topology(store: Store, flags: Flags<'_>) -> Topology {
    Topology::start(store, &static_config(3478), flags).await
}

fn candidate(n: u32) -> Value {
    json!({"candidate": format!("candidate:{n} 1 udp 2122260223 127.0.0.1 {} typ relay", 40000 + n),
           "sdpMid": "0", "sdpMLineIndex": 0})
}

async fn pair(stack: &Topology) -> (Browser, Browser) {
    let mut alice = stack.browser().await;
    let mut bob = stack.browser().await;
    alice.register_ok("alice").await;
    bob.register_ok("bob").await;
    (alice, bob)
}

/// Alice calls Bob (claiming to be somebody else: the server ignores the claim).
async fn ring(alice: &mut Browser, bob: &mut Browser) -> Value {
    alice
        .send(json!({"id": "call", "from": "mallory", "to": "bob", "sdpOffer": "v=0 offer"}))
        .await;
    let incoming = bob.expect("incomingCall").await;
    assert_eq!(
        incoming["from"], "alice",
        "the registered name, not the claim"
    );
    assert_eq!(incoming["sdpOffer"], "v=0 offer");
    incoming
}

async fn register_duplicate_and_invalid_names(store: Store) {
    let stack = topology(store, Flags::default()).await;
    let mut alice = stack.browser().await;
    let reply = alice.register("alice").await;
    assert_eq!(reply["response"], "accepted");
    assert_eq!(
        reply["iceConfiguration"],
        json!({"iceServers": [{"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "user-1", "credential": "pass-1"}],
               "iceTransportPolicy": "relay"})
    );
    assert_eq!(reply["resumeToken"].as_str().map(str::len), Some(32));

    let mut other = stack.browser().await;
    let reply = other.register("alice").await;
    assert_eq!(
        (
            reply["response"].as_str(),
            reply["reason"].as_str(),
            reply["message"].as_str()
        ),
        (
            Some("rejected"),
            Some("name_taken"),
            Some("the name alice is taken")
        )
    );
    for bad in ["", "a b", "x:y", &"n".repeat(65)] {
        let reply = other.register(bad).await;
        assert_eq!(
            (reply["response"].as_str(), reply["reason"].as_str()),
            (Some("rejected"), Some("invalid_name")),
            "{bad:?}: {reply}"
        );
    }
    let reply = alice.register("alice2").await;
    assert_eq!(reply["reason"], "already_registered");
    // The refused session can still take a free name.
    other.register_ok("carol").await;
}

async fn call_accept_candidates_and_hang_up(store: Store) {
    let stack = topology(store, Flags::default()).await;
    let (mut alice, mut bob) = pair(&stack).await;
    let incoming = ring(&mut alice, &mut bob).await;
    let call_id = incoming["callId"].clone();
    // One trace per call, shown to both parties on every message of the call.
    let trace_id = incoming["traceId"].clone();
    assert!(
        trace_id
            .as_str()
            .is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())),
        "{incoming}"
    );

    // Alice's candidates before Bob accepts are held back (his page has no peer connection yet).
    for n in 0..3 {
        alice
            .send(json!({"id": "onIceCandidate", "candidate": candidate(n)}))
            .await;
    }
    bob.expect_nothing_pending().await;

    bob.send(json!({"id": "incomingCallResponse", "from": "alice", "callResponse": "accept", "sdpAnswer": "v=0 answer"})).await;
    let response = alice.expect("callResponse").await;
    assert_eq!(
        response,
        json!({"id": "callResponse", "response": "accepted", "sdpAnswer": "v=0 answer", "callId": call_id, "traceId": trace_id, "negotiation": {"polite": false}})
    );
    assert_eq!(
        bob.expect("startCommunication").await,
        json!({"id": "startCommunication", "callId": call_id, "traceId": trace_id, "negotiation": {"polite": true}})
    );
    for n in 0..3 {
        assert_eq!(
            bob.expect("iceCandidate").await["candidate"],
            candidate(n),
            "in order"
        );
    }
    // After the answer, candidates flow at once, both ways.
    bob.send(json!({"id": "onIceCandidate", "candidate": candidate(10)}))
        .await;
    assert_eq!(
        alice.expect("iceCandidate").await["candidate"],
        candidate(10)
    );
    alice
        .send(json!({"id": "onIceCandidate", "candidate": candidate(11)}))
        .await;
    assert_eq!(bob.expect("iceCandidate").await["candidate"], candidate(11));

    alice.send(json!({"id": "stop"})).await;
    assert_eq!(
        bob.expect("stopCommunication").await,
        json!({"id": "stopCommunication", "message": "remote user hanged out", "reason": "hang_up", "callId": call_id, "traceId": trace_id})
    );
    alice.expect_nothing_pending().await;
}

async fn reject_busy_self_and_unknown(store: Store) {
    let stack = topology(store, Flags::default()).await;
    let (mut alice, mut bob) = pair(&stack).await;
    ring(&mut alice, &mut bob).await;
    bob.send(json!({"id": "incomingCallResponse", "from": "alice", "callResponse": "reject", "message": "user declined"})).await;
    let response = alice.expect("callResponse").await;
    assert_eq!(
        (
            response["response"].as_str(),
            response["reason"].as_str(),
            response["message"].as_str()
        ),
        (Some("rejected"), Some("declined"), Some("user declined"))
    );

    // Busy: Carol calling Bob during a call is answered by the server; Bob hears nothing.
    ring(&mut alice, &mut bob).await;
    let mut carol = stack.browser().await;
    carol.register_ok("carol").await;
    carol
        .send(json!({"id": "call", "to": "bob", "sdpOffer": "x"}))
        .await;
    let response = carol.expect("callResponse").await;
    assert_eq!(
        (response["reason"].as_str(), response["message"].as_str()),
        (Some("busy"), Some("User bob is busy"))
    );
    bob.expect_nothing_pending().await;

    // A second call while in one, a self-call, an unknown user.
    alice
        .send(json!({"id": "call", "to": "carol", "sdpOffer": "x"}))
        .await;
    assert_eq!(
        alice.expect("callResponse").await["reason"],
        "already_in_call"
    );
    carol
        .send(json!({"id": "call", "to": "carol", "sdpOffer": "x"}))
        .await;
    assert_eq!(carol.expect("callResponse").await["reason"], "self_call");
    carol
        .send(json!({"id": "call", "to": "dave", "sdpOffer": "x"}))
        .await;
    let response = carol.expect("callResponse").await;
    assert_eq!(
        (response["reason"].as_str(), response["message"].as_str()),
        (Some("user_not_found"), Some("User dave is not registered"))
    );

    // Calling before registering.
    let mut anon = stack.browser().await;
    anon.send(json!({"id": "call", "to": "bob", "sdpOffer": "x"}))
        .await;
    assert_eq!(
        anon.expect("callResponse").await["reason"],
        "not_registered"
    );
    // Answering a call that does not exist.
    carol.send(json!({"id": "incomingCallResponse", "from": "bob", "callResponse": "accept", "sdpAnswer": "y"})).await;
    assert_eq!(carol.expect("error").await["reason"], "no_such_call");
}

async fn an_unanswered_call_times_out(store: Store) {
    let stack = topology(
        store,
        Flags {
            signaling: &["--ring-timeout", "1s"],
            ..Default::default()
        },
    )
    .await;
    let (mut alice, mut bob) = pair(&stack).await;
    ring(&mut alice, &mut bob).await;
    let response = alice.expect("callResponse").await;
    assert_eq!(
        (
            response["response"].as_str(),
            response["reason"].as_str(),
            response["message"].as_str()
        ),
        (
            Some("rejected"),
            Some("timeout"),
            Some("User bob did not answer")
        )
    );
    let stop = bob.expect("stopCommunication").await;
    assert_eq!(stop["reason"], "timeout");
    // Both are free again.
    ring(&mut alice, &mut bob).await;
}

async fn disconnect_mid_call_and_resume(store: Store) {
    let stack = topology(store, Flags::default()).await;
    let mut alice = stack.browser().await;
    let token = alice.register_ok("alice").await["resumeToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut bob = stack.browser().await;
    bob.register_ok("bob").await;
    ring(&mut alice, &mut bob).await;
    bob.send(json!({"id": "incomingCallResponse", "from": "alice", "callResponse": "accept", "sdpAnswer": "a"})).await;
    alice.expect("callResponse").await;
    bob.expect("startCommunication").await;

    alice.close().await;
    let stop = bob.expect("stopCommunication").await;
    assert_eq!(
        (stop["reason"].as_str(), stop["message"].as_str()),
        (Some("peer_disconnected"), Some("remote user disconnected"))
    );

    // The name is kept for its owner: a stranger cannot take it, the token can.
    let mut stranger = stack.browser().await;
    assert_eq!(stranger.register("alice").await["reason"], "name_taken");
    let mut forged = stack.browser().await;
    forged
        .send(json!({"id": "register", "name": "alice", "resumeToken": "0".repeat(32), "extensions": true}))
        .await;
    assert_eq!(
        forged.expect("registerResponse").await["reason"],
        "name_taken"
    );
    let mut again = stack.browser().await;
    again
        .send(json!({"id": "register", "name": "alice", "resumeToken": token, "extensions": true}))
        .await;
    let reply = again.expect("registerResponse").await;
    assert_eq!(reply["response"], "accepted", "{reply}");
    // Every resume rotates the token.
    let rotated = reply["resumeToken"].as_str().expect("a token");
    assert_eq!(rotated.len(), 32);
    assert_ne!(rotated, token);
    // And calls reach the resumed session.
    bob.send(json!({"id": "call", "to": "alice", "sdpOffer": "o"}))
        .await;
    assert_eq!(again.expect("incomingCall").await["from"], "bob");
}

#[tokio::test]
async fn malformed_input_gets_an_error_and_the_session_stays_up() {
    let stack = stack().await;
    let mut browser = stack.browser().await;
    let cases = [
        ("{not json", "invalid_json"),
        ("[1,2]", "invalid_message"),
        (r#"{"name":"x"}"#, "invalid_message"),
        (r#"{"id":"dance"}"#, "unknown_id"),
        (r#"{"id":"register"}"#, "invalid_message"),
        (r#"{"id":"call","to":"bob"}"#, "invalid_message"),
        (
            r#"{"id":"incomingCallResponse","from":"a","callResponse":"maybe"}"#,
            "invalid_message",
        ),
        (
            r#"{"id":"incomingCallResponse","from":"a","callResponse":"accept"}"#,
            "invalid_message",
        ),
        (
            r#"{"id":"onIceCandidate","candidate":"text"}"#,
            "invalid_message",
        ),
        (r#"{"id":"onIceCandidate"}"#, "invalid_message"),
    ];
    for (text, reason) in cases {
        browser.send_text(text).await;
        let reply = browser.expect("error").await;
        assert_eq!(reply["reason"], reason, "{text}: {reply}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
    }
    browser.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(browser.expect("error").await["reason"], "invalid_message");
    browser
        .send(json!({"id": "onIceCandidate", "candidate": candidate(1)}))
        .await;
    assert_eq!(
        browser.expect("error").await["reason"],
        "not_in_call",
        "a candidate outside a call"
    );
    browser.register_ok("still-here").await;
}

#[tokio::test]
async fn oversized_frames_close_with_1009() {
    let stack = stack().await;
    let mut browser = stack.browser().await;
    let huge = format!(
        r#"{{"id":"call","to":"bob","sdpOffer":"{}"}}"#,
        "a".repeat(70 * 1024)
    );
    browser.send_text(&huge).await;
    let frame = browser.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009, "{frame:?}");
}

#[tokio::test]
async fn foreign_origins_are_refused() {
    let stack = stack().await;
    let url = stack.ws_url();
    let request = |origin: &str| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.as_str().into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header"));
        request
    };
    let refused = tokio_tungstenite::connect_async(request("https://evil.example")).await;
    let status = match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    };
    assert_eq!(status, 403);
    let own = format!("http://{}", stack.gateway.addr("http"));
    assert!(
        tokio_tungstenite::connect_async(request(&own))
            .await
            .is_ok(),
        "the page's own origin"
    );
}

#[tokio::test]
async fn a_flood_is_throttled() {
    let stack = Stack::start(
        &static_config(3478),
        Flags {
            gateway: &["--session-rate", "1", "--session-burst", "5"],
            ..Default::default()
        },
    )
    .await;
    let mut browser = stack.browser().await;
    for _ in 0..20 {
        browser.send(json!({"id": "stop"})).await;
    }
    let mut limited = 0;
    for _ in 0..20 {
        if browser.expect("error").await["reason"] == "rate_limited" {
            limited += 1;
        }
    }
    assert!(
        limited >= 14,
        "only {limited} of 20 throttled with a burst of 5"
    );
}

#[tokio::test]
async fn without_ice_config_registration_is_refused_and_reserves_nothing() {
    let mut stack = stack().await;
    // ice-config goes away: the name must not stay reserved by a failed registration.
    stack
        .ice_config
        .terminate(std::time::Duration::from_secs(10))
        .await;
    let mut alice = stack.browser().await;
    let reply = alice.register("alice").await;
    assert_eq!(
        (reply["response"].as_str(), reply["reason"].as_str()),
        (Some("rejected"), Some("ice_config_unavailable")),
        "{reply}"
    );

    // A second gateway on the same signaling, with a working ice-config, can take the name.
    let ice = Launch::ice_config(&stack.config()).start().await;
    let gateway = Launch::gateway(&ice.url("grpc", ""), &stack.signaling.url("grpc", ""))
        .start()
        .await;
    let mut other = Browser::connect(&format!("ws://{}/one2one", gateway.addr("http"))).await;
    other.register_ok("alice").await;
}

#[tokio::test]
async fn credentials_are_refreshed_before_they_expire() {
    let stack = Stack::start(
        &testkit::stack::ephemeral_config(3478, "refresh-secret"),
        Flags {
            ice_config: &["--default-ttl", "2s"],
            ..Default::default()
        },
    )
    .await;
    let mut alice = stack.browser().await;
    let first =
        alice.register_ok("alice").await["iceConfiguration"]["iceServers"][0]["username"].clone();
    let expiry = |username: &Value| -> u64 {
        username
            .as_str()
            .and_then(|u| u.split(':').next())
            .and_then(|e| e.parse().ok())
            .expect("<expiry>:<user>")
    };
    // Pushed at four fifths of the lifetime: fresh credentials, before the old ones expire.
    let pushed = alice.expect("iceConfiguration").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let renewed = pushed["iceConfiguration"]["iceServers"][0]["username"].clone();
    assert!(
        now <= expiry(&first),
        "pushed at {now}, after the expiry {}",
        expiry(&first)
    );
    assert!(
        expiry(&renewed) > expiry(&first),
        "{renewed} renews {first}"
    );
    assert!(renewed.as_str().is_some_and(|u| u.ends_with(":alice")));
    assert_eq!(pushed["iceConfiguration"]["iceTransportPolicy"], "relay");
    // And again: refreshing keeps going.
    alice.expect("iceConfiguration").await;
}

#[tokio::test]
async fn a_silent_browser_is_closed_by_ping_liveness() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start(
        &static_config(3478),
        Flags {
            gateway: &["--ping-interval", "200ms"],
            ..Default::default()
        },
    )
    .await;
    // A raw socket: after the handshake it never answers pings, as a vanished browser.
    let mut tcp = tokio::net::TcpStream::connect(stack.gateway.addr("http"))
        .await
        .expect("connect");
    let request = format!(
        "GET /one2one HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        stack.gateway.addr("http")
    );
    tcp.write_all(request.as_bytes()).await.expect("handshake");
    let mut received = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut received),
    )
    .await
    .expect("the server closes the connection")
    .expect("read");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    let frames = &received[text.find("\r\n\r\n").expect("headers end") + 4..];
    assert_eq!(frames.first(), Some(&0x89), "a ping first: {frames:?}");
    // The close frame: 0x88, length, then the code 1008 (policy) and "no pong".
    let close = frames
        .windows(2)
        .position(|w| w[0] == 0x88)
        .expect("a close frame");
    assert_eq!(&frames[close + 2..close + 4], &1008u16.to_be_bytes());
    assert_eq!(&frames[close + 4..], b"no pong");
}

async fn a_browser_that_stops_reading_is_closed_not_buffered_forever(store: Store) {
    let stack = topology(
        store,
        Flags {
            gateway: &[
                "--session-queue",
                "8",
                "--session-rate",
                "1000000",
                "--session-burst",
                "1000000",
            ],
            ..Default::default()
        },
    )
    .await;
    let (mut alice, mut bob) = pair(&stack).await;
    ring(&mut alice, &mut bob).await;
    bob.send(json!({"id": "incomingCallResponse", "from": "alice", "callResponse": "accept", "sdpAnswer": "a"})).await;
    bob.expect("startCommunication").await;
    // Alice stops reading; Bob floods her with candidates until her gateway gives up on her.
    let big = json!({"id": "onIceCandidate", "candidate": {"candidate": "x".repeat(4000), "sdpMid": "0", "sdpMLineIndex": 0}});
    let stop = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            // Small rounds: once alice is cut off, each further candidate earns bob a
            // `not_in_call` error, and his own queue is only 8 deep in this test.
            for _ in 0..4 {
                bob.send(big.clone()).await;
            }
            if let Some(stop) = bob.expect_nothing_pending_or_stop().await {
                return stop;
            }
        }
    })
    .await
    .expect("alice is cut off within 30s");
    assert_eq!(stop["reason"], "peer_disconnected", "{stop}");
    // Alice's connection ends once she reads what was queued. The policy close is sent, but a
    // reader that stopped reading cannot be promised to receive it (the connection may end
    // without it); when it arrives, it says why.
    if let Some(frame) = alice.closed().await {
        assert_eq!(
            (u16::from(frame.code), frame.reason.as_str()),
            (1008, "too slow reading messages")
        );
    }
}

async fn a_page_traceparent_is_continued(store: Store) {
    let stack = topology(store, Flags::default()).await;
    let (mut alice, mut bob) = pair(&stack).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    alice
        .send(json!({"id": "call", "to": "bob", "sdpOffer": "o", "traceparent": traceparent}))
        .await;
    assert_eq!(
        bob.expect("incomingCall").await["traceId"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    // A busy refusal is answered under the refused call's own trace.
    let mut carol = stack.browser().await;
    carol.register_ok("carol").await;
    carol.send(json!({"id": "call", "to": "bob", "sdpOffer": "o", "traceparent": "00-11111111111111111111111111111111-2222222222222222-01"})).await;
    let busy = carol.expect("callResponse").await;
    assert_eq!(
        (busy["reason"].as_str(), busy["traceId"].as_str()),
        (Some("busy"), Some("11111111111111111111111111111111"))
    );
    // A malformed one is replaced by a fresh trace.
    bob.send(json!({"id": "incomingCallResponse", "from": "alice", "callResponse": "reject"}))
        .await;
    alice.expect("callResponse").await;
    alice
        .send(json!({"id": "call", "to": "bob", "sdpOffer": "o", "traceparent": "garbage"}))
        .await;
    let fresh = bob.expect("incomingCall").await["traceId"].clone();
    assert!(
        fresh
            .as_str()
            .is_some_and(|t| t.len() == 32 && t != "4bf92f3577b34da6a3ce929d0e0e4736"),
        "{fresh}"
    );
}

#[tokio::test]
async fn candidates_keep_flowing_while_an_ice_config_request_hangs() {
    let stack = Topology::start(
        Store::Memory,
        &testkit::stack::ephemeral_config(3478, "hang-secret"),
        Flags {
            ice_config: &["--default-ttl", "2s"],
            ..Default::default()
        },
    )
    .await;
    let (mut alice, mut bob) = pair(&stack).await;
    ring(&mut alice, &mut bob).await;
    bob.send(json!({"id": "incomingCallResponse", "from": "alice", "callResponse": "accept", "sdpAnswer": "a"})).await;
    alice.expect("callResponse").await;
    bob.expect("startCommunication").await;

    // ice-config freezes: the credential refreshes (due at 4/5 of 2 s) hang until their
    // 3 s request timeout.
    stack.ice_config.freeze().await;
    testkit::eventually(
        std::time::Duration::from_secs(10),
        "both credential refreshes to start",
        || {
            let started = stack.gateways[0]
                .logs()
                .lines()
                .iter()
                .filter(|line| line.contains("refreshing credentials"))
                .count();
            async move { (started >= 2).then_some(()) }
        },
    )
    .await;
    // (A refresh that completed just before the freeze may still be pushed meanwhile.)
    bob.send(json!({"id": "onIceCandidate", "candidate": candidate(1)}))
        .await;
    assert_eq!(next_candidate(&mut alice).await, candidate(1));
    alice
        .send(json!({"id": "onIceCandidate", "candidate": candidate(2)}))
        .await;
    assert_eq!(next_candidate(&mut bob).await, candidate(2));
    assert!(
        !stack.gateways[0]
            .logs()
            .contains("credential refresh failed"),
        "the refreshes were still waiting on ice-config when the candidates went through"
    );
    // They were really in flight: they fail by themselves, and are retried once ice-config is
    // back.
    testkit::eventually(
        std::time::Duration::from_secs(10),
        "the hanging refreshes to give up",
        || {
            let failed = stack.gateways[0]
                .logs()
                .contains("credential refresh failed");
            async move { failed.then_some(()) }
        },
    )
    .await;
    stack.ice_config.thaw().await;
    alice.expect("iceConfiguration").await;
}

/// The protocol tests above that exercise signaling, on every store: one replica in memory;
/// two replicas on Redis; three on a Redis Cluster (the two parties of each call always on
/// different gateways and different replicas).
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $test() {
                super::$test(testkit::topology::Store::Memory).await
            })*
        }
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

on_every_store!(
    register_duplicate_and_invalid_names,
    call_accept_candidates_and_hang_up,
    reject_busy_self_and_unknown,
    an_unanswered_call_times_out,
    disconnect_mid_call_and_resume,
    a_browser_that_stops_reading_is_closed_not_buffered_forever,
    a_page_traceparent_is_continued,
);

/// The next candidate `browser` is sent, past any credential refresh pushed meanwhile.
async fn next_candidate(browser: &mut Browser) -> Value {
    loop {
        let message = browser.recv().await;
        if message["id"] != "iceConfiguration" {
            assert_eq!(message["id"], "iceCandidate", "{message}");
            return message["candidate"].clone();
        }
    }
}

/// As the tutorial's server with STUNNER_NAMESPACE / STUNNER_GATEWAY / STUNNER_LISTENER: browsers
/// get only the chosen Gateway of the several ice-config knows.
#[tokio::test]
async fn the_gateway_hands_out_only_its_stunner_gateway() {
    let two = r#"{"version":"v1","items":[
     {"version":"v1","admin":{"name":"stunner/udp-gateway"},"auth":{"type":"static","credentials":{"username":"u","password":"p"}},
      "listeners":[{"name":"stunner/udp-gateway/udp-listener","protocol":"TURN-UDP","public_address":"198.51.100.1","public_port":3478}]},
     {"version":"v1","admin":{"name":"other/tcp-gateway"},"auth":{"type":"static","credentials":{"username":"u","password":"p"}},
      "listeners":[{"name":"other/tcp-gateway/tcp-listener","protocol":"TURN-TCP","public_address":"198.51.100.2","public_port":443},
                   {"name":"other/tcp-gateway/spare","protocol":"TURN-TCP","public_address":"198.51.100.3","public_port":443}]}]}"#;
    let urls = |reply: &Value| testkit::ice_urls(&reply["iceConfiguration"]);
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Env, &[&str]); 3] = [
        (
            &[],
            &[
                "turn:198.51.100.1:3478?transport=udp",
                "turn:198.51.100.2:443?transport=tcp",
                "turn:198.51.100.3:443?transport=tcp",
            ],
        ),
        (
            &[("STUNNER_NAMESPACE", "other")],
            &[
                "turn:198.51.100.2:443?transport=tcp",
                "turn:198.51.100.3:443?transport=tcp",
            ],
        ),
        (
            &[
                ("STUNNER_NAMESPACE", "other"),
                ("STUNNER_GATEWAY", "tcp-gateway"),
                ("STUNNER_LISTENER", "tcp-listener"),
            ],
            &["turn:198.51.100.2:443?transport=tcp"],
        ),
    ];
    for (env, expected) in cases {
        let stack = Stack::start(
            two,
            Flags {
                env,
                ..Default::default()
            },
        )
        .await;
        let mut alice = stack.browser().await;
        let reply = alice.register_ok("alice").await;
        assert_eq!(urls(&reply), expected, "{env:?}");
    }
}
