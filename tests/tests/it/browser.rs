//! Real calls in a real browser: two headless Chromium pages of our own client register and call
//! each other through the gateway, relay-only through a real TURN server; the callee's remote
//! video must decode frames over a relay/relay candidate pair.
//! (Over 300 lines: each scenario is a whole call between real pages.)

use std::time::Duration;

use serde_json::json;
use testkit::{
    Coturn, Stack,
    coturn::TurnAuth,
    stack::{Flags, ephemeral_config},
    topology::{Store, Topology},
    webdriver::{Browser, Driver},
};

pub const MEDIA: Duration = Duration::from_secs(40);
pub const PAGE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread")]
async fn two_pages_call_relay_only_through_coturn() {
    let secret = "browser-test-secret";
    let turn = Coturn::start(TurnAuth::Secret(secret)).await;
    let stack = Stack::start(&ephemeral_config(turn.port(), secret), Flags::default()).await;
    let driver = Driver::start().await;
    let alice = driver.browser().await;
    let bob = driver.browser().await;

    call_and_check(&stack.page_url(), &alice, &bob).await;

    alice.quit().await;
    bob.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pages_on_different_gateways_and_replicas_call_through_coturn() {
    let secret = "replicas-secret";
    let turn = Coturn::start(TurnAuth::Secret(secret)).await;
    let t = Topology::start(
        Store::Redis,
        &ephemeral_config(turn.port(), secret),
        Flags::default(),
    )
    .await;
    let page = |gateway: usize| format!("http://{}/", t.gateways[gateway].addr("http"));
    let driver = Driver::start().await;
    let alice = driver.browser().await;
    let bob = driver.browser().await;

    // Alice's page is served by gateway 0 (signaling replica 0), Bob's by gateway 1
    // (replica 1): every message between them crosses Redis.
    call_and_check_across(&page(0), &page(1), &alice, &bob).await;

    alice.quit().await;
    bob.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pages_call_relay_only_through_the_local_stack() {
    let static_dir = testkit::stack::static_dir();
    let stack = testkit::Service::start(
        &testkit::binary("local-stack"),
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--turn-addr",
            "127.0.0.1:0",
            "--static-dir",
            static_dir.to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    let page = stack.url("http", "/");
    let ready = stack.url("http", "/readyz");
    testkit::eventually(PAGE, "the local stack to be ready", || async {
        let status = reqwest::get(&ready).await.ok()?.status();
        (status == 200).then_some(())
    })
    .await;
    let driver = Driver::start().await;
    let alice = driver.browser().await;
    let bob = driver.browser().await;

    call_and_check(&page, &alice, &bob).await;

    alice.quit().await;
    bob.quit().await;
}

/// Alice calls Bob through the page's own controls and checks what "the call works" means in
/// `reference/browser-testing.md`.
pub async fn call_and_check(page: &str, alice: &Browser, bob: &Browser) {
    call_and_check_across(page, page, alice, bob).await;
}

/// [`call_and_check`] with each page from its own gateway.
pub async fn call_and_check_across(
    alice_page: &str,
    bob_page: &str,
    alice: &Browser,
    bob: &Browser,
) {
    call_up((alice, "alice", alice_page), (bob, "bob", bob_page)).await;
    check_the_call(alice, bob).await;
}

/// A page, its user's name, and where it is loaded from.
pub type Party<'a> = (&'a Browser, &'a str, &'a str);

/// Loads the page at `url` and waits for its socket to the gateway.
pub async fn open(page: &Browser, url: &str) {
    page.goto(url).await;
    page.wait_for(
        PAGE,
        "the page to connect",
        "return window.app && app.ws && app.ws.readyState === 1",
    )
    .await;
}

/// Registers `name` with the page's own controls.
pub async fn register(page: &Browser, name: &str) {
    page.type_into("#name", name).await;
    page.click("#register").await;
    page.wait_for(
        PAGE,
        "registration",
        "return app.registerState === 'registered'",
    )
    .await;
}

/// Both pages load and register; the caller calls the callee, who accepts; the call is up.
pub async fn call_up(caller: Party<'_>, callee: Party<'_>) {
    let (alice, bob) = (caller.0, callee.0);
    for (browser, name, page) in [caller, callee] {
        open(browser, page).await;
        register(browser, name).await;
        let policy = browser
            .eval("return app.iceConfiguration.iceTransportPolicy")
            .await;
        assert_eq!(policy, json!("relay"));
    }

    alice.type_into("#peer", callee.1).await;
    alice.click("#call").await;
    bob.wait_for(
        PAGE,
        "the incoming-call prompt",
        "return !document.getElementById('incoming').hidden",
    )
    .await;
    let from = bob
        .eval("return document.getElementById('incomingFrom').textContent")
        .await;
    assert_eq!(from, json!(caller.1));
    bob.click("#accept").await;

    for browser in [alice, bob] {
        browser
            .wait_for(
                PAGE,
                "the call to be up",
                "return app.callState === 'In call'",
            )
            .await;
    }
}

/// What "the call works" means, then a hang-up from the caller that reaches the callee.
pub async fn check_the_call(alice: &Browser, bob: &Browser) {
    // Both pages show the call's trace id, the same one, for bug reports.
    let trace = "return document.getElementById('statTrace').textContent";
    let shown = alice.eval(trace).await;
    assert!(shown.as_str().is_some_and(|t| t.len() == 32), "{shown}");
    assert_eq!(bob.eval(trace).await, shown);
    bob.wait_for(
        MEDIA,
        "remote video",
        "return document.getElementById('videoOutput').videoWidth > 0",
    )
    .await;

    // Frames keep being decoded (missing right at connect counts as zero).
    let first = frames_decoded(bob).await;
    testkit::eventually(MEDIA, "framesDecoded to rise", || async {
        let now = frames_decoded(bob).await;
        (now > first).then_some(())
    })
    .await;

    // The selected pair is relay on both ends: each page sends from its own relay. (The remote
    // end may show as peer-reflexive where its checks arrived before its candidate did; with
    // relay-only policies it can only be the peer's relay.)
    for page in [alice, bob] {
        let pair = selected_pair(page).await;
        assert_eq!(pair[0], json!("relay"), "{pair}");
        assert!(
            pair[1] == json!("relay") || pair[1] == json!("prflx"),
            "{pair}"
        );
    }
    bob.wait_for(
        PAGE,
        "the page to show the path",
        "return document.getElementById('statPath').textContent.startsWith('relay via udp')",
    )
    .await;

    // Hang up from the caller's page; the callee's page follows.
    alice.click("#terminate").await;
    bob.wait_for(
        PAGE,
        "the callee to see the end",
        "return app.callState === 'No call'",
    )
    .await;
}

/// The candidate types of the pair ICE selected, local then remote (Chromium names it in its
/// transport stats, Firefox marks the pair itself).
pub async fn selected_pair(page: &Browser) -> serde_json::Value {
    page.eval_async(
        "app.pc.getStats().then((r) => { let p = null; r.forEach((s) => { \
         if (s.type === 'transport' && s.selectedCandidatePairId) p = r.get(s.selectedCandidatePairId); \
         if (s.type === 'candidate-pair' && s.selected && !p) p = s; }); \
         done(p && [r.get(p.localCandidateId).candidateType, r.get(p.remoteCandidateId).candidateType]); })",
    )
    .await
}

/// The remote video of `page` keeps being decoded.
pub async fn frames_rise(page: &Browser, what: &str) {
    let first = frames_decoded(page).await;
    testkit::eventually(MEDIA, what, || async {
        let now = frames_decoded(page).await;
        (now > first).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_process_restarted_one_at_a_time_under_two_calls_goes_unnoticed() {
    let secret = "rollout-secret";
    let turn = Coturn::start(TurnAuth::Secret(secret)).await;
    let mut t = Topology::mesh(
        Store::Redis,
        2,
        2,
        &ephemeral_config(turn.port(), secret),
        Flags::default(),
    )
    .await;
    let page =
        |t: &Topology, gateway: usize| format!("http://{}/", t.gateways[gateway].addr("http"));
    let driver = Driver::start().await;
    let pages = [
        driver.browser().await,
        driver.browser().await,
        driver.browser().await,
        driver.browser().await,
    ];
    // Two calls, each between the two gateways.
    let (gw0, gw1) = (page(&t, 0), page(&t, 1));
    call_up((&pages[0], "alice", &gw0), (&pages[1], "bob", &gw1)).await;
    call_up((&pages[2], "carol", &gw1), (&pages[3], "dave", &gw0)).await;
    for page in &pages {
        page.wait_for(
            MEDIA,
            "remote video",
            "return document.getElementById('videoOutput').videoWidth > 0",
        )
        .await;
    }
    let call_ids = || async {
        let mut ids = Vec::new();
        for page in &pages {
            ids.push(page.eval("return app.callId").await);
        }
        ids
    };
    let before = call_ids().await;
    assert_eq!(before[0], before[1], "alice and bob share a call");
    assert_eq!(before[2], before[3], "carol and dave share a call");

    // One process at a time, each replaced by a new one at the same address, as a rolling
    // update does; after each, every page is registered, in its call, decoding video.
    for step in [
        "gateway 0",
        "gateway 1",
        "signaling 0",
        "signaling 1",
        "ice-config",
    ] {
        let process = match step {
            "gateway 0" => &mut t.gateways[0],
            "gateway 1" => &mut t.gateways[1],
            "signaling 0" => &mut t.signaling[0],
            "signaling 1" => &mut t.signaling[1],
            _ => &mut t.ice_config,
        };
        assert_eq!(
            process.terminate(Duration::from_secs(20)).await,
            Some(0),
            "{step} drains and exits cleanly"
        );
        match step {
            "gateway 0" => t.restart_gateway(0).await,
            "gateway 1" => t.restart_gateway(1).await,
            "signaling 0" => t.restart_signaling(0).await,
            "signaling 1" => t.restart_signaling(1).await,
            _ => t.restart_ice_config().await,
        }
        for page in &pages {
            page.wait_for(
                PAGE,
                "the page to be registered again",
                "return app.registerState === 'registered' && app.callState === 'In call'",
            )
            .await;
            frames_rise(
                page,
                &format!("video to keep flowing after restarting {step}"),
            )
            .await;
        }
    }
    assert_eq!(
        call_ids().await,
        before,
        "every page ends in the call it started in"
    );

    // A hang-up after all that still reaches the other side.
    pages[0].click("#terminate").await;
    pages[1]
        .wait_for(
            PAGE,
            "bob to see the end",
            "return app.callState === 'No call'",
        )
        .await;
    pages[3].click("#terminate").await;
    pages[2]
        .wait_for(
            PAGE,
            "carol to see the end",
            "return app.callState === 'No call'",
        )
        .await;
    for page in pages {
        page.quit().await;
    }
}

pub async fn frames_decoded(browser: &Browser) -> u64 {
    browser
        .eval_async(
            "app.pc.getStats().then((r) => { let n = 0; r.forEach((s) => { \
             if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0; }); done(n); })",
        )
        .await
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_works_over_https_and_wss() {
    let stack = Stack::start(&testkit::stack::static_config(3478), Flags::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    testkit::tls::self_signed(&cert, &key, "localhost").await;

    let static_dir = testkit::stack::static_dir();
    let (ice, signaling) = (
        stack.ice_config.url("grpc", ""),
        stack.signaling.url("grpc", ""),
    );
    let gateway = testkit::Service::start(
        &testkit::binary("gateway"),
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--ice-config-url",
            &ice,
            "--signaling-url",
            &signaling,
            "--static-dir",
            static_dir.to_str().expect("utf-8"),
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    testkit::eventually(PAGE, "the TLS gateway to attach to signaling", || async {
        gateway
            .logs()
            .contains("attached to signaling")
            .then_some(())
    })
    .await;

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser
        .goto(&format!(
            "https://localhost:{}/",
            gateway.addr("https").port()
        ))
        .await;
    browser
        .wait_for(
            PAGE,
            "a WSS connection",
            "return app.ws && app.ws.readyState === 1 && app.ws.url.startsWith('wss://')",
        )
        .await;
    browser.type_into("#name", "secure").await;
    browser.click("#register").await;
    browser
        .wait_for(
            PAGE,
            "registration over WSS",
            "return app.registerState === 'registered'",
        )
        .await;
    browser.quit().await;
}
