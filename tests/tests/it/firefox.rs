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
