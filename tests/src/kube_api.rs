//! A stand-in for the Kubernetes API server's ConfigMap endpoints, for running ice-config's
//! `kubernetes` source as a process (no real API server can run on these machines): lists
//! (`GET /api/v1[/namespaces/{ns}]/configmaps`, label selector `k=v` honoured) and watches
//! (`?watch=true`, a stream of JSON watch events that stays open), over plain HTTP or over TLS
//! with a certificate from [`certificates`], as in a pod. Every request is recorded, with its
//! `Authorization` header, so a test can hold it against the manifests' RBAC.
//! (Over 300 lines: one stand-in API server, with its certificates.)

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Path as UrlPath, Query, State},
    http::{HeaderMap, header},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_stream::{StreamExt, wrappers::BroadcastStream};
use tokio_util::sync::CancellationToken;

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    /// `list` or `watch`.
    pub verb: String,
    /// The namespace asked about; `None` for all namespaces.
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub authorization: Option<String>,
}

/// The running stand-in; stops when dropped.
pub struct ApiStandIn {
    addr: SocketAddr,
    tls: bool,
    state: Arc<Shared>,
    stop: CancellationToken,
}

struct Shared {
    maps: Mutex<Vec<Value>>,
    version: Mutex<u64>,
    events: broadcast::Sender<(Option<String>, String)>,
    requests: Mutex<Vec<ApiRequest>>,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    watch: bool,
    #[serde(rename = "labelSelector")]
    label_selector: Option<String>,
}

impl ApiStandIn {
    /// Serves on `addr`, over TLS when `tls` names a certificate and key (PEM).
    pub async fn start(addr: SocketAddr, tls: Option<(&Path, &Path)>) -> ApiStandIn {
        let state = Arc::new(Shared {
            maps: Mutex::default(),
            version: Mutex::new(100),
            events: broadcast::channel(64).0,
            requests: Mutex::default(),
        });
        let router = Router::new()
            .route("/api/v1/configmaps", get(all_namespaces))
            .route(
                "/api/v1/namespaces/{namespace}/configmaps",
                get(one_namespace),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the API stand-in");
        let addr = listener.local_addr().expect("bound");
        let stop = CancellationToken::new();
        match tls {
            Some((cert, key)) => {
                let files = gateway::tls::CertFiles {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                };
                let acceptor = gateway::tls::Certificates::load(files)
                    .and_then(|certificates| certificates.acceptor())
                    .expect("TLS certificate");
                let listener = svc_common::connections::CappedListener::new(
                    listener,
                    Arc::new(tokio::sync::Semaphore::new(1024)),
                );
                tokio::spawn(svc_common::connections::serve_http(
                    listener,
                    router,
                    Duration::from_secs(10),
                    stop.clone(),
                    move |connection| gateway::tls::handshake(acceptor.clone(), connection),
                ));
            }
            None => {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await;
                });
            }
        }
        ApiStandIn {
            addr,
            tls: tls.is_some(),
            state,
            stop,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server URL, as a kubeconfig names it.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Adds or replaces a ConfigMap (by namespace and name) and sends it to open watches.
    pub fn put(&self, mut map: Value) {
        let version = {
            let mut version = lock(&self.state.version);
            *version += 1;
            *version
        };
        map["metadata"]["resourceVersion"] = json!(version.to_string());
        let key = |m: &Value| {
            (
                m["metadata"]["namespace"].clone(),
                m["metadata"]["name"].clone(),
            )
        };
        let mut maps = lock(&self.state.maps);
        let kind = match maps.iter_mut().find(|m| key(m) == key(&map)) {
            Some(existing) => {
                *existing = map.clone();
                "MODIFIED"
            }
            None => {
                maps.push(map.clone());
                "ADDED"
            }
        };
        let namespace = map["metadata"]["namespace"].as_str().map(str::to_owned);
        let event = json!({"type": kind, "object": map});
        // Nobody watching is fine.
        let _ = self.state.events.send((namespace, format!("{event}\n")));
    }

    pub fn requests(&self) -> Vec<ApiRequest> {
        lock(&self.state.requests).clone()
    }
}

impl Drop for ApiStandIn {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A ConfigMap holding `config` under `stunnerd.conf`, labelled as the legacy operator does.
pub fn config_map(namespace: &str, name: &str, config: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace,
            "labels": {"stunner.l7mp.io/owned-by": "stunner"}},
        "data": {"stunnerd.conf": config.to_string()},
    })
}

async fn all_namespaces(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Body {
    answer(&state, None, &headers, query)
}

async fn one_namespace(
    State(state): State<Arc<Shared>>,
    UrlPath(namespace): UrlPath<String>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Body {
    answer(&state, Some(namespace), &headers, query)
}

fn answer(
    state: &Shared,
    namespace: Option<String>,
    headers: &HeaderMap,
    query: ListQuery,
) -> Body {
    lock(&state.requests).push(ApiRequest {
        verb: if query.watch { "watch" } else { "list" }.to_owned(),
        namespace: namespace.clone(),
        label_selector: query.label_selector.clone(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    if query.watch {
        let events = BroadcastStream::new(state.events.subscribe())
            .filter_map(|event| event.ok())
            .filter(move |(ns, _)| namespace.is_none() || *ns == namespace)
            .map(|(_, line)| Ok::<_, Infallible>(line));
        return Body::from_stream(events);
    }
    let selected = |map: &Value| {
        let in_namespace = namespace
            .as_deref()
            .is_none_or(|ns| map["metadata"]["namespace"].as_str() == Some(ns));
        let labelled = query.label_selector.as_deref().is_none_or(|selector| {
            selector.split(',').all(|term| {
                term.split_once('=')
                    .is_some_and(|(k, v)| map["metadata"]["labels"][k].as_str() == Some(v))
            })
        });
        in_namespace && labelled
    };
    let items: Vec<Value> = lock(&state.maps)
        .iter()
        .filter(|m| selected(m))
        .cloned()
        .collect();
    let version = lock(&state.version).to_string();
    let list = json!({"apiVersion": "v1", "kind": "ConfigMapList",
        "metadata": {"resourceVersion": version}, "items": items});
    Body::from(list.to_string())
}

/// A CA and a server certificate it signed for `ip` (what a pod's
/// `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt` and the API server hold), made with
/// openssl in `dir`: `(ca.crt, server cert, server key)`.
pub fn certificates(dir: &Path, ip: IpAddr) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=kubernetes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        path("server.ext"),
        format!("subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("write extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    (path("ca.crt"), path("server.crt"), path("server.key"))
}
