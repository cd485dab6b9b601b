//! One browser at a time: what a session does with a client that never reads, floods control
//! frames or breaks the protocol; the close codes it ends with; and names at the moments resume
//! protects them (findings 1, 3, 8 and the ping flood of 9).

use std::time::Duration;

use serde_json::json;
use testkit::{
    Browser, Stack,
    stack::{Flags, static_config},
};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::{
        CloseFrame,
        frame::{
            Frame,
            coding::{CloseCode, Data, OpCode},
        },
    },
};

use super::register_when_free;

/// Finding 1: register, then send about 200 frames whose unknown id used to be echoed back in
/// full, with a small receive buffer, and never read. The session stayed open (and its name
/// taken) at 106 s. It must end, by its writes stalling past their deadline or by the ping rule
/// (here two missed pings of 2 s), and the name come free after its grace period.
#[tokio::test]
async fn a_client_that_never_reads_loses_its_session_and_its_name() {
    let stack = Stack::start(
        &static_config(3478),
        Flags {
            gateway: &["--ping-interval", "2s"],
            signaling: &["--resume-grace", "1s"],
            ..Default::default()
        },
    )
    .await;
    let mut mallory = Browser::connect_with_receive_buffer(&stack.ws_url(), 4096).await;
    mallory.register_ok("mallory").await;
    let flood = json!({ "id": "x".repeat(60_000) }).to_string();
    let flooding = tokio::spawn(async move {
        for _ in 0..200 {
            if !mallory.try_send_text(&flood, Duration::from_secs(2)).await {
                break;
            }
        }
        // Kept open and unread until the test ends.
        mallory
    });
    let mut owner_to_be = stack.browser().await;
    register_when_free(&mut owner_to_be, "mallory", Duration::from_secs(30)).await;
    drop(flooding);
}

/// The error for an unknown id quotes only the start of it: replies stay small whatever a
/// client sends.
#[tokio::test]
async fn errors_do_not_echo_a_whole_frame() {
    let stack = Stack::start(&static_config(3478), Flags::default()).await;
    let mut browser = stack.browser().await;
    browser.send(json!({ "id": "x".repeat(60_000) })).await;
    let reply = browser.expect("error").await;
    assert_eq!(reply["reason"], "unknown_id");
    assert!(reply.to_string().len() < 512, "{}", reply.to_string().len());
}

/// Finding 3: register N, close, resume at 2 s, close at 8 s (with a 10 s grace): a stranger
/// took N at 10.6 s, freed by the first disconnect's timer while the second's grace ran to 18 s.
/// Scaled to a 4 s grace. Tokens also rotate on every resume: the old one is worthless.
#[tokio::test]
async fn a_resumed_name_is_kept_for_its_own_grace_period() {
    let stack = Stack::start(
        &static_config(3478),
        Flags {
            signaling: &["--resume-grace", "4s"],
            ..Default::default()
        },
    )
    .await;
    let token =
        |reply: &serde_json::Value| reply["resumeToken"].as_str().expect("token").to_owned();
    let mut owner = stack.browser().await;
    let first = token(&owner.register_ok("nina").await);
    let start = Instant::now();
    owner.close().await;

    let mut resumed = stack.browser().await;
    resumed
        .send(json!({"id": "register", "name": "nina", "resumeToken": first, "extensions": true}))
        .await;
    let reply = resumed.expect("registerResponse").await;
    assert_eq!(reply["response"], "accepted", "{reply}");
    let second = token(&reply);
    assert_ne!(second, first, "a resume rotates the token");
    assert_eq!(second.len(), 32);

    sleep_until(start + Duration::from_secs(2)).await;
    resumed.close().await;
    // The first disconnect's grace is over; the second's runs to about 6 s.
    sleep_until(start + Duration::from_millis(4_600)).await;
    let mut stranger = stack.browser().await;
    assert_eq!(stranger.register("nina").await["reason"], "name_taken");
    // The old token is no longer the name's.
    let mut replayed = stack.browser().await;
    replayed
        .send(json!({"id": "register", "name": "nina", "resumeToken": first, "extensions": true}))
        .await;
    assert_eq!(
        replayed.expect("registerResponse").await["reason"],
        "name_taken"
    );
    // The current one is.
    let mut back = stack.browser().await;
    back.send(json!({"id": "register", "name": "nina", "resumeToken": second, "extensions": true}))
        .await;
    let reply = back.expect("registerResponse").await;
    assert_eq!(reply["response"], "accepted", "{reply}");
    assert_ne!(token(&reply), second);
}

fn raw(opcode: OpCode, payload: &[u8]) -> Message {
    Message::Frame(Frame::message(payload.to_vec(), opcode, true))
}

/// Finding 8: invalid UTF-8 and protocol violations are closed with 1007 and 1002 (not a
/// dropped connection); a browser's own close is answered.
#[tokio::test]
async fn protocol_violations_and_closes_get_their_close_codes() {
    let stack = Stack::start(&static_config(3478), Flags::default()).await;

    let mut browser = stack.browser().await;
    browser
        .send_raw(raw(OpCode::Data(Data::Text), &[b'{', 0xff, 0xfe, b'}']))
        .await;
    let frame = browser.closed().await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Invalid, "{frame:?}");

    let mut browser = stack.browser().await;
    browser
        .send_raw(raw(OpCode::Data(Data::Reserved(3)), b"?"))
        .await;
    let frame = browser.closed().await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Protocol, "{frame:?}");

    let mut browser = stack.browser().await;
    browser.register_ok("leaving").await;
    browser
        .send_raw(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await;
    let frame = browser.closed().await.expect("the close answered");
    assert_eq!(frame.code, CloseCode::Normal, "{frame:?}");
}

/// Finding 8: on SIGTERM every browser is told to reconnect and gets 1001, not a bare EOF.
#[tokio::test]
async fn every_browser_gets_1001_when_the_gateway_stops() {
    let mut stack = Stack::start(&static_config(3478), Flags::default()).await;
    let mut browsers = Vec::new();
    for n in 0..200 {
        let mut browser = stack.browser().await;
        browser.register_ok(&format!("user-{n}")).await;
        browsers.push(browser);
    }
    stack.gateway.start_terminating().await;
    for mut browser in browsers {
        assert_eq!(browser.expect("reconnect").await["id"], "reconnect");
        let frame = browser.closed().await.expect("a close frame");
        assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
    }
    assert_eq!(
        stack.gateway.terminate(Duration::from_secs(10)).await,
        Some(0)
    );
}

/// Finding 9: pings count against a browser's rate like messages; a ping flood ends
/// the session (1008) rather than costing the server a pong each.
#[tokio::test]
async fn a_ping_flood_is_cut_off() {
    let stack = Stack::start(&static_config(3478), Flags::default()).await;
    let mut browser = stack.browser().await;
    for _ in 0..2_000 {
        if !browser
            .try_send_raw(Message::Ping(Default::default()), Duration::from_secs(2))
            .await
        {
            break;
        }
    }
    let frame = browser.closed().await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Policy, "{frame:?}");
}
