//! The configs currently in force, merged from every config source.
//!
//! Each source (a file, later the Kubernetes API or STUNner's config discovery service) owns a
//! slot. A source that loads successfully replaces its slot; one that fails keeps its last good
//! configs and records why, for readiness and logs. Readers take a cheap snapshot
//! (`Arc<ConfigSet>`) or subscribe to changes (the watch stream, the health reporter).
//! (Just over 300 lines with its tests.)

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::watch;

use crate::{metrics::Metrics, stunner_config::StunnerConfig};

/// An immutable set of configs, ordered by source and then as the source listed them.
#[derive(Debug, Default)]
pub struct ConfigSet {
    configs: Vec<StunnerConfig>,
    /// Bumped on every successful load, so watchers can tell snapshots apart.
    generation: u64,
}

impl ConfigSet {
    pub fn new(configs: Vec<StunnerConfig>) -> Self {
        Self {
            configs,
            generation: 0,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &StunnerConfig> {
        self.configs.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.configs.len()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Whether the service can answer (every source has loaded at least once), and one line per
/// source that has not loaded yet or whose last load failed.
pub use svc_common::admin::Readiness;

/// A cloneable handle to the shared store.
#[derive(Clone)]
pub struct ConfigStore {
    shared: Arc<Shared>,
}

/// The handle one source writes through.
#[derive(Clone)]
pub struct SourceSink {
    store: ConfigStore,
    source: String,
}

struct Shared {
    // A std Mutex: held only for short, non-async bookkeeping.
    slots: Mutex<BTreeMap<String, Slot>>,
    published: watch::Sender<Arc<ConfigSet>>,
    metrics: Metrics,
}

#[derive(Default)]
struct Slot {
    /// The last good configs; `None` until the first successful load.
    configs: Option<Vec<StunnerConfig>>,
    error: Option<String>,
}

// === impl ConfigStore ===

impl ConfigStore {
    pub fn new(metrics: Metrics) -> Self {
        let (published, _) = watch::channel(Arc::new(ConfigSet::default()));
        Self {
            shared: Arc::new(Shared {
                slots: Mutex::default(),
                published,
                metrics,
            }),
        }
    }

    /// Registers a source, so readiness waits for it, and returns its write handle.
    pub fn sink(&self, source: impl Into<String>) -> SourceSink {
        let source = source.into();
        self.slots().entry(source.clone()).or_default();
        SourceSink {
            store: self.clone(),
            source,
        }
    }

    pub fn snapshot(&self) -> Arc<ConfigSet> {
        self.shared.published.borrow().clone()
    }

    /// A receiver that sees every published snapshot from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ConfigSet>> {
        self.shared.published.subscribe()
    }

    pub fn readiness(&self) -> Readiness {
        let slots = self.slots();
        let mut ready = true;
        let mut problems = Vec::new();
        for (source, slot) in slots.iter() {
            match (&slot.configs, &slot.error) {
                (None, None) => {
                    ready = false;
                    problems.push(format!("{source}: not loaded yet"));
                }
                (None, Some(error)) => {
                    ready = false;
                    problems.push(format!("{source}: {error}"));
                }
                (Some(_), Some(error)) => {
                    problems.push(format!("{source}: {error} (serving the last good config)"));
                }
                (Some(_), None) => {}
            }
        }
        Readiness { ready, problems }
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        // A panic while holding this lock cannot leave the map half-updated (every update is a
        // single insert), so a poisoned lock is still consistent.
        self.shared
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, slots: &BTreeMap<String, Slot>) {
        let configs: Vec<StunnerConfig> = slots
            .values()
            .filter_map(|slot| slot.configs.as_ref())
            .flatten()
            .cloned()
            .collect();
        self.shared.metrics.set_configs_loaded(configs.len());
        self.shared.published.send_modify(|current| {
            *current = Arc::new(ConfigSet {
                configs,
                generation: current.generation + 1,
            });
        });
    }
}

// === impl SourceSink ===

impl SourceSink {
    /// A successful load: the source's configs are replaced and published.
    pub fn loaded(&self, configs: Vec<StunnerConfig>) {
        let mut slots = self.store.slots();
        let slot = slots.entry(self.source.clone()).or_default();
        slot.configs = Some(configs);
        slot.error = None;
        self.store.shared.metrics.config_reload(true);
        self.store.publish(&slots);
    }

    /// A failed load: the last good configs stay; the error is kept for readiness.
    pub fn failed(&self, error: impl Into<String>) {
        let mut slots = self.store.slots();
        slots.entry(self.source.clone()).or_default().error = Some(error.into());
        self.store.shared.metrics.config_reload(false);
    }

    /// A source made of several objects (ConfigMaps, CDS configs) after any change: `configs`
    /// are the last good configs of every object, `problems` say which objects are currently
    /// malformed (their last good config, if any, is part of `configs`).
    pub fn update(&self, configs: Vec<StunnerConfig>, problems: &[String]) {
        let mut slots = self.store.slots();
        let slot = slots.entry(self.source.clone()).or_default();
        slot.configs = Some(configs);
        slot.error = (!problems.is_empty()).then(|| problems.join("; "));
        self.store.shared.metrics.config_reload(problems.is_empty());
        self.store.publish(&slots);
    }

    /// The source is gone (e.g. its Gateway was deleted): its configs are withdrawn.
    pub fn cleared(&self) {
        let mut slots = self.store.slots();
        let slot = slots.entry(self.source.clone()).or_default();
        slot.configs = Some(Vec::new());
        slot.error = None;
        self.store.publish(&slots);
    }

    /// Whether the source can be read at all (the file exists, the API server or the config
    /// discovery service answers), apart from whether what it holds parses.
    pub fn reachable(&self, up: bool) {
        self.store.shared.metrics.source_up(&self.source, up);
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stunner_config::StunnerConfig;

    fn config(name: &str) -> StunnerConfig {
        StunnerConfig::named(name)
    }

    #[test]
    fn a_failed_load_keeps_the_last_good_configs() {
        let store = ConfigStore::new(Metrics::default());
        let mut changes = store.subscribe();
        let file = store.sink("file:/a");
        assert_eq!(
            store.readiness(),
            Readiness {
                ready: false,
                problems: vec!["file:/a: not loaded yet".into()]
            }
        );

        file.failed("not valid JSON");
        assert!(!store.readiness().ready);
        assert_eq!(store.readiness().problems, ["file:/a: not valid JSON"]);
        assert!(
            !changes.has_changed().expect("open"),
            "a failure publishes nothing"
        );

        file.loaded(vec![config("one")]);
        assert!(changes.has_changed().expect("open"));
        assert_eq!(
            store.snapshot().iter().next().map(|c| c.name.as_str()),
            Some("one")
        );
        assert_eq!(
            store.readiness(),
            Readiness {
                ready: true,
                problems: vec![]
            }
        );
        let generation = changes.borrow_and_update().generation();

        file.failed("missing `version`");
        assert_eq!(store.snapshot().len(), 1, "last good config kept");
        assert_eq!(store.snapshot().generation(), generation);
        let readiness = store.readiness();
        assert!(readiness.ready);
        assert_eq!(
            readiness.problems,
            ["file:/a: missing `version` (serving the last good config)"]
        );
    }

    #[test]
    fn sources_merge_and_clear_independently() {
        let store = ConfigStore::new(Metrics::default());
        let a = store.sink("a");
        let b = store.sink("b");
        a.loaded(vec![config("a1"), config("a2")]);
        assert!(!store.readiness().ready, "b has not loaded");
        b.loaded(vec![config("b1")]);
        let names = |store: &ConfigStore| -> Vec<String> {
            store.snapshot().iter().map(|c| c.name.clone()).collect()
        };
        assert_eq!(names(&store), ["a1", "a2", "b1"]);
        a.cleared();
        assert_eq!(names(&store), ["b1"]);
        assert!(store.readiness().ready);
    }

    #[test]
    fn a_multi_object_source_serves_its_good_configs_and_names_the_bad_ones() {
        let store = ConfigStore::new(Metrics::default());
        let cds = store.sink("cds");
        cds.update(
            vec![config("ns/a")],
            &["ns/b: missing `version`".to_owned()],
        );
        let readiness = store.readiness();
        assert!(readiness.ready, "the good configs are served");
        assert_eq!(
            readiness.problems,
            ["cds: ns/b: missing `version` (serving the last good config)"]
        );
        assert_eq!(store.snapshot().len(), 1);
        cds.update(vec![config("ns/a"), config("ns/b")], &[]);
        assert_eq!(store.readiness().problems, Vec::<String>::new());
        assert_eq!(store.snapshot().len(), 2);
    }
}
