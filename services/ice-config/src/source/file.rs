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

use crate::{store::SourceSink, stunner_config};

/// Polls one file and loads it into its sink whenever its content changes.
pub struct FileSource {
    path: PathBuf,
    every: Duration,
}

impl FileSource {
    pub fn new(path: impl Into<PathBuf>, every: Duration) -> Self {
        Self {
            path: path.into(),
            every,
        }
    }

    /// The name this source reports under (readiness, logs).
    pub fn name(&self) -> String {
        format!("file {}", self.path.display())
    }

    pub async fn run(self, sink: SourceSink, shutdown: CancellationToken) {
        let mut ticks = interval(self.every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // What was read last, so an unchanged file is neither reparsed nor re-reported.
        let mut last: Option<Result<Vec<u8>, String>> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let read = tokio::fs::read(&self.path)
                .await
                .map_err(|e| match e.kind() {
                    ErrorKind::NotFound => "file not found".to_owned(),
                    _ => format!("cannot read: {e}"),
                });
            if last.as_ref() == Some(&read) {
                continue;
            }
            match &read {
                Ok(bytes) => self.load(bytes, &sink),
                Err(error) => {
                    tracing::warn!(source = sink.source(), %error, "STUNner config unavailable");
                    sink.failed(error.clone());
                }
            }
            last = Some(read);
        }
    }

    fn load(&self, bytes: &[u8], sink: &SourceSink) {
        let parsed = std::str::from_utf8(bytes)
            .map_err(|_| "not valid UTF-8".to_owned())
            .and_then(|text| stunner_config::parse_document(text).map_err(|e| e.to_string()));
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
