//! A gRPC channel spread over every endpoint the ICE_CONFIG_URL setting stands for
//! ([`crate::resolve`]), so that unary requests are balanced across replicas. With a headless
//! Kubernetes Service the name resolves to one address per ready pod; plain ClusterIP would pin
//! the one long-lived HTTP/2 connection (and so every request) to one pod.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, channel::Change};

use crate::resolve;

/// Builds the channel for `setting`, and the future that keeps its endpoints current until
/// `stop`.
pub fn channel(
    setting: &str,
    every: Duration,
    configure: impl Fn(Endpoint) -> Endpoint + Send + Sync + 'static,
    stop: CancellationToken,
) -> anyhow::Result<(Channel, impl Future<Output = ()> + Send + 'static)> {
    let (mut endpoints, resolver) = resolve::watch(setting, every, stop.clone())?;
    let (channel, changes) = Channel::balance_channel::<String>(64);
    let follow = async move {
        let resolving = async {
            if let Some(resolver) = resolver {
                resolver.await;
            }
        };
        let feeding = async {
            let mut known = resolve::Endpoints::new();
            loop {
                let current = endpoints.borrow_and_update().clone();
                for gone in known.difference(&current) {
                    let _ = changes.send(Change::Remove(gone.clone())).await;
                }
                for new in current.difference(&known) {
                    match Endpoint::from_shared(new.clone()) {
                        Ok(endpoint) => {
                            let _ = changes
                                .send(Change::Insert(new.clone(), configure(endpoint)))
                                .await;
                        }
                        Err(error) => tracing::warn!(endpoint = %new, %error, "unusable endpoint"),
                    }
                }
                known = current;
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = endpoints.changed() => if changed.is_err() { return },
                }
            }
        };
        tokio::join!(resolving, feeding);
    };
    Ok((channel, follow))
}
