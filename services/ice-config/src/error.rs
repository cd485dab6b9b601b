//! The crate's error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no Kubernetes API client (is this running in a cluster, or is KUBECONFIG set?)")]
    Kube(#[source] ::kube::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
