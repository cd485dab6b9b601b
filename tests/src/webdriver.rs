//! Real browsers, headless, driven with the W3C WebDriver protocol (plain JSON over HTTP, so no
//! client library is needed): Debian's Chromium through chromedriver, with the flags of
//! `reference/browser-testing.md`, and Debian's Firefox ESR through geckodriver (one browser
//! per geckodriver, which serves one session at a time), with preferences that do the same:
//! fake camera and microphone, loopback ICE, and no background lookup of any kind.

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::{Logs, eventually, free_port};

/// The flags that keep Chromium on loopback and give it fake media.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--component-updater=url-source=http://127.0.0.1:9/",
    "--gaia-url=http://127.0.0.1:9/",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
];

/// Firefox's preferences for tests: fake media without a prompt, ICE on loopback, and every
/// service that would reach out (updates, telemetry, safe browsing, captive portal and
/// connectivity checks, remote settings, push, geolocation, the OpenH264 download, DNS
/// prefetch and DNS over HTTPS) off or pointed at a closed loopback port.
fn firefox_prefs() -> Value {
    const NOWHERE: &str = "http://127.0.0.1:9/";
    let prefs = [
        ("media.navigator.streams.fake", json!(true)),
        ("media.navigator.permission.disabled", json!(true)),
        ("media.peerconnection.ice.loopback", json!(true)),
        (
            "media.peerconnection.ice.obfuscate_host_addresses",
            json!(false),
        ),
        ("media.autoplay.default", json!(0)),
        ("media.gmp-manager.url", json!(NOWHERE)),
        ("media.gmp-gmpopenh264.enabled", json!(false)),
        ("media.gmp-gmpopenh264.autoupdate", json!(false)),
        ("media.gmp-widevinecdm.enabled", json!(false)),
        ("app.update.enabled", json!(false)),
        ("app.update.auto", json!(false)),
        ("app.normandy.enabled", json!(false)),
        ("app.normandy.api_url", json!("")),
        ("app.shield.optoutstudies.enabled", json!(false)),
        ("browser.safebrowsing.malware.enabled", json!(false)),
        ("browser.safebrowsing.phishing.enabled", json!(false)),
        ("browser.safebrowsing.downloads.enabled", json!(false)),
        (
            "browser.safebrowsing.downloads.remote.enabled",
            json!(false),
        ),
        ("browser.safebrowsing.blockedURIs.enabled", json!(false)),
        ("browser.safebrowsing.provider.google4.updateURL", json!("")),
        ("browser.safebrowsing.provider.google.updateURL", json!("")),
        ("browser.safebrowsing.provider.mozilla.updateURL", json!("")),
        ("network.captive-portal-service.enabled", json!(false)),
        ("network.connectivity-service.enabled", json!(false)),
        ("captivedetect.canonicalURL", json!("")),
        ("network.dns.disablePrefetch", json!(true)),
        ("network.prefetch-next", json!(false)),
        ("network.http.speculative-parallel-limit", json!(0)),
        ("network.trr.mode", json!(5)),
        ("network.proxy.type", json!(0)),
        ("toolkit.telemetry.enabled", json!(false)),
        ("toolkit.telemetry.unified", json!(false)),
        ("toolkit.telemetry.server", json!("")),
        ("toolkit.telemetry.archive.enabled", json!(false)),
        ("datareporting.healthreport.uploadEnabled", json!(false)),
        ("datareporting.policy.dataSubmissionEnabled", json!(false)),
        ("browser.ping-centre.telemetry", json!(false)),
        ("browser.newtabpage.enabled", json!(false)),
        (
            "browser.newtabpage.activity-stream.feeds.telemetry",
            json!(false),
        ),
        ("browser.newtabpage.activity-stream.telemetry", json!(false)),
        ("browser.topsites.contile.enabled", json!(false)),
        ("browser.startup.page", json!(0)),
        ("browser.startup.homepage", json!("about:blank")),
        ("browser.shell.checkDefaultBrowser", json!(false)),
        ("browser.region.network.url", json!("")),
        ("browser.region.update.enabled", json!(false)),
        ("browser.search.update", json!(false)),
        ("browser.search.geoip.url", json!("")),
        ("extensions.update.enabled", json!(false)),
        ("extensions.getAddons.cache.enabled", json!(false)),
        ("extensions.blocklist.enabled", json!(false)),
        ("extensions.systemAddon.update.enabled", json!(false)),
        ("services.settings.server", json!(NOWHERE)),
        ("identity.fxaccounts.enabled", json!(false)),
        ("dom.push.connection.enabled", json!(false)),
        ("dom.push.serverURL", json!("")),
        ("geo.enabled", json!(false)),
        ("geo.provider.network.url", json!("")),
        ("security.OCSP.enabled", json!(0)),
        (
            "security.remote_settings.crlite_filters.enabled",
            json!(false),
        ),
        (
            "security.remote_settings.intermediates.enabled",
            json!(false),
        ),
    ];
    Value::Object(
        prefs
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
}

/// Which browser a driver runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Chromium,
    Firefox,
}

