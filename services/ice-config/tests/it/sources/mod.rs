//! The config sources that follow a cluster: the Kubernetes API (against a mocked API server —
//! no Kubernetes API server can run on these machines) and STUNner's config discovery service
//! (against a small in-test server speaking its REST + WebSocket protocol).

mod cds;
mod kube_api;

use std::time::Duration;

use ice_config::{
    metrics::Metrics,
    store::{ConfigStore, Readiness},
};
use testkit::cds::gateway_config;

/// How long a change may take to show.
const WITHIN: Duration = Duration::from_secs(10);

fn new_store() -> ConfigStore {
    ConfigStore::new(Metrics::default())
}

/// What the store serves: each config's name with its first listener's advertised host.
fn served(store: &ConfigStore) -> Vec<(String, String)> {
    let mut served: Vec<(String, String)> = store
        .snapshot()
        .iter()
        .map(|config| {
            let host = config
                .listeners
                .first()
                .and_then(|l| l.endpoint.as_ref())
                .map(|(host, _)| host.clone())
                .unwrap_or_default();
            (config.name.clone(), host)
        })
        .collect();
    served.sort();
    served
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(name, host)| ((*name).to_owned(), (*host).to_owned()))
        .collect()
}

/// Waits until the store serves exactly `expected` (name, host) pairs.
async fn until_served(store: &ConfigStore, expected: &[(&str, &str)]) {
    let expected = pairs(expected);
    testkit::eventually(WITHIN, &format!("the store to serve {expected:?}"), || {
        let done = served(store) == expected;
        async move { done.then_some(()) }
    })
    .await;
}

/// Waits until readiness satisfies `check`, and returns it.
async fn until_readiness(
    store: &ConfigStore,
    what: &str,
    check: impl Fn(&Readiness) -> bool,
) -> Readiness {
    testkit::eventually(WITHIN, what, || {
        let readiness = store.readiness();
        let ok = check(&readiness);
        async move { ok.then_some(readiness) }
    })
    .await
}
