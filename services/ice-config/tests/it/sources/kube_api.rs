//! The Kubernetes API source against a mocked API server (`tower-test`): no Kubernetes API
//! server can run on these machines, so each test plays the API server's part — the list, the
//! watch and its events, a `410 Gone` restart, errors — request by request, with the
//! responses `kube`'s watcher gets from a real one.

use std::pin::Pin;

use ::kube::client::Body;
use http::{Request, Response, StatusCode};
use ice_config::source::{KubeSource, kube::Selection};
use serde_json::{Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};
use tower_test::mock::{self, Handle};

use super::*;

const LABELS: &str = "stunner.l7mp.io/owned-by=stunner";

/// The API server's side of the mocked connection.
struct ApiServer {
    handle: Pin<Box<Handle<Request<Body>, Response<Body>>>>,
}

impl ApiServer {
    /// The next request's path and query, and the means to answer it.
    async fn next(&mut self) -> (String, mock::SendResponse<Response<Body>>) {
        let (request, respond) = tokio::time::timeout(WITHIN, self.handle.as_mut().next_request())
            .await
            .expect("the source to call the API server")
            .expect("the client is alive");
        assert_eq!(request.method(), http::Method::GET);
        let uri = request.uri().to_string();
        (uri, respond)
    }

    /// Expects a list of `path` and answers with `maps` at `version`.
    async fn list(&mut self, path: &str, maps: &[Value], version: &str) {
        let (uri, respond) = self.next().await;
        assert!(
            uri.starts_with(&format!("{path}?")),
            "expected a list of {path}, got {uri}"
        );
        assert!(!uri.contains("watch=true"), "expected a list, got {uri}");
        assert!(
            uri.contains("labelSelector=stunner.l7mp.io%2Fowned-by%3Dstunner"),
            "{uri}"
        );
        let list = json!({
            "apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": version},
            "items": maps,
        });
        respond.send_response(json_response(StatusCode::OK, &list));
    }

    /// Expects a watch of `path` and answers with `events`, after which the watch ends (as a
    /// real watch does at its timeout) and the watcher resumes from the last version.
    /// Returns the request's URI.
    async fn watch(&mut self, path: &str, events: &[Value]) -> String {
        let (uri, respond) = self.next().await;
        assert!(
            uri.starts_with(&format!("{path}?")),
            "expected a watch of {path}, got {uri}"
        );
        assert!(uri.contains("watch=true"), "expected a watch, got {uri}");
        let mut body = Vec::new();
        for event in events {
            serde_json::to_writer(&mut body, event).expect("serialize");
            body.push(b'\n');
        }
        respond.send_response(Response::new(Body::from(body)));
        uri
    }

    /// Expects any request and fails it with a Kubernetes `Status`.
    async fn fail(&mut self, code: StatusCode, reason: &str) {
        let (_, respond) = self.next().await;
        let status = json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": format!("mocked {reason}"), "reason": reason, "code": code.as_u16(),
        });
        respond.send_response(json_response(code, &status));
    }
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(value).expect("serialize")));
    *response.status_mut() = code;
    response
}

/// A `stunnerd-config`-style ConfigMap holding `config` under `stunnerd.conf`.
/// `testkit`'s legacy-operator ConfigMap, at a resource version.
fn config_map(namespace: &str, name: &str, version: &str, config: &Value) -> Value {
    let mut map = testkit::kube_api::config_map(namespace, name, config);
    map["metadata"]["resourceVersion"] = json!(version);
    map
}

fn event(kind: &str, object: &Value) -> Value {
    json!({"type": kind, "object": object})
}

/// Starts a source for `namespace` (all when `None`) on a mocked client.
fn start(namespace: Option<&str>, store: &ConfigStore) -> (ApiServer, DropGuard) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = ::kube::Client::new(service, "default");
    let selection = Selection {
        namespace: namespace.map(str::to_owned),
        labels: LABELS.to_owned(),
        key: "stunnerd.conf".to_owned(),
    };
    let stop = CancellationToken::new();
    tokio::spawn(KubeSource::new(client, selection, store).run(stop.clone()));
    (
        ApiServer {
            handle: Box::pin(handle),
        },
        stop.drop_guard(),
    )
}

const ALL: &str = "/api/v1/configmaps";
const STUNNER: &str = "/api/v1/namespaces/stunner/configmaps";

#[tokio::test]
async fn follows_adds_updates_and_deletes_across_namespaces() {
    let store = new_store();
    let (mut api, _running) = start(None, &store);
    let legacy = config_map(
        "stunner",
        "stunnerd-config",
        "5",
        &gateway_config("stunner-daemon", "198.51.100.1"),
    );
    api.list(ALL, &[legacy], "10").await;
    until_served(&store, &[("stunner-daemon", "198.51.100.1")]).await;
    assert!(store.readiness().ready);

    // A second STUNner in another namespace.
    let other = config_map(
        "team-b",
        "stunnerd-config",
        "11",
        &gateway_config("team-b-daemon", "198.51.100.2"),
    );
    let uri = api.watch(ALL, &[event("ADDED", &other)]).await;
    assert!(
        uri.contains("resourceVersion=10"),
        "the watch resumes from the listing: {uri}"
    );
    until_served(
        &store,
        &[
            ("stunner-daemon", "198.51.100.1"),
            ("team-b-daemon", "198.51.100.2"),
        ],
    )
    .await;

    let updated = config_map(
        "stunner",
        "stunnerd-config",
        "12",
        &gateway_config("stunner-daemon", "198.51.100.9"),
    );
    let uri = api.watch(ALL, &[event("MODIFIED", &updated)]).await;
    assert!(uri.contains("resourceVersion=11"), "{uri}");
    until_served(
        &store,
        &[
            ("stunner-daemon", "198.51.100.9"),
            ("team-b-daemon", "198.51.100.2"),
        ],
    )
    .await;

    let deleted = config_map(
        "team-b",
        "stunnerd-config",
        "13",
        &gateway_config("team-b-daemon", "198.51.100.2"),
    );
    api.watch(ALL, &[event("DELETED", &deleted)]).await;
    until_served(&store, &[("stunner-daemon", "198.51.100.9")]).await;
    assert_eq!(store.readiness().problems, Vec::<String>::new());
}

