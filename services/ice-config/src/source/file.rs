//! A STUNner config file, as the tutorial mounts the `stunnerd-config` ConfigMap.
//!
//! The file is polled and its content compared, rather than watched with inotify: Kubernetes
//! updates a mounted ConfigMap by atomically swapping the `..data` symlink in its folder, which a
//! watch on the file itself misses after the first update, and a watch on the folder misses on
//! some volume types. Reading a few kilobytes every quarter second costs nothing and sees every
//! kind of update — a rewrite, a rename over the file, or a symlink swap — within one interval.

use std::{io::ErrorKind, path::PathBuf, time::Duration};

use tokio::time::{MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use crate::{
    store::{ConfigStore, SourceSink},
    stunner_config,
};

/// Polls one file and loads it into its sink whenever its content changes.
pub struct FileSource {
    path: PathBuf,
    every: Duration,
    sink: SourceSink,
    /// What was read last, so an unchanged file is neither reparsed nor re-reported.
    last: Option<Result<Vec<u8>, String>>,
}

impl FileSource {
    /// Registers the source with `store`, so readiness waits for it.
    pub fn new(path: impl Into<PathBuf>, every: Duration, store: &ConfigStore) -> Self {
        let path = path.into();
        let sink = store.sink(format!("file {}", path.display()));
        Self {
            path,
            every,
            sink,
            last: None,
        }
    }

    /// Reads the file once and loads it if it changed.
    pub async fn poll(&mut self) {
        let read = tokio::fs::read(&self.path)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => "file not found".to_owned(),
                _ => format!("cannot read: {e}"),
            });
        if self.last.as_ref() == Some(&read) {
            return;
        }
        self.sink.reachable(read.is_ok());
        match &read {
            Ok(bytes) => self.load(bytes.clone()).await,
            Err(error) => {
                tracing::warn!(source = self.sink.source(), %error, "STUNner config unavailable");
                self.sink.failed(error.clone());
            }
        }
        self.last = Some(read);
    }

    /// Polls until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticks = interval(self.every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => self.poll().await,
            }
        }
    }

    async fn load(&self, bytes: Vec<u8>) {
        let sink = &self.sink;
        // Parsed off the async runtime: a large YAML document takes a while, and requests must
        // not wait for it.
        let parsed = tokio::task::spawn_blocking(move || {
            std::str::from_utf8(&bytes)
                .map_err(|_| "not valid UTF-8".to_owned())
                .and_then(|text| stunner_config::parse_document(text).map_err(|e| e.to_string()))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the parser failed: {e}")));
        match parsed {
            Ok(configs) => {
                tracing::info!(
                    source = sink.source(),
                    configs = configs.len(),
                    names = ?configs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
                    "STUNner config loaded"
                );
                sink.loaded(configs);
            }
            Err(error) => {
                tracing::error!(
                    source = sink.source(),
                    %error,
                    "STUNner config rejected; keeping the last good one"
                );
                sink.failed(format!("invalid STUNner config: {error}"));
            }
        }
    }
}
