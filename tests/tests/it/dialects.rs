//! The two dialects of the browser protocol: a page that never declared the extensions (the
//! tutorial's own page) is only ever sent the six messages it understands, whatever it or its
//! peer does; our page, which declares them, gets the rest too.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::{
    Browser, Stack,
    stack::{Flags, ephemeral_config},
};

/// What the tutorial's page handles; anything else it logs as "Unrecognized message".
const TUTORIAL: [&str; 6] = [
    "registerResponse",
    "callResponse",
    "incomingCall",
    "startCommunication",
    "stopCommunication",
    "iceCandidate",
];

/// The tutorial's page: its exact messages, and a failed test for anything it would not
/// understand.
struct TutorialPage(Browser);

impl TutorialPage {
    async fn open(stack: &Stack, name: &str) -> Self {
        let mut page = TutorialPage(stack.browser().await);
        page.0.send(json!({"id": "register", "name": name})).await;
        let reply = page.expect("registerResponse").await;
        assert_eq!(reply["response"], "accepted", "{reply}");
        page
    }

    async fn recv(&mut self) -> Value {
        let message = self.0.recv().await;
        let id = message["id"].as_str().unwrap_or_default();
        assert!(
            TUTORIAL.contains(&id),
            "the tutorial's page would log `Unrecognized message`: {message}"
        );
        message
    }

    async fn expect(&mut self, id: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["id"], id, "{message}");
        message
    }

    /// Everything sent to this page before now has arrived (and was understood): a call to
    /// nobody is refused at once, after whatever was queued.
    async fn settle(&mut self) {
        self.0
            .send(json!({"id": "call", "to": "nobody-at-all", "sdpOffer": "v=0"}))
            .await;
        loop {
            let message = self.recv().await;
            if message["id"] == "callResponse" && message["response"] == "rejected" {
                return;
            }
        }
    }

    fn candidate(port: u16) -> Value {
        json!({"id": "onIceCandidate", "candidate": {
            "candidate": format!("candidate:1 1 udp 1 127.0.0.1 {port} typ relay"),
            "sdpMid": "0", "sdpMLineIndex": 0}})
    }
}

#[tokio::test]
async fn the_tutorials_page_is_only_sent_what_it_understands() {
    // Credentials that need refreshing within seconds: refreshed for pages that can apply them.
    let stack = Stack::start(
        &ephemeral_config(3478, "s3cret"),
        Flags {
            ice_config: &["--default-ttl", "3s"],
            ..Default::default()
        },
    )
    .await;
    let mut alice = TutorialPage::open(&stack, "alice").await;
    let mut bob = TutorialPage::open(&stack, "bob").await;
    let mut ours = stack.browser().await;
    ours.register_ok("carol").await;

    // An instant refusal, then the candidates the page had already queued: the tutorial's server
    // ignored those; so do we, without an `error` the page cannot parse.
    alice
        .0
        .send(json!({"id": "call", "to": "nobody", "sdpOffer": "v=0"}))
        .await;
    alice.0.send(TutorialPage::candidate(40000)).await;
    alice.0.send(TutorialPage::candidate(40001)).await;
    assert_eq!(alice.expect("callResponse").await["response"], "rejected");
    // Malformed input and a flood: refused, counted, not answered in words the page lacks.
    alice.0.send_text("{not json").await;
    alice.0.send(json!({"id": "bogus"})).await;
    for port in 0..300 {
        alice.0.send(TutorialPage::candidate(port)).await;
    }
    // Past the moment a credential refresh is due: our page gets one, the tutorial's do not.
    let pushed = ours.recv_within(Duration::from_secs(10)).await;
    assert_eq!(pushed["id"], "iceConfiguration", "{pushed}");
    alice.settle().await;
    bob.settle().await;

    // A whole call, both pages the tutorial's.
    alice
        .0
        .send(json!({"id": "call", "to": "bob", "sdpOffer": "v=0 offer"}))
        .await;
    assert_eq!(bob.expect("incomingCall").await["from"], "alice");
    bob.0
        .send(json!({"id": "incomingCallResponse", "from": "alice", "callResponse": "accept", "sdpAnswer": "v=0 answer"}))
        .await;
    assert_eq!(alice.expect("callResponse").await["response"], "accepted");
    bob.expect("startCommunication").await;
    alice.0.send(TutorialPage::candidate(50000)).await;
    bob.expect("iceCandidate").await;
    bob.0.send(TutorialPage::candidate(50001)).await;
    alice.expect("iceCandidate").await;
    // Renegotiation is for pages that both speak it.
    alice
        .0
        .send(json!({"id": "negotiate", "description": {"type": "offer", "sdp": "v=0"}}))
        .await;
    bob.0.send(json!({"id": "stop"})).await;
    alice.expect("stopCommunication").await;
    alice.settle().await;
    bob.settle().await;

    // The gateway going away: our page is told to reconnect, the tutorial's page just sees the
    // socket close (it has no reconnect to do).
    stack.gateway.start_terminating().await;
    for page in [&mut alice.0, &mut bob.0] {
        let before_close = page.messages_until_closed().await;
        assert!(before_close.is_empty(), "{before_close:?}");
    }
    let before_close = ours.messages_until_closed().await;
    assert!(
        before_close.iter().any(|m| m["id"] == "reconnect"),
        "{before_close:?}"
    );
}
