//! The objects a multi-object source (ConfigMaps, CDS configs) currently sees, each with its
//! last good configs, so one malformed object never withdraws what it served before.

use std::collections::BTreeMap;

use crate::{
    store::SourceSink,
    stunner_config::{ConfigError, StunnerConfig},
};

/// What one object parsed to: its configs, or why it is unusable.
pub type Parsed = Result<Vec<StunnerConfig>, ObjectError>;

/// Why one object (a ConfigMap, a CDS config) is unusable.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectError {
    #[error("invalid STUNner config: {0}")]
    Invalid(#[from] ConfigError),
    #[error("has no data key {0:?}")]
    MissingKey(String),
}

#[derive(Debug, Default)]
pub struct Objects {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Default)]
struct Entry {
    /// The last good configs; empty when the object has never parsed.
    configs: Vec<StunnerConfig>,
    problem: Option<ObjectError>,
}

impl Objects {
    /// A new version of `key`: its configs when it parsed, otherwise its last good ones stay
    /// and the problem is noted.
    pub fn apply(&mut self, key: &str, parsed: Parsed) {
        let entry = self.entries.entry(key.to_owned()).or_default();
        match parsed {
            Ok(configs) => {
                tracing::info!(
                    object = key,
                    names = ?configs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
                    "STUNner config loaded"
                );
                *entry = Entry {
                    configs,
                    problem: None,
                };
            }
            Err(problem) => {
                tracing::error!(
                    object = key,
                    %problem,
                    "STUNner config rejected; keeping the last good one"
                );
                entry.problem = Some(problem);
            }
        }
    }

    /// `key` is gone: its configs are withdrawn.
    pub fn remove(&mut self, key: &str) {
        if self.entries.remove(key).is_some() {
            tracing::info!(object = key, "STUNner config withdrawn");
        }
    }

    /// A complete fresh listing: objects not in it are gone; those in it keep their last good
    /// configs if this version does not parse.
    pub fn replace(&mut self, listing: impl IntoIterator<Item = (String, Parsed)>) {
        let mut previous = std::mem::take(&mut self.entries);
        for (key, parsed) in listing {
            if let Some(entry) = previous.remove(&key) {
                self.entries.insert(key.clone(), entry);
            }
            self.apply(&key, parsed);
        }
        for gone in previous.keys() {
            tracing::info!(object = gone, "STUNner config withdrawn");
        }
    }

    /// Publishes every object's last good configs, and the current problems, to `sink`.
    pub fn publish(&self, sink: &SourceSink) {
        let configs = self
            .entries
            .values()
            .flat_map(|entry| entry.configs.iter().cloned())
            .collect();
        let problems: Vec<String> = self
            .entries
            .iter()
            .filter_map(|(key, entry)| Some(format!("{key}: {}", entry.problem.as_ref()?)))
            .collect();
        sink.update(configs, &problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{metrics::Metrics, store::ConfigStore, stunner_config::StunnerConfig};

    fn config(name: &str) -> StunnerConfig {
        StunnerConfig::named(name)
    }

    fn names(store: &ConfigStore) -> Vec<String> {
        store.snapshot().iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn a_bad_version_keeps_the_last_good_one_and_a_listing_drops_the_missing() {
        let store = ConfigStore::new(Metrics::default());
        let sink = store.sink("test");
        let mut objects = Objects::default();
        objects.apply("a", Ok(vec![config("a")]));
        objects.apply("b", Ok(vec![config("b")]));
        objects.apply("a", Err(ObjectError::Invalid(ConfigError::Empty)));
        objects.publish(&sink);
        assert_eq!(names(&store), ["a", "b"]);
        assert_eq!(
            store.readiness().problems,
            [
                "test: a: invalid STUNner config: the document is empty (serving the last good config)"
            ]
        );

        objects.replace([
            (
                "a".to_owned(),
                Err(ObjectError::MissingKey("still broken".into())),
            ),
            ("c".to_owned(), Ok(vec![config("c")])),
        ]);
        objects.publish(&sink);
        assert_eq!(names(&store), ["a", "c"], "b was not listed: gone");

        objects.remove("a");
        objects.publish(&sink);
        assert_eq!(names(&store), ["c"]);
        assert!(store.readiness().problems.is_empty());
    }
}
