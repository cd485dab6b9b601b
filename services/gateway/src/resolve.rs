//! Where an upstream service is: the endpoints a URL setting names, kept current. A setting is
//! one URL or several, comma-separated; a URL whose host is an IP address is one endpoint, a
//! URL whose host is a name stands for every address the name resolves to (a headless
//! Kubernetes Service: one address per ready pod), resolved again every `every` so that new
//! pods join and vanished ones leave. A failed lookup keeps the addresses already known.

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One endpoint: `scheme://address:port`.
pub type Endpoints = BTreeSet<String>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{0:?} is not an http:// or https:// URL with a host and port")]
    Invalid(String),
    #[error("no URL given")]
    Empty,
}

/// One URL of a setting, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    scheme: String,
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Result<Self, UrlError> {
        let invalid = || UrlError::Invalid(url.to_owned());
        let uri: tonic::transport::Uri = url.parse().map_err(|_| invalid())?;
        let scheme = uri.scheme_str().ok_or_else(invalid)?.to_owned();
        if !matches!(scheme.as_str(), "http" | "https") {
            return Err(invalid());
        }
        let host = uri
            .host()
            .ok_or_else(invalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(Self { scheme, host, port })
    }

    fn fixed(&self) -> Option<String> {
        let ip: std::net::IpAddr = self.host.parse().ok()?;
        Some(endpoint(&self.scheme, SocketAddr::new(ip, self.port)))
    }
}

fn endpoint(scheme: &str, addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => format!("{scheme}://{v4}"),
        SocketAddr::V6(v6) => format!("{scheme}://[{}]:{}", v6.ip(), v6.port()),
    }
}

/// The endpoints `setting` names, now, and the future that keeps them current until `stop`
/// (`None` when nothing needs resolving).
pub fn watch(
    setting: &str,
    every: Duration,
    stop: CancellationToken,
) -> Result<
    (
        watch::Receiver<Endpoints>,
        Option<impl Future<Output = ()> + Send + 'static>,
    ),
    UrlError,
> {
    let targets = setting
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(Target::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if targets.is_empty() {
        return Err(UrlError::Empty);
    }
    let fixed: Endpoints = targets.iter().filter_map(Target::fixed).collect();
    let named: Vec<Target> = targets
        .into_iter()
        .filter(|t| t.fixed().is_none())
        .collect();
    let (tx, rx) = watch::channel(fixed.clone());
    if named.is_empty() {
        return Ok((rx, None));
    }
    let resolver = async move {
        let mut known: BTreeSet<String> = BTreeSet::new();
        loop {
            for target in &named {
                match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
                    Ok(found) => {
                        known.retain(|e| !belongs(e, target));
                        known.extend(found.map(|addr| endpoint(&target.scheme, addr)));
                    }
                    Err(error) => {
                        tracing::warn!(host = %target.host, %error, "cannot resolve; keeping the known addresses");
                    }
                }
            }
            let all: Endpoints = fixed.union(&known).cloned().collect();
            tx.send_if_modified(|current| {
                if *current == all {
                    return false;
                }
                for gone in current.difference(&all) {
                    tracing::info!(endpoint = %gone, "upstream address gone");
                }
                for new in all.difference(current) {
                    tracing::info!(endpoint = %new, "upstream address added");
                }
                *current = all.clone();
                true
            });
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    };
    Ok((rx, Some(resolver)))
}

/// Whether a resolved endpoint came from `target` (same scheme and port). Only used for names,
/// whose addresses are replaced wholesale on each successful lookup.
fn belongs(endpoint: &str, target: &Target) -> bool {
    endpoint.starts_with(&format!("{}://", target.scheme))
        && endpoint.ends_with(&format!(":{}", target.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_are_fixed_and_lists_are_split() {
        let stop = CancellationToken::new();
        let (rx, resolver) = watch(
            "http://127.0.0.1:50052, http://[::1]:50052,http://127.0.0.2:7",
            Duration::from_secs(1),
            stop,
        )
        .expect("valid");
        assert!(resolver.is_none(), "nothing to resolve");
        let endpoints: Vec<String> = rx.borrow().iter().cloned().collect();
        assert_eq!(
            endpoints,
            [
                "http://127.0.0.1:50052",
                "http://127.0.0.2:7",
                "http://[::1]:50052"
            ]
        );
    }

    #[tokio::test]
    async fn names_resolve() {
        let stop = CancellationToken::new();
        let (mut rx, resolver) = watch(
            "http://localhost:50052",
            Duration::from_secs(60),
            stop.clone(),
        )
        .expect("valid");
        let task = tokio::spawn(resolver.expect("a name to resolve"));
        rx.wait_for(|e| e.contains("http://127.0.0.1:50052"))
            .await
            .expect("resolved");
        stop.cancel();
        task.await.expect("resolver ends");
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in ["", "127.0.0.1:50052", "ftp://x:1", "http://"] {
            assert!(
                watch(bad, Duration::from_secs(1), CancellationToken::new()).is_err(),
                "{bad:?}"
            );
        }
    }
}
