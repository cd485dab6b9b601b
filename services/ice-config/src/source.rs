//! Where STUNner configs come from. Each source runs as one task that writes what it loads
//! into its [`SourceSink`](crate::store::SourceSink) until shutdown.
//!
//! Only the file source exists today (the tutorial's mounted ConfigMap); the Kubernetes API and
//! STUNner's config discovery service plug in beside it.

pub mod file;

pub use file::FileSource;
