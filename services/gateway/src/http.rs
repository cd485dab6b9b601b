//! The gateway's HTTP port: the page (`static/`), the WebSocket at `/one2one`, and
//! `/healthz`, `/readyz`, `/metrics`.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    extract::{State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use svc_common::admin::Readiness;
use tower_http::services::ServeDir;

use crate::{
    reason::GatewayReason,
    session::{self, Shared},
};

/// The largest browser message accepted: a 4 KB SDP is typical, 64 KiB leaves room for big
/// ones; a larger frame closes the socket with 1009.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Frames up to this size are read whole and then refused by the message limit, so the
/// socket is drained and the 1009 close frame reaches the browser; a larger frame is refused
/// at its header and the connection may end in a TCP reset instead.
const MAX_FRAME: usize = 1024 * 1024;
/// Socket buffers, sized for idle sessions: tungstenite's defaults (128 KiB to read) would cost
/// ~110 KiB per idle browser. The read buffer is allocated, and filled, for the connection's
/// whole life, so it is most of what an idle session costs: 1 KiB takes a registration or a
/// candidate in one read, and a 4 KB SDP in four (it grows to the largest message read).
const READ_BUFFER: usize = 1024;
const WRITE_BUFFER: usize = 4 * 1024;

#[derive(Clone)]
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub origins: Origins,
    pub next_session: Arc<AtomicU64>,
}

/// The origin of a page of another site.
#[derive(Debug)]
struct ForeignOrigin(String);

/// Which pages may open a WebSocket here.
#[derive(Clone, Debug)]
pub enum Origins {
    /// Any origin (`*`): for local development only.
    Any,
    /// Exactly these (`https://example.org`), plus the gateway's own origin.
    Listed(Vec<String>),
}

pub fn router(state: HttpState, static_dir: PathBuf) -> Router {
    let (ready, metrics) = (state.shared.clone(), state.shared.clone());
    let admin = svc_common::admin::router(
        move || readiness(&ready),
        move || {
            let link = &metrics.link;
            metrics.metrics.render(
                link.sessions(),
                link.replicas_attached(),
                link.queued(),
                &link.overflows(),
            )
        },
    );
    Router::new()
        .route("/one2one", get(upgrade))
        .with_state(state)
        .merge(admin)
        .fallback_service(ServeDir::new(static_dir))
}

/// The origin is checked before anything else about the request: a page of another site is
/// refused whether or not its upgrade request is well formed.
async fn upgrade(
    State(state): State<HttpState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(ForeignOrigin(origin)) = state.origins.check(&headers) {
        tracing::warn!(%origin, "WebSocket from a foreign origin refused");
        state.shared.metrics.rejected(GatewayReason::ForeignOrigin);
        return (
            StatusCode::FORBIDDEN,
            format!("origin {origin} is not allowed\n"),
        )
            .into_response();
    }
    if state.shared.stop.is_cancelled() {
        // Draining: this gateway is going away; the page goes to another.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this server is going away\n",
        )
            .into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let session = state.next_session.fetch_add(1, Ordering::Relaxed);
    let shared = state.shared.clone();
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_MESSAGE * 4)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| {
            let tracker = shared.sessions.clone();
            tracker.track_future(session::run(socket, session, shared))
        })
}

impl Origins {
    pub fn parse(list: &[String]) -> Self {
        if list.iter().any(|o| o == "*") {
            Origins::Any
        } else {
            Origins::Listed(
                list.iter()
                    .map(|o| o.trim_end_matches('/').to_owned())
                    .collect(),
            )
        }
    }

    /// `Err(origin)` when a browser page from another site opens the socket. Clients that send
    /// no Origin (not browsers) are let through: the check protects users' browsers, not the
    /// server.
    fn check(&self, headers: &HeaderMap) -> Result<(), ForeignOrigin> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        // An origin is ASCII (browsers serialise hosts in punycode): anything else is not from a
        // page of ours, whatever it says.
        let Ok(origin) = origin.to_str() else {
            let origin = String::from_utf8_lossy(origin.as_bytes())
                .escape_debug()
                .to_string();
            return Err(ForeignOrigin(origin));
        };
        let same_site = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| {
                origin
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest == host)
            });
        match self {
            Origins::Any => Ok(()),
            Origins::Listed(_) if same_site => Ok(()),
            Origins::Listed(list) if list.iter().any(|o| o == origin) => Ok(()),
            Origins::Listed(_) => Err(ForeignOrigin(origin.to_owned())),
        }
    }
}

/// Ready while a stream to signaling is up and ice-config answers, and not draining (the load
/// balancer stops sending browsers here).
fn readiness(shared: &Shared) -> Readiness {
    if shared.stop.is_cancelled() {
        return Readiness {
            ready: false,
            problems: vec!["draining".into()],
        };
    }
    let mut problems = Vec::new();
    if !shared.link.is_connected() {
        problems.push("no stream to signaling".into());
    }
    if !shared.ice_health.answering() {
        problems.push("ice-config does not answer".into());
    }
    Readiness {
        ready: problems.is_empty(),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use svc_common::admin::testing::get;

    use super::*;
    use crate::{ice::IceClient, link::Link, metrics::Metrics, session::SessionLimits};

    /// The router with no signaling and no ice-config behind it: what a request sees before
    /// anything is connected.
    fn router(origins: &[&str]) -> Router {
        let link = Link::new(8, Default::default());
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let shared = Arc::new(Shared {
            link,
            metrics: Metrics::default(),
            ice: IceClient::new(channel, true, Default::default(), Default::default()),
            ice_health: Default::default(),
            limits: SessionLimits::default(),
            stop: Default::default(),
            sessions: Default::default(),
        });
        let state = HttpState {
            shared,
            origins: Origins::parse(&origins.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>()),
            next_session: Arc::default(),
        };
        let static_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../static");
        super::router(state, static_dir)
    }

    #[tokio::test]
    async fn not_ready_without_signaling() {
        assert_eq!(
            get(router(&[]), "/readyz", &[]).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready\nno stream to signaling\nice-config does not answer\n".into()
            )
        );
        assert_eq!(get(router(&[]), "/healthz", &[]).await.0, StatusCode::OK);
        let (status, page) = get(router(&[]), "/", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("id=\"videoOutput\""), "the page");
    }

    #[tokio::test]
    async fn websockets_from_foreign_origins_are_refused() {
        let upgrade = |origin: &'static str| {
            [
                ("host", "calls.example.com"),
                ("origin", origin),
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ]
        };
        let (status, body) = get(router(&[]), "/one2one", &upgrade("https://evil.example")).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::FORBIDDEN,
                "origin https://evil.example is not allowed\n"
            )
        );
        // A byte outside ASCII does not make the origin absent.
        let mut headers = HeaderMap::new();
        for (name, value) in upgrade("https://x") {
            headers.insert(name, value.parse().expect("a header value"));
        }
        let origin = header::HeaderValue::from_bytes(b"https://calls.example.com\xe9")
            .expect("a header value");
        headers.insert(header::ORIGIN, origin);
        assert!(Origins::parse(&[]).check(&headers).is_err());
        // Listed, or the gateway's own: let through to the upgrade (which a oneshot request
        // cannot complete, so it is refused for that, not for its origin).
        for (origins, origin) in [
            (&["https://app.example"][..], "https://app.example"),
            (&[][..], "https://calls.example.com"),
            (&["*"][..], "https://anything.example"),
        ] {
            let (status, _) = get(router(origins), "/one2one", &upgrade(origin)).await;
            assert_ne!(status, StatusCode::FORBIDDEN, "{origin}");
        }
    }
}
