//! Hostile clients and unlucky operators, reproduced as they were found: each test drives the
//! real binaries the way the attack or the accident did, and checks the guarantee it broke.
//!
//! - [`sessions`]: browsers that never read, flood control frames, break the protocol, or
//!   close; what the close codes say; names at the moments resume protects them;
//! - [`stalls`]: a frozen signaling replica under a flood, and readiness;
//! - [`storms`]: thousands of registrations at once, and silent connections (slowloris);
//! - [`trust`]: who may call the services' gRPC ports, and what a name may write to the logs.

mod sessions;
mod stalls;
mod storms;
mod trust;

use std::time::Duration;

use serde_json::{Value, json};
use testkit::Browser;

/// A trickle ICE candidate of about `bytes` bytes.
fn big_candidate(bytes: usize) -> Value {
    json!({"id": "onIceCandidate", "candidate": {
        "candidate": format!("candidate:1 1 udp 2122260223 127.0.0.1 40000 typ relay {}", "x".repeat(bytes)),
        "sdpMid": "0", "sdpMLineIndex": 0}})
}

/// Registers `name` on `browser` as soon as it is free (trying every 100 ms for `within`); the
/// reply.
async fn register_when_free(browser: &mut Browser, name: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let reply = browser.register(name).await;
        if reply["response"] == "accepted" {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} still not free after {within:?}: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two browsers of `stack` in a call: (caller, callee).
async fn in_call(stack: &testkit::Stack, caller: &str, callee: &str) -> (Browser, Browser) {
    let mut a = stack.browser().await;
    a.register_ok(caller).await;
    let mut b = stack.browser().await;
    b.register_ok(callee).await;
    let (accepted, _) = a.call_answered(caller, &mut b, callee).await;
    assert_eq!(accepted["response"], "accepted");
    (a, b)
}
