//! Where STUNner configs come from. Each source runs as one task that writes what it loads
//! into its [`SourceSink`](crate::store::SourceSink) until shutdown:
//!
//! - [`FileSource`]: a file, e.g. the tutorial's mounted `stunnerd-config` ConfigMap;
//! - [`KubeSource`]: ConfigMaps watched through the Kubernetes API;
//! - [`CdsSource`]: STUNner's config discovery service (the operator's current way).

pub mod cds;
pub mod file;
pub mod kube;
mod objects;

pub use cds::CdsSource;
pub use file::FileSource;
pub use kube::KubeSource;
