//! Firefox ESR (through geckodriver) on our page: calls with Firefox on either end and with
//! Chromium on the other, relay-only through a real TURN server, checked the way the Chromium
//! calls are (remote video, frames decoded, a relay/relay pair, hang-up reaching the other).

use testkit::{
    Coturn, Stack,
    coturn::TurnAuth,
    stack::{Flags, ephemeral_config},
    webdriver::Driver,
};

use super::browser::{call_up, check_the_call};

async fn stack() -> (Coturn, Stack) {
    let secret = "firefox-secret";
    let turn = Coturn::start(TurnAuth::Secret(secret)).await;
    let stack = Stack::start(&ephemeral_config(turn.port(), secret), Flags::default()).await;
    (turn, stack)
}

#[tokio::test(flavor = "multi_thread")]
async fn firefox_calls_chromium_and_chromium_calls_firefox() {
    let (_turn, stack) = stack().await;
    let page = stack.page_url();
    let (gecko, chromedriver) = (Driver::firefox().await, Driver::start().await);
    let (firefox, chromium) = (gecko.browser().await, chromedriver.browser().await);

    call_up((&firefox, "fox", &page), (&chromium, "chrome", &page)).await;
    check_the_call(&firefox, &chromium).await;
    // The other way round, in fresh browsers (a reloaded page would resume its old name).
    firefox.quit().await;
    chromium.quit().await;
    let (firefox, chromium) = (gecko.browser().await, chromedriver.browser().await);
    call_up((&chromium, "chrome-2", &page), (&firefox, "fox-2", &page)).await;
    check_the_call(&chromium, &firefox).await;

    firefox.quit().await;
    chromium.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn firefox_calls_firefox() {
    let (_turn, stack) = stack().await;
    let page = stack.page_url();
    // geckodriver serves one session: one driver per Firefox.
    let (one, two) = (Driver::firefox().await, Driver::firefox().await);
    let (alice, bob) = (one.browser().await, two.browser().await);
    call_up((&alice, "alice", &page), (&bob, "bob", &page)).await;
    check_the_call(&alice, &bob).await;
    alice.quit().await;
    bob.quit().await;
}

/// Firefox keeps a call through what our page handles by itself: a credential refresh (the
/// pushed configuration applied and ICE restarted onto new relays) and its gateway going away
/// (the page reconnects, resumes its name, rejoins its call).
#[tokio::test(flavor = "multi_thread")]
async fn firefox_keeps_its_call_through_a_credential_refresh_and_a_gateway_restart() {
    use std::time::Duration;
    use testkit::topology::{Store, Topology};

    use super::browser::{PAGE, frames_rise};

    let secret = "firefox-refresh";
    let turn = Coturn::start(TurnAuth::Secret(secret)).await;
    // Credentials for 10 s: a refresh is pushed 8 s into the call.
    let mut t = Topology::start(
        Store::Memory,
        &ephemeral_config(turn.port(), secret),
        Flags {
            ice_config: &["--default-ttl", "10s"],
            ..Default::default()
        },
    )
    .await;
    let page = format!("http://{}/", t.gateways[0].addr("http"));
    let (gecko, chromedriver) = (Driver::firefox().await, Driver::start().await);
    let (firefox, chromium) = (gecko.browser().await, chromedriver.browser().await);
    call_up((&firefox, "fox", &page), (&chromium, "chrome", &page)).await;
    frames_rise(&chromium, "video from Firefox").await;

    // The refresh: Firefox restarts ICE with the new credentials, and the restart recovers.
    firefox
        .wait_for(
            Duration::from_secs(30),
            "Firefox to restart ICE with the pushed credentials",
            "return app.restarts >= 1 && app.restart === null",
        )
        .await;
    frames_rise(&chromium, "video from Firefox after the refresh").await;
    frames_rise(&firefox, "video to Firefox after the refresh").await;

    // The gateway goes away and comes back at the same address.
    let call = firefox.eval("return app.callId").await;
    assert_eq!(
        t.gateways[0].terminate(Duration::from_secs(20)).await,
        Some(0)
    );
    t.restart_gateway(0).await;
    for page in [&firefox, &chromium] {
        page.wait_for(
            PAGE,
            "the page to be back in its call",
            "return app.registerState === 'registered' && app.callState === 'In call'",
        )
        .await;
    }
    assert_eq!(firefox.eval("return app.callId").await, call);
    frames_rise(&firefox, "video to Firefox after the gateway restart").await;
    frames_rise(&chromium, "video from Firefox after the gateway restart").await;

    firefox.quit().await;
    chromium.quit().await;
}