#[tokio::test]
async fn a_malformed_config_map_keeps_the_last_good_config() {
    let store = new_store();
    let (mut api, _running) = start(Some("stunner"), &store);
    let good = config_map(
        "stunner",
        "stunnerd-config",
        "5",
        &gateway_config("stunner-daemon", "198.51.100.1"),
    );
    api.list(STUNNER, &[good], "10").await;
    until_served(&store, &[("stunner-daemon", "198.51.100.1")]).await;

    let mut broken = config_map("stunner", "stunnerd-config", "11", &json!({}));
    broken["data"]["stunnerd.conf"] = json!("{\"version\": \"v1\", \"listeners\": [");
    api.watch(STUNNER, &[event("MODIFIED", &broken)]).await;
    let readiness = until_readiness(&store, "the broken ConfigMap to be reported", |r| {
        !r.problems.is_empty()
    })
    .await;
    assert!(readiness.ready);
    assert!(
        readiness.problems[0].contains("stunner/stunnerd-config: invalid STUNner config"),
        "{readiness:?}"
    );
    assert_eq!(served(&store), pairs(&[("stunner-daemon", "198.51.100.1")]));

    let mut keyless = config_map("stunner", "stunnerd-config", "12", &json!({}));
    keyless["data"] = json!({"other.conf": "{}"});
    api.watch(STUNNER, &[event("MODIFIED", &keyless)]).await;
    until_readiness(&store, "the missing key to be reported", |r| {
        r.problems
            .iter()
            .any(|p| p.contains("has no data key \"stunnerd.conf\""))
    })
    .await;
    assert_eq!(served(&store), pairs(&[("stunner-daemon", "198.51.100.1")]));

    let fixed = config_map(
        "stunner",
        "stunnerd-config",
        "13",
        &gateway_config("stunner-daemon", "198.51.100.3"),
    );
    api.watch(STUNNER, &[event("MODIFIED", &fixed)]).await;
    until_served(&store, &[("stunner-daemon", "198.51.100.3")]).await;
    until_readiness(&store, "the problem to clear", |r| r.problems.is_empty()).await;
}

#[tokio::test]
async fn a_watch_restart_relists_and_drops_what_vanished_meanwhile() {
    let store = new_store();
    let (mut api, _running) = start(Some("stunner"), &store);
    let a = config_map(
        "stunner",
        "stunnerd-config",
        "5",
        &gateway_config("daemon-a", "198.51.100.1"),
    );
    let b = config_map(
        "stunner",
        "stunnerd-config-b",
        "6",
        &gateway_config("daemon-b", "198.51.100.2"),
    );
    api.list(STUNNER, &[a.clone(), b], "10").await;
    until_served(
        &store,
        &[("daemon-a", "198.51.100.1"), ("daemon-b", "198.51.100.2")],
    )
    .await;

    // The API server has compacted its history: the watch cannot resume.
    let gone = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "too old resource version: 10 (200)", "reason": "Expired", "code": 410,
    });
    api.watch(STUNNER, &[event("ERROR", &gone)]).await;
    // The watcher lists again; b was deleted while nobody watched.
    api.list(STUNNER, &[a], "200").await;
    until_served(&store, &[("daemon-a", "198.51.100.1")]).await;
    let uri = api.watch(STUNNER, &[]).await;
    assert!(uri.contains("resourceVersion=200"), "{uri}");
}

#[tokio::test]
async fn api_errors_are_reported_and_retried() {
    let store = new_store();
    let (mut api, _running) = start(Some("stunner"), &store);
    api.fail(StatusCode::FORBIDDEN, "Forbidden").await;
    let readiness = until_readiness(&store, "the error to be reported", |r| {
        r.problems
            .iter()
            .any(|p| p.contains("Kubernetes API") && p.contains("Forbidden"))
    })
    .await;
    assert!(!readiness.ready, "nothing loaded yet: {readiness:?}");

    // Retried with backoff; the next listing works.
    let good = config_map(
        "stunner",
        "stunnerd-config",
        "5",
        &gateway_config("stunner-daemon", "198.51.100.1"),
    );
    api.list(STUNNER, &[good], "10").await;
    until_served(&store, &[("stunner-daemon", "198.51.100.1")]).await;
    let readiness = until_readiness(&store, "ready", |r| r.ready).await;
    assert_eq!(readiness.problems, Vec::<String>::new());
}
