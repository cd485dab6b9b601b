//! A small config discovery service speaking STUNner's CDS protocol, for tests: the REST
//! listing (`GET /api/v1/configs[/{namespace}[/{name}]]`) and the WebSocket watch
//! (`?watch=true`: the current configs first, then every update, a deleted Gateway as a "zero
//! config"). The test changes configs and breaks connections through the handle.
//! (Over 300 lines: one stand-in server, its REST listing and its watch.)

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::{
        Path, Query, State,
        ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

/// A running fake CDS server; stops when dropped.
pub struct FakeCds {
    addr: SocketAddr,
    state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    configs: Mutex<BTreeMap<String, Value>>,
    updates: broadcast::Sender<(String, Value)>,
    /// Bumped to drop every open watch.
    generation: watch::Sender<u64>,
    available: AtomicBool,
    /// While set, open watches stop reading, so pings go unanswered.
    deaf: watch::Sender<bool>,
    lists: AtomicUsize,
    watches: AtomicUsize,
}

#[derive(Deserialize)]
struct WatchQuery {
    #[serde(default)]
    watch: bool,
}

/// Which configs a request asks for.
#[derive(Clone)]
enum Scope {
    All,
    Namespace(String),
    One(String),
}

impl FakeCds {
    /// Serves on 127.0.0.1 and a free port.
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let state = Arc::new(Shared {
            configs: Mutex::default(),
            updates: broadcast::channel(64).0,
            generation: watch::channel(0).0,
            available: AtomicBool::new(true),
            deaf: watch::channel(false).0,
            lists: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/api/v1/configs", get(all))
            .route("/api/v1/configs/{namespace}", get(namespace))
            .route("/api/v1/configs/{namespace}/{name}", get(one))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the fake CDS");
        let addr = listener.local_addr().expect("bound");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            addr,
            state,
            server,
        }
    }

    /// The base URL, as ice-config's `--cds-url` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds or replaces a config (keyed by its `admin.name`) and pushes it to every watch.
    pub fn put(&self, config: Value) {
        let name = config["admin"]["name"]
            .as_str()
            .expect("a config has admin.name")
            .to_owned();
        self.state.configs().insert(name.clone(), config.clone());
        self.state.send(name, config);
    }

    /// Removes a config and pushes its zero config, as the operator does for a deleted Gateway.
    pub fn delete(&self, name: &str) {
        self.state.configs().remove(name);
        self.state.send(name.to_owned(), zero_config(name));
    }

    /// Pushes a frame that is not a valid config to every watch.
    pub fn push_raw(&self, name: &str, frame: Value) {
        self.state.send(name.to_owned(), frame);
    }

    /// Drops every open watch, as a restarting operator would.
    pub fn disconnect_watches(&self) {
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// While unavailable, listings answer 503 and watches are refused; going unavailable also
    /// drops the open watches.
    pub fn set_available(&self, available: bool) {
        self.state.available.store(available, Ordering::SeqCst);
        if !available {
            self.disconnect_watches();
        }
    }

    /// While deaf, open watches stop reading, so the client's pings go unanswered.
    pub fn set_deaf(&self, deaf: bool) {
        self.state.deaf.send_replace(deaf);
    }

    /// How many listings were answered.
    pub fn lists(&self) -> usize {
        self.state.lists.load(Ordering::SeqCst)
    }

    /// How many watches were opened.
    pub fn watches(&self) -> usize {
        self.state.watches.load(Ordering::SeqCst)
    }
}

impl Drop for FakeCds {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An operator-era (v1) config of Gateway `name` (`namespace/gateway`) whose one listener is
/// advertised at `address`.
pub fn gateway_config(name: &str, address: &str) -> Value {
    json!({
        "version": "v1",
        "admin": {"name": name, "loglevel": "all:INFO"},
        "auth": {"type": "ephemeral", "realm": "stunner.l7mp.io", "credentials": {"secret": "s3cret"}},
        "listeners": [{
            "name": format!("{name}/udp-listener"),
            "protocol": "TURN-UDP",
            "public_address": address,
            "public_port": 3478,
            "address": "$STUNNER_ADDR",
            "port": 3478
        }],
        "clusters": []
    })
}

/// The config the operator sends for a deleted Gateway.
pub fn zero_config(name: &str) -> Value {
    json!({
        "version": "v1",
        "admin": {"name": name},
        "auth": {"type": "static", "credentials": {"username": "dummy-username", "password": "dummy-password"}},
        "listeners": [],
        "clusters": []
    })
}

impl Shared {
    fn configs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        self.configs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, name: String, config: Value) {
        // Nobody watching is fine.
        let _ = self.updates.send((name, config));
    }

    fn matching(&self, scope: &Scope) -> Vec<Value> {
        self.configs()
            .iter()
            .filter(|(name, _)| scope.matches(name))
            .map(|(_, config)| config.clone())
            .collect()
    }
}

impl Scope {
    fn matches(&self, name: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Namespace(ns) => name.split_once('/').is_some_and(|(n, _)| n == ns),
            Scope::One(one) => name == one,
        }
    }
}

async fn all(
    State(state): State<Arc<Shared>>,
    Query(query): Query<WatchQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    answer(state, Scope::All, query, upgrade)
}

async fn namespace(
    State(state): State<Arc<Shared>>,
    Path(namespace): Path<String>,
    Query(query): Query<WatchQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    answer(state, Scope::Namespace(namespace), query, upgrade)
}

async fn one(
    State(state): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<WatchQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    answer(
        state,
        Scope::One(format!("{namespace}/{name}")),
        query,
        upgrade,
    )
}

fn answer(
    state: Arc<Shared>,
    scope: Scope,
    query: WatchQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !state.available.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
    }
    if query.watch {
        return match upgrade {
            Ok(upgrade) => upgrade
                .on_upgrade(move |socket| follow(state, scope, socket))
                .into_response(),
            Err(rejection) => rejection.into_response(),
        };
    }
    state.lists.fetch_add(1, Ordering::SeqCst);
    let items = state.matching(&scope);
    match scope {
        Scope::One(name) => match items.into_iter().next() {
            Some(config) => Json(config).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                Json(json!({"code": 404, "message": format!("config {name} not found")})),
            )
                .into_response(),
        },
        _ => Json(json!({"version": "v1", "items": items})).into_response(),
    }
}

/// One watch: the current configs, then every update in scope, until dropped.
async fn follow(state: Arc<Shared>, scope: Scope, mut socket: WebSocket) {
    state.watches.fetch_add(1, Ordering::SeqCst);
    let mut updates = state.updates.subscribe();
    let mut generation = state.generation.subscribe();
    generation.borrow_and_update();
    for config in state.matching(&scope) {
        if socket
            .send(Message::text(config.to_string()))
            .await
            .is_err()
        {
            return;
        }
    }
    let mut deaf = state.deaf.subscribe();
    loop {
        let is_deaf = *deaf.borrow_and_update();
        tokio::select! {
            _ = generation.changed() => return,
            update = updates.recv() => match update {
                Ok((name, config)) if scope.matches(&name) => {
                    if socket.send(Message::text(config.to_string())).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            },
            // Reading is what answers pings; a deaf watch leaves them unanswered.
            frame = socket.recv(), if !is_deaf => match frame {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            // Until it can hear again.
            _ = deaf.changed(), if is_deaf => {}
        }
    }
}
