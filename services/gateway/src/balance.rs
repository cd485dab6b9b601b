//! A gRPC channel spread over every address a name resolves to, so that unary requests are
//! balanced across replicas. With a headless Kubernetes Service the name resolves to one
//! address per ready pod; plain ClusterIP would pin the one long-lived HTTP/2 connection (and
//! so every request) to one pod. The name is resolved again every `every`: new pods join,
//! vanished ones leave; a failed lookup keeps the addresses already known.

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, channel::Change};

/// Builds the channel for `url` (`http://host:port`). An IP address needs no resolving and
/// gets a plain lazily-connected channel; a name gets a balanced channel and the future that
/// keeps its addresses current until `stop`.
pub fn channel(
    url: &str,
    every: Duration,
    configure: impl Fn(Endpoint) -> Endpoint + Send + 'static,
    stop: CancellationToken,
) -> anyhow::Result<(Channel, Option<impl Future<Output = ()> + Send + 'static>)> {
    let endpoint = configure(Endpoint::from_shared(url.to_owned())?);
    let uri = endpoint.uri().clone();
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("{url} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok((endpoint.connect_lazy(), None));
    }

    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    let resolver = async move {
        let mut known = BTreeSet::<SocketAddr>::new();
        loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(found) => {
                    let found: BTreeSet<SocketAddr> = found.collect();
                    for gone in known.difference(&found) {
                        tracing::info!(%host, addr = %gone, "upstream address gone");
                        let _ = changes.send(Change::Remove(*gone)).await;
                    }
                    for new in found.difference(&known) {
                        let url = match new {
                            SocketAddr::V4(v4) => format!("{scheme}://{v4}"),
                            SocketAddr::V6(v6) => format!("{scheme}://[{}]:{}", v6.ip(), v6.port()),
                        };
                        match Endpoint::from_shared(url) {
                            Ok(endpoint) => {
                                tracing::info!(%host, addr = %new, "upstream address added");
                                let _ = changes
                                    .send(Change::Insert(*new, configure(endpoint)))
                                    .await;
                            }
                            Err(error) => {
                                tracing::warn!(%host, addr = %new, %error, "unusable address")
                            }
                        }
                    }
                    known = found;
                }
                Err(error) => {
                    tracing::warn!(%host, %error, known = known.len(), "cannot resolve; keeping the known addresses");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    };
    Ok((channel, Some(resolver)))
}
