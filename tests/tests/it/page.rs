//! Our page as a user sees it, in headless Chromium and Firefox: what each screen says and
//! shows, at a desktop's width and a phone's. Screenshots of every state are written to
//! `target/screenshots/<browser>/` for a person to look at.

use std::path::PathBuf;

use serde_json::json;
use testkit::{
    Coturn, Stack,
    coturn::TurnAuth,
    stack::{Flags, ephemeral_config},
    webdriver::{Browser, Driver, Engine},
};

use super::browser::{MEDIA, PAGE, frames_rise, open, register};

const WIDTHS: [(u32, u32); 2] = [(1280, 900), (390, 844)];

fn screenshots(engine: Engine) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/screenshots")
        .join(format!("{engine:?}").to_lowercase());
    std::fs::create_dir_all(&dir).expect("target/screenshots");
    dir
}

/// Shoots `page` at each width, as `<state>-<width>.png`, checking on the way that the page
/// never scrolls sideways. (Firefox keeps its windows at least 500 px wide: its phone shot is
/// that wide.)
async fn shoot(engine: Engine, page: &Browser, state: &str) {
    for (width, height) in WIDTHS {
        page.resize(width, height).await;
        let sideways = page
            .eval("return document.documentElement.scrollWidth - window.innerWidth")
            .await;
        assert!(
            sideways.as_i64().is_some_and(|extra| extra <= 0),
            "{state} at {width} px scrolls sideways by {sideways} px"
        );
        let png = page.screenshot().await;
        std::fs::write(
            screenshots(engine).join(format!("{state}-{width}.png")),
            png,
        )
        .expect("write a screenshot");
    }
    page.resize(1280, 900).await;
}

