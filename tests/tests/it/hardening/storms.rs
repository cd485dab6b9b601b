//! Many clients at once: a registration storm (finding 4), silent connections (finding 7), and
//! a restarted gateway's browsers all resuming at once.

use std::time::Duration;

use serde_json::json;
use testkit::{
    Browser, Stack, eventually,
    stack::{Flags, Launch, static_config, ws_url},
    topology::{Store, Topology},
};

/// Finding 4: 4,000 sockets registering at once on a fresh gateway. 3,550 were refused
/// `ice_config_unavailable: transport error` (ice-config's HTTP/2 told the shared connection to
/// calm down). Now fetches are bounded and queue: every registration is accepted, and no
/// refusal would quote the transport's own words.
#[tokio::test]
async fn a_registration_storm_queues_rather_than_fails() {
    const SOCKETS: usize = 4_000;
    let stack = Stack::start(&static_config(3478), Flags::default()).await;
    let registrations = (0..SOCKETS)
        .map(|n| json!({"id": "register", "name": format!("storm-{n}"), "extensions": true}))
        .collect();
    all_accepted(&stack.ws_url(), registrations).await;
}

/// Finding 7: on a host whose file limit is 1,024, 1,100 connections that never send a byte
/// blocked `/healthz` and registration (slowloris). Now connections are capped below the limit
/// and must send their headers in time: the gateway answers again within seconds while the
/// silent connections are still held open by the attacker.
#[tokio::test]
async fn silent_connections_do_not_lock_out_the_gateway() {
    let stack = Stack::start(&static_config(3478), Flags::default()).await;
    let gateway = Launch::gateway(
        &stack.ice_config.url("grpc", ""),
        &stack.signaling.url("grpc", ""),
    )
    .args(["--header-timeout", "2s"])
    .file_limit(1024)
    .start()
    .await;
    let mut silent = Vec::new();
    for _ in 0..1_100 {
        // Connections beyond the backlog may not complete at all: that is fine too.
        if let Ok(Ok(tcp)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(gateway.addr("http")),
        )
        .await
        {
            silent.push(tcp);
        }
    }
    eventually(Duration::from_secs(30), "/healthz to answer", || async {
        (gateway.get("http", "/healthz").await?.0 == 200).then_some(())
    })
    .await;
    let mut browser = Browser::connect(&testkit::stack::ws_url(&gateway)).await;
    browser.register_ok("patient").await;
    drop(silent);
}

/// A gateway's browsers all coming back at once after it restarts (SIGKILL, a new process on
/// the same port): every one resumes its name with its token. The names are held meanwhile, so
/// a registration that did not resume would be refused as taken.
#[tokio::test]
async fn a_restarted_gateways_browsers_all_resume_at_once() {
    const BROWSERS: usize = 3_000;
    let mut t = Topology::start(Store::Memory, &static_config(3478), Flags::default()).await;
    let url = ws_url(&t.gateways[0]);
    let mut tokens = Vec::new();
    let mut browsers = Vec::new();
    for n in 0..BROWSERS {
        let mut browser = Browser::connect(&url).await;
        let reply = browser.register_ok(&format!("back-{n}")).await;
        tokens.push(reply["resumeToken"].as_str().expect("a token").to_owned());
        browsers.push(browser);
    }
    t.gateways[0].kill().await;
    drop(browsers);
    t.restart_gateway(0).await;
    let registrations = tokens
        .into_iter()
        .enumerate()
        .map(|(n, token)| json!({"id": "register", "name": format!("back-{n}"), "resumeToken": token, "extensions": true}))
        .collect();
    all_accepted(&ws_url(&t.gateways[0]), registrations).await;
}

/// Sends every registration at once, each from a socket of its own, and checks that every one
/// is accepted (each may take up to a minute: a storm queues). The sockets stay open until
/// every answer is in.
async fn all_accepted(url: &str, registrations: Vec<serde_json::Value>) {
    let count = registrations.len();
    let storm: Vec<_> = registrations
        .into_iter()
        .map(|registration| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut browser = Browser::connect(&url).await;
                browser.send(registration).await;
                let reply = browser.recv_within(Duration::from_secs(60)).await;
                (reply, browser)
            })
        })
        .collect();
    let mut refused = Vec::new();
    let mut open = Vec::new();
    for registration in storm {
        let (reply, browser) = registration.await.expect("a registering browser");
        if reply["response"] != "accepted" {
            refused.push(reply);
        }
        open.push(browser);
    }
    assert!(
        refused.is_empty(),
        "{} of {count} refused, e.g. {}",
        refused.len(),
        refused[0]
    );
}
