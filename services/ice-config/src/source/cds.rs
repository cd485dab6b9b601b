//! STUNner's config discovery service (CDS): how the current operator (v1, ≥ 0.16) hands out
//! one dataplane config per Gateway, by default at
//! `http://stunner-config-discovery.stunner-system.svc:13478`.
//!
//! Each session lists the configs (`GET /api/v1/configs[/{namespace}]`), which replaces what
//! this source serves (so configs deleted while disconnected are withdrawn), then follows the
//! WebSocket watch (`?watch=true`): every text frame is one whole config; a "zero config"
//! (static auth with `dummy-username`, no listeners) means its Gateway was deleted. Like
//! STUNner's own client, the watch is pinged every 5 s and dropped when no pong comes within
//! 8 s. A failed session is retried with exponential backoff from 1 s; what was loaded stays in
//! force meanwhile and readiness says what is wrong.
//! (Over 300 lines: the CDS protocol client, listing and watch, with its tests.)

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::Deserialize;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::{connect_async, tungstenite::Message};
use tokio_util::sync::CancellationToken;

use super::objects::{ObjectError, Objects, Parsed};

/// The largest listing read: many Gateways' configs, each at most 4 MiB.
const MAX_LISTING: usize = 64 << 20;

/// Why a session with the config discovery service ended.
#[derive(Debug, thiserror::Error)]
enum CdsError {
    #[error("GET {url}: {problem}")]
    Request { url: String, problem: String },
    #[error("GET {url}: HTTP {status}")]
    Status {
        url: String,
        status: hyper::StatusCode,
    },
    #[error("GET {url}: not a config list: {source}")]
    Listing {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("watch {url}: handshake timed out")]
    HandshakeTimeout { url: String },
    #[error("watch {url}: {source}")]
    Watch {
        url: String,
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("watch {url}: no pong within {within:?}")]
    NoPong { url: String, within: Duration },
    #[error("watch {url}: closed by the server")]
    Closed { url: String },
}
use crate::{
    store::{ConfigStore, SourceSink},
    stunner_config::{self, Auth, StunnerConfig},
};

/// The username of the operator's "zero config", which stands for a deleted Gateway.
const ZERO_CONFIG_USERNAME: &str = "dummy-username";

/// Timings of the CDS client; the defaults are STUNner's own.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub ping_every: Duration,
    pub pong_within: Duration,
    /// The first retry delay, doubled after every failed session up to `max_retry`.
    pub retry: Duration,
    pub max_retry: Duration,
    /// Bounds the listing request and the WebSocket handshake.
    pub request_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ping_every: Duration::from_secs(5),
            pong_within: Duration::from_secs(8),
            retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Follows the configs of one CDS server (optionally one namespace of it).
pub struct CdsSource {
    /// `…/api/v1/configs` or `…/api/v1/configs/{namespace}`, over http.
    configs_url: String,
    http: Client<HttpConnector, Empty<Bytes>>,
    timing: Timing,
    sink: SourceSink,
}

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    Stopped,
    /// The listing worked, then the watch failed: retry from the first delay.
    WatchLost(CdsError),
    /// Nothing worked: back off further.
    Failed(CdsError),
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    items: Vec<serde_json::Value>,
}

impl CdsSource {
    /// `server` is the CDS base URL, e.g. `http://stunner-config-discovery.stunner-system.svc:13478`.
    pub fn new(server: &str, namespace: Option<&str>, timing: Timing, store: &ConfigStore) -> Self {
        let mut configs_url = format!("{}/api/v1/configs", server.trim_end_matches('/'));
        if let Some(namespace) = namespace {
            configs_url = format!("{configs_url}/{namespace}");
        }
        let sink = store.sink(format!("config discovery {configs_url}"));
        let http = Client::builder(TokioExecutor::new()).build_http();
        Self {
            configs_url,
            http,
            timing,
            sink,
        }
    }