async fn text_of(page: &Browser, id: &str) -> String {
    page.eval(&format!(
        "return document.getElementById('{id}').textContent"
    ))
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

/// What the browser reports as errors on the page: Chromium's console; for both, the page's
/// own message box.
async fn errors(engine: Engine, page: &Browser) -> Vec<String> {
    let mut errors = match engine {
        Engine::Chromium => page.console_errors().await,
        // geckodriver has no console log to read.
        Engine::Firefox => Vec::new(),
    };
    let logged = page
        .eval("return [...document.querySelectorAll('#console .err')].map((e) => e.textContent)")
        .await;
    errors.extend(
        logged
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_owned)),
    );
    errors
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_as_a_user_sees_it_in_chromium() {
    the_page_as_a_user_sees_it(Engine::Chromium).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_as_a_user_sees_it_in_firefox() {
    the_page_as_a_user_sees_it(Engine::Firefox).await;
}

async fn the_page_as_a_user_sees_it(engine: Engine) {
    let secret = "page-secret";
    let turn = Coturn::start(TurnAuth::Secret(secret)).await;
    let stack = Stack::start(&ephemeral_config(turn.port(), secret), Flags::default()).await;
    let url = stack.page_url();
    // geckodriver serves one browser each.
    let drivers = [
        Driver::start_engine(engine).await,
        Driver::start_engine(engine).await,
    ];
    let (alice, bob) = (drivers[0].browser().await, drivers[1].browser().await);

    // Idle: loads without a single console error (no missing icon either).
    open(&alice, &url).await;
    assert_eq!(errors(engine, &alice).await, Vec::<String>::new());
    shoot(engine, &alice, "idle").await;

    // An error: calling before anyone answers to that name.
    register(&alice, "alice").await;
    shoot(engine, &alice, "registered").await;
    alice.type_into("#peer", "nobody").await;
    alice.click("#call").await;
    alice
        .wait_for(
            PAGE,
            "the refusal",
            "return !document.getElementById('error').hidden",
        )
        .await;
    shoot(engine, &alice, "error").await;
    // A fresh page for the call (a reloaded one would resume its registration).
    alice.eval("sessionStorage.clear(); return true").await;

    // Ringing, then a call: the callee sees who calls, both see the call and its timer.
    for (page, name) in [(&bob, "bob"), (&alice, "alice-2")] {
        open(page, &url).await;
        register(page, name).await;
    }
    // Alice's tab is in the background when the call comes: its title says so.
    alice
        .eval("Object.defineProperty(document, 'hidden', {value: true, configurable: true}); return true")
        .await;
    bob.type_into("#peer", "alice-2").await;
    bob.click("#call").await;
    alice
        .wait_for(
            PAGE,
            "the incoming call",
            "return !document.getElementById('incoming').hidden",
        )
        .await;
    let title = alice.eval("return document.title").await;
    assert_eq!(title, json!("📞 bob is calling"));
    alice
        .eval(
            "Object.defineProperty(document, 'hidden', {value: false, configurable: true}); \
             document.dispatchEvent(new Event('visibilitychange')); return true",
        )
        .await;
    assert_eq!(
        alice.eval("return document.title").await,
        json!("STUNner one-to-one call")
    );
    shoot(engine, &alice, "ringing").await;
    alice.click("#accept").await;
    alice
        .wait_for(
            PAGE,
            "the call to be up",
            "return app.callState === 'In call'",
        )
        .await;
    frames_rise(&alice, "video in the call").await;
    alice
        .wait_for(
            MEDIA,
            "the path",
            "return document.getElementById('statPath').textContent.startsWith('relay')",
        )
        .await;
    assert!(!text_of(&alice, "statTrace").await.starts_with('–'));
    alice
        .wait_for(
            PAGE,
            "the call timer",
            "return /^0:0[1-9]/.test(document.getElementById('timer').textContent)",
        )
        .await;
    shoot(engine, &alice, "in-call").await;
    // The camera and microphone can be picked once the page may use them.
    let choices = alice
        .eval("return ['cameraSelect', 'microphone'].map((id) => document.getElementById(id).options.length)")
        .await;
    assert!(
        choices
            .as_array()
            .is_some_and(|c| c.iter().all(|n| n.as_u64() >= Some(2))),
        "{choices}"
    );

    // No secret is ever shown: neither the TURN credential nor the username, nor the resume
    // token, in the page or in its message box.
    for page in [&alice, &bob] {
        let secrets = page
            .eval(
                "const s = app.iceConfiguration.iceServers[0]; \
                 const r = JSON.parse(sessionStorage.getItem('registration') || '{}'); return [s.credential, s.username, r.token || ''].filter((x) => x)",
            )
            .await;
        let shown = page.eval("return document.body.innerText").await;
        for secret in secrets.as_array().expect("secrets") {
            let secret = secret.as_str().expect("text");
            assert!(
                !shown.as_str().unwrap_or_default().contains(secret),
                "the page shows a secret: {secret}"
            );
        }
    }

    // Diagnostics for a bug report: the trace id and the path, in one click.
    alice.click("#copy").await;
    let diagnostics = alice
        .wait_for(PAGE, "the diagnostics", "return app.diagnostics")
        .await;
    let trace = text_of(&alice, "statTrace").await;
    assert!(
        diagnostics
            .as_str()
            .is_some_and(|d| d.contains(&trace) && d.contains("relay")),
        "{diagnostics}"
    );

    // A normal hang-up is not an error, and neither page still says the media is connected.
    bob.click("#terminate").await;
    alice
        .wait_for(
            PAGE,
            "the end of the call",
            "return app.callState === 'No call'",
        )
        .await;
    for (page, name) in [(&alice, "alice-2"), (&bob, "bob")] {
        page.wait_for(
            PAGE,
            "the registered status",
            &format!(
                "return document.getElementById('status').textContent === 'Registered as {name}'"
            ),
        )
        .await;
        assert_eq!(
            page.eval("return document.getElementById('timer').hidden")
                .await,
            json!(true)
        );
    }
    assert_eq!(
        alice
            .eval("return document.getElementById('error').hidden")
            .await,
        json!(true),
        "a hang-up shown as an error"
    );
    assert!(text_of(&alice, "console").await.contains("bob hung up"));

    // Keyboard only: every control is reachable with Tab.
    let unreachable = alice
        .eval(
            "return [...document.querySelectorAll('button, input, select')] \
             .filter((e) => e.tabIndex < 0).map((e) => e.id)",
        )
        .await;
    assert_eq!(unreachable, json!([]));
    assert_eq!(errors(engine, &alice).await, Vec::<String>::new());

    alice.quit().await;
    bob.quit().await;
}