/// A WebDriver process: chromedriver (any number of Chromium browsers) or geckodriver (one
/// Firefox).
pub struct Driver {
    engine: Engine,
    child: Child,
    url: String,
    http: reqwest::Client,
    logs: Logs,
}

pub struct Browser {
    driver: String,
    session: String,
    http: reqwest::Client,
    _profile: TempDir,
}

/// The browsers go with the driver, also when a test fails before quitting them: left behind,
/// they would load the machine for every test after.
impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Driver {
    /// chromedriver, for Chromium.
    pub async fn start() -> Driver {
        Self::start_engine(Engine::Chromium).await
    }

    /// geckodriver, for one Firefox.
    pub async fn firefox() -> Driver {
        Self::start_engine(Engine::Firefox).await
    }

    pub async fn start_engine(engine: Engine) -> Driver {
        let port = free_port();
        let mut command = match engine {
            Engine::Chromium => {
                let mut command = Command::new("chromedriver");
                command.arg(format!("--port={port}"));
                command
            }
            Engine::Firefox => {
                let mut command = Command::new(geckodriver());
                command.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
                command
            }
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so the browsers it starts go with it (see Drop).
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{engine:?}'s driver is installed (chromium-driver; cargo install geckodriver): {e}")
            });
        let logs = Logs::default();
        logs.collect(child.stdout.take().expect("stdout"), None);
        logs.collect(child.stderr.take().expect("stderr"), None);
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let status = format!("{url}/status");
        eventually(Duration::from_secs(20), "the WebDriver to be ready", || {
            let (http, status) = (http.clone(), status.clone());
            async move {
                let body: Value = http.get(&status).send().await.ok()?.json().await.ok()?;
                (body["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        Driver {
            engine,
            child,
            url,
            http,
            logs,
        }
    }

    /// A fresh headless browser with its own profile.
    pub async fn browser(&self) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        // Self-signed test certificates are accepted: the TLS test serves one.
        let capabilities = match self.engine {
            Engine::Chromium => {
                let mut args: Vec<String> =
                    CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
                args.push(format!("--user-data-dir={}", profile.path().display()));
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": true,
                    "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
                    "goog:loggingPrefs": {"browser": "ALL"}
                }}})
            }
            // geckodriver makes the profile itself, with these preferences.
            Engine::Firefox => json!({"capabilities": {"alwaysMatch": {
                "browserName": "firefox",
                "acceptInsecureCerts": true,
                "moz:firefoxOptions": {
                    "binary": "/usr/bin/firefox-esr",
                    "args": ["-headless"],
                    "prefs": firefox_prefs(),
                }
            }}}),
        };
        let response: Value = self
            .http
            .post(format!("{}/session", self.url))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("JSON");
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {response}\n{}", self.logs.lines().join("\n")))
            .to_owned();
        Browser {
            driver: self.url.clone(),
            session,
            http: self.http.clone(),
            _profile: profile,
        }
    }
}

impl Browser {
    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.driver, self.session);
        let mut request = self.http.request(method, &url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response: Value = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .json()
            .await
            .expect("JSON");
        if response["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", response["value"]);
        }
        response["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// Clicks like a user (WebDriver element click: scrolled into view, hit-tested).
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    /// Types into an input like a user.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Runs a script in the page; `return` gives the value.
    pub async fn eval(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Runs an async script: it ends by calling `done(value)`.
    pub async fn eval_async(&self, body: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1]; {body}");
        self.command(
            reqwest::Method::POST,
            "/execute/async",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Polls a script until it returns a truthy value.
    pub async fn wait_for(&self, within: Duration, what: &str, script: &str) -> Value {
        eventually(within, what, || async {
            let value = self.eval(script).await;
            let truthy = !matches!(value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            truthy.then_some(value)
        })
        .await
    }

    /// Sizes the window (its viewport follows), as a phone or a desktop would show the page.
    pub async fn resize(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// A PNG of what the page shows.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let encoded = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64"))
            .expect("a PNG")
    }

    /// What Chromium logged as errors in the page's console since the last call (a failed
    /// load, an uncaught exception, `console.error`).
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .command(reqwest::Method::POST, "/se/log", json!({"type": "browser"}))
            .await;
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect()
    }

    pub async fn quit(self) {
        let url = format!("{}/session/{}", self.driver, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

/// geckodriver: where `cargo install` puts it, else on PATH.
fn geckodriver() -> std::path::PathBuf {
    let installed = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin/geckodriver"));
    match installed {
        Some(path) if path.is_file() => path,
        _ => "geckodriver".into(),
    }
}