    /// Lists and watches until shutdown, reconnecting with backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut objects = Objects::default();
        let mut delay = self.timing.retry;
        loop {
            let problem = match self.session(&mut objects, &shutdown).await {
                SessionEnd::Stopped => return,
                SessionEnd::WatchLost(problem) => {
                    delay = self.timing.retry;
                    problem
                }
                SessionEnd::Failed(problem) => problem,
            };
            tracing::warn!(source = self.sink.source(), %problem, retry_in = ?delay, "config discovery unavailable");
            self.sink.reachable(false);
            self.sink.failed(problem.to_string());
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sleep(delay) => {}
            }
            // Doubling, capped, reset when a watch was up (a retry crate wraps one future to be
            // retried; a session that resets its backoff on success reads plainer like this).
            delay = (delay * 2).min(self.timing.max_retry);
        }
    }

    async fn session(&self, objects: &mut Objects, shutdown: &CancellationToken) -> SessionEnd {
        let listing = tokio::select! {
            () = shutdown.cancelled() => return SessionEnd::Stopped,
            listing = self.list() => listing,
        };
        match listing {
            Ok(listing) => objects.replace(listing),
            Err(problem) => return SessionEnd::Failed(problem),
        }
        self.sink.reachable(true);
        objects.publish(&self.sink);
        match self.watch(objects, shutdown).await {
            Ok(()) => SessionEnd::Stopped,
            Err(problem) => SessionEnd::WatchLost(problem),
        }
    }

    async fn list(&self) -> Result<Vec<(String, Parsed)>, CdsError> {
        let url = || self.configs_url.clone();
        let failed = |problem: String| CdsError::Request {
            url: url(),
            problem,
        };
        let uri: hyper::Uri = self
            .configs_url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| failed(e.to_string()))?;
        let fetch = async {
            let response = self
                .http
                .get(uri)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let status = response.status();
            if !status.is_success() {
                return Err(CdsError::Status { url: url(), status });
            }
            Limited::new(response.into_body(), MAX_LISTING)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .map_err(|e| failed(format!("reading the listing: {e}")))
        };
        let body = tokio::time::timeout(self.timing.request_timeout, fetch)
            .await
            .map_err(|_| {
                failed(format!(
                    "no answer within {:?}",
                    self.timing.request_timeout
                ))
            })??;
        let listing: Listing = serde_json::from_slice(&body)
            .map_err(|source| CdsError::Listing { url: url(), source })?;
        let mut configs = Vec::new();
        for item in listing.items {
            let Some(name) = admin_name(&item) else {
                tracing::warn!("config discovery listed a config without `admin.name`; ignored");
                continue;
            };
            match parse(&item.to_string()) {
                Ok(Update::Deleted) => {}
                Ok(Update::Config(config)) => configs.push((name, Ok(vec![config]))),
                Err(problem) => configs.push((name, Err(problem))),
            }
        }
        Ok(configs)
    }

    /// Follows the watch until shutdown (`Ok`) or until it fails.
    async fn watch(
        &self,
        objects: &mut Objects,
        shutdown: &CancellationToken,
    ) -> Result<(), CdsError> {
        let url = format!(
            "{}?watch=true",
            self.configs_url.replacen("http://", "ws://", 1)
        );
        let failed = |source| CdsError::Watch {
            url: url.clone(),
            source,
        };
        let (mut socket, _) =
            tokio::time::timeout(self.timing.request_timeout, connect_async(&url))
                .await
                .map_err(|_| CdsError::HandshakeTimeout { url: url.clone() })?
                .map_err(failed)?;
        tracing::info!(
            source = self.sink.source(),
            "config discovery watch connected"
        );
        let mut next_ping = Instant::now() + self.timing.ping_every;
        // When a ping is outstanding, the moment its pong is overdue.
        let mut pong_due: Option<Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = socket.close(None).await;
                    return Ok(());
                }
                () = sleep_until(next_ping) => {
                    socket
                        .send(Message::Ping(Vec::new().into()))
                        .await
                        .map_err(failed)?;
                    next_ping += self.timing.ping_every;
                    pong_due.get_or_insert(Instant::now() + self.timing.pong_within);
                }
                () = sleep_until(pong_due.unwrap_or_else(Instant::now)), if pong_due.is_some() => {
                    return Err(CdsError::NoPong { url, within: self.timing.pong_within });
                }
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        self.apply(objects, text.as_str());
                    }
                    Some(Ok(Message::Pong(_))) => pong_due = None,
                    Some(Ok(Message::Close(_))) | None => {
                        return Err(CdsError::Closed { url });
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(failed(e)),
                }
            }
        }
    }

    /// One watch frame: a whole config, or the zero config of a deleted Gateway.
    fn apply(&self, objects: &mut Objects, text: &str) {
        let name = serde_json::from_str(text).ok().and_then(|v| admin_name(&v));
        let Some(name) = name else {
            tracing::error!(
                source = self.sink.source(),
                "config discovery sent a frame that is not a named config; ignored"
            );
            self.sink
                .failed("the watch sent a frame that is not a named config");
            return;
        };
        match parse(text) {
            Ok(Update::Deleted) => objects.remove(&name),
            Ok(Update::Config(config)) => objects.apply(&name, Ok(vec![config])),
            Err(problem) => objects.apply(&name, Err(problem)),
        }
        objects.publish(&self.sink);
    }
}

enum Update {
    Config(StunnerConfig),
    Deleted,
}

fn parse(text: &str) -> Result<Update, ObjectError> {
    let config = stunner_config::parse(text)?;
    let zero = config.listeners.is_empty()
        && matches!(&config.auth, Auth::Static { username, .. } if username == ZERO_CONFIG_USERNAME);
    Ok(if zero {
        Update::Deleted
    } else {
        Update::Config(config)
    })
}

/// `admin.name`, with keys matched case-insensitively as STUNner's Go decoder does.
fn admin_name(config: &serde_json::Value) -> Option<String> {
    let field = |value: &serde_json::Value, key: &str| {
        value
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let name = field(&field(config, "admin")?, "name")?;
    name.as_str().filter(|n| !n.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zero_config_means_deleted() {
        let zero = r#"{"version":"v1","admin":{"name":"ns/gw"},"auth":{"type":"static","credentials":{"username":"dummy-username","password":"dummy-password"}},"listeners":[],"clusters":[]}"#;
        assert!(matches!(parse(zero), Ok(Update::Deleted)));
        let real = r#"{"version":"v1","admin":{"name":"ns/gw"},"auth":{"type":"static","credentials":{"username":"dummy-username","password":"p"}},"listeners":[{"name":"ns/gw/l","protocol":"TURN-UDP","address":"1.2.3.4","port":3478}]}"#;
        assert!(
            matches!(parse(real), Ok(Update::Config(_))),
            "a listener makes it real"
        );
    }

    #[test]
    fn admin_name_is_matched_case_insensitively() {
        let value = serde_json::json!({"Admin": {"Name": "ns/gw"}});
        assert_eq!(admin_name(&value).as_deref(), Some("ns/gw"));
        assert_eq!(admin_name(&serde_json::json!({"admin": {}})), None);
        assert_eq!(
            admin_name(&serde_json::json!({"admin": {"name": ""}})),
            None
        );
    }
}
