//! STUNner configs in ConfigMaps, watched through the Kubernetes API: the legacy operator's
//! `stunnerd-config` (key `stunnerd.conf`), label-selected, in one namespace or in all of them,
//! without mounting anything into the pod (and so without the old library's same-namespace
//! limit).
//!
//! `kube`'s watcher lists, then watches, and lists again whenever the watch cannot resume
//! (a `410 Gone`, a lost connection); each fresh listing replaces what this source serves, so
//! a ConfigMap deleted while the watch was down is withdrawn too.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use tokio_util::sync::CancellationToken;

use super::objects::{ObjectError, Objects, Parsed};
use crate::{
    store::{ConfigStore, SourceSink},
    stunner_config,
};

/// Which ConfigMaps hold STUNner configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// `None` watches every namespace (which needs a ClusterRole).
    pub namespace: Option<String>,
    /// A Kubernetes label selector, e.g. `stunner.l7mp.io/owned-by=stunner`.
    pub labels: String,
    /// The data key holding the config.
    pub key: String,
}

/// Watches the selected ConfigMaps and loads their configs into its sink.
pub struct KubeSource {
    api: Api<ConfigMap>,
    selection: Selection,
    sink: SourceSink,
}

impl KubeSource {
    /// Registers the source with `store`, so readiness waits for its first complete listing.
    pub fn new(client: Client, selection: Selection, store: &ConfigStore) -> Self {
        let (api, scope) = match &selection.namespace {
            Some(namespace) => (
                Api::namespaced(client, namespace),
                format!("namespace {namespace}"),
            ),
            None => (Api::all(client), "all namespaces".to_owned()),
        };
        let sink = store.sink(format!(
            "Kubernetes ConfigMaps ({scope}, labels {:?}, key {:?})",
            selection.labels, selection.key
        ));
        Self {
            api,
            selection,
            sink,
        }
    }

    /// Watches until shutdown. API errors are reported (readiness names them) and retried with
    /// backoff; what was loaded stays in force meanwhile.
    pub async fn run(self, shutdown: CancellationToken) {
        let config = watcher::Config::default().labels(&self.selection.labels);
        let mut events = watcher::watcher(self.api.clone(), config)
            .default_backoff()
            .boxed();
        let mut objects = Objects::default();
        // A listing in progress: objects are collected until it is complete.
        let mut listing: Option<Vec<(String, Parsed)>> = None;
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                None => return,
                Some(Err(error)) => {
                    tracing::warn!(source = self.sink.source(), %error, "Kubernetes API watch failed; retrying");
                    self.sink.reachable(false);
                    self.sink.failed(format!("Kubernetes API: {error}"));
                }
                Some(Ok(Event::Init)) => listing = Some(Vec::new()),
                Some(Ok(Event::InitApply(map))) => {
                    let parsed = self.parse(&map);
                    listing
                        .get_or_insert_with(Vec::new)
                        .push((key(&map), parsed));
                }
                Some(Ok(Event::InitDone)) => {
                    self.sink.reachable(true);
                    objects.replace(listing.take().unwrap_or_default());
                    objects.publish(&self.sink);
                }
                Some(Ok(Event::Apply(map))) => {
                    objects.apply(&key(&map), self.parse(&map));
                    objects.publish(&self.sink);
                }
                Some(Ok(Event::Delete(map))) => {
                    objects.remove(&key(&map));
                    objects.publish(&self.sink);
                }
            }
        }
    }

    fn parse(&self, map: &ConfigMap) -> Parsed {
        let text = map
            .data
            .as_ref()
            .and_then(|data| data.get(&self.selection.key))
            .ok_or_else(|| ObjectError::MissingKey(self.selection.key.clone()))?;
        Ok(stunner_config::parse_document(text)?)
    }
}

fn key(map: &ConfigMap) -> String {
    format!("{}/{}", map.namespace().unwrap_or_default(), map.name_any())
}
