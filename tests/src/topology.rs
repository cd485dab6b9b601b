//! The services as a deployment would run them: one ice-config, one or more signaling replicas
//! on a shared store (none, Redis, or a Redis Cluster), one or more gateways. Protocol tests are
//! written once against [`Topology`] and run on each [`Store`].
//!
//! With a shared store, browsers are spread over two gateways, and each gateway over its own
//! signaling replicas, so the two parties of a call always talk through different gateways and
//! different replicas, and every delivery between them crosses the store.

use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

use crate::{
    Browser, Service,
    redis::{Redis, RedisCluster},
    stack::{Flags, Launch, ws_url},
};

/// Where signaling keeps its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// One replica, in memory.
    Memory,
    /// Two replicas on one `redis-server`.
    Redis,
    /// Three replicas on a three-master Redis Cluster.
    Cluster,
}

pub struct Topology {
    pub store: Store,
    /// The shared store's URL, if any.
    url: Option<String>,
    /// Each gateway's SIGNALING_URL.
    gateway_signaling: Vec<String>,
    gateway_flags: Vec<String>,
    signaling_flags: Vec<String>,
    pub ice_config: Service,
    pub signaling: Vec<Service>,
    pub gateways: Vec<Service>,
    pub redis: Option<Redis>,
    pub cluster: Option<RedisCluster>,
    pub dir: TempDir,
    next_browser: AtomicUsize,
}

/// Where the gateways attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wiring {
    /// The first gateway to the first replica, the second to the others: the two parties of
    /// a call on different replicas.
    Split,
    /// Every gateway to every replica, as with a headless Service: sessions spread over them.
    Mesh,
}

impl Topology {
    /// One gateway per group of replicas (see [`Store`]).
    pub async fn start(store: Store, stunner_config: &str, flags: Flags<'_>) -> Topology {
        Self::build(store, stunner_config, flags, None, Wiring::Split).await
    }

    /// `gateways` gateways, each attached to every one of `replicas` signaling replicas on a
    /// shared `store`.
    pub async fn mesh(
        store: Store,
        gateways: usize,
        replicas: usize,
        stunner_config: &str,
        flags: Flags<'_>,
    ) -> Topology {
        Self::build(
            store,
            stunner_config,
            flags,
            Some((gateways, replicas)),
            Wiring::Mesh,
        )
        .await
    }

    async fn build(
        store: Store,
        stunner_config: &str,
        flags: Flags<'_>,
        counts: Option<(usize, usize)>,
        wiring: Wiring,
    ) -> Topology {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("stunnerd.conf");
        std::fs::write(&config, stunner_config).expect("write config");
        let env = flags.env.iter().copied();
        let ice_config = Launch::ice_config(&config)
            .args(flags.ice_config)
            .env(env.clone())
            .start()
            .await;
        let (redis, cluster, url, default_replicas) = match store {
            Store::Memory => (None, None, None, 1),
            Store::Redis => {
                let redis = Redis::start().await;
                let url = redis.url();
                (Some(redis), None, Some(url), 2)
            }
            Store::Cluster => {
                let cluster = RedisCluster::start().await;
                let url = cluster.url();
                (None, Some(cluster), Some(url), 3)
            }
        };
        let replicas = counts.map_or(default_replicas, |(_, r)| r);
        let mut signaling = Vec::new();
        for _ in 0..replicas {
            let mut launch = Launch::signaling().args(flags.signaling).env(env.clone());
            if let Some(url) = &url {
                launch = launch.args(["--redis-url", url]);
            }
            signaling.push(launch.start().await);
        }
        let groups: Vec<Vec<&Service>> = match (wiring, replicas) {
            (Wiring::Mesh, _) => {
                let gateways = counts.map_or(1, |(g, _)| g);
                (0..gateways).map(|_| signaling.iter().collect()).collect()
            }
            (Wiring::Split, 1) => vec![vec![&signaling[0]]],
            (Wiring::Split, _) => vec![vec![&signaling[0]], signaling[1..].iter().collect()],
        };
        let ice_url = ice_config.url("grpc", "");
        let mut gateways = Vec::new();
        for group in groups {
            let urls: Vec<String> = group.iter().map(|s| s.url("grpc", "")).collect();
            gateways.push(
                Launch::gateway(&ice_url, &urls.join(","))
                    .args(flags.gateway)
                    .env(env.clone())
                    .start()
                    .await,
            );
        }
        let gateway_signaling = groups_urls(&signaling, wiring, counts);
        Topology {
            store,
            url,
            gateway_signaling,
            gateway_flags: flags.gateway.iter().map(|f| (*f).to_owned()).collect(),
            signaling_flags: flags.signaling.iter().map(|f| (*f).to_owned()).collect(),
            ice_config,
            signaling,
            gateways,
            redis,
            cluster,
            dir,
            next_browser: AtomicUsize::new(0),
        }
    }

    /// The processes that carry calls: gateways, signaling replicas and the store.
    pub fn call_path_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .gateways
            .iter()
            .chain(&self.signaling)
            .filter_map(Service::pid)
            .collect();
        pids.extend(self.redis.as_ref().and_then(Redis::pid));
        pids.extend(self.cluster.iter().flat_map(RedisCluster::pids));
        pids
    }

    /// A browser on the next gateway, in turn.
    pub async fn browser(&self) -> Browser {
        let turn = self.next_browser.fetch_add(1, Ordering::Relaxed);
        Browser::connect(&ws_url(&self.gateways[turn % self.gateways.len()])).await
    }

    /// A browser on gateway `index`.
    pub async fn browser_on(&self, index: usize) -> Browser {
        Browser::connect(&ws_url(&self.gateways[index])).await
    }
}

fn groups_urls(
    signaling: &[Service],
    wiring: Wiring,
    counts: Option<(usize, usize)>,
) -> Vec<String> {
    let url = |s: &Service| s.url("grpc", "");
    let all: Vec<String> = signaling.iter().map(url).collect();
    match (wiring, signaling.len()) {
        (Wiring::Mesh, _) => vec![all.join(","); counts.map_or(1, |(g, _)| g)],
        (Wiring::Split, 1) => vec![all[0].clone()],
        (Wiring::Split, _) => vec![all[0].clone(), all[1..].join(",")],
    }
}

impl Topology {
    /// Starts signaling replica `index` again, on the same ports (a new pod at the old
    /// address), once the old process is gone.
    pub async fn restart_signaling(&mut self, index: usize) {
        let old = &self.signaling[index];
        let (grpc, http) = (old.addr("grpc").to_string(), old.addr("http").to_string());
        let mut launch = Launch::signaling()
            .set("--grpc-addr", &grpc)
            .set("--http-addr", &http)
            .args(&self.signaling_flags);
        if let Some(url) = &self.url {
            launch = launch.args(["--redis-url", url]);
        }
        self.signaling[index] = launch.start().await;
    }

    /// Starts gateway `index` again on the same port, once the old process is gone.
    pub async fn restart_gateway(&mut self, index: usize) {
        let http = self.gateways[index].addr("http").to_string();
        let ice_url = self.ice_config.url("grpc", "");
        self.gateways[index] = Launch::gateway(&ice_url, &self.gateway_signaling[index])
            .set("--http-addr", &http)
            .args(&self.gateway_flags)
            .start()
            .await;
    }

    /// Starts ice-config again on the same ports, once the old process is gone.
    pub async fn restart_ice_config(&mut self) {
        let (grpc, http) = (
            self.ice_config.addr("grpc").to_string(),
            self.ice_config.addr("http").to_string(),
        );
        let config = self.dir.path().join("stunnerd.conf");
        self.ice_config = Launch::ice_config(&config)
            .set("--grpc-addr", &grpc)
            .set("--http-addr", &http)
            .start()
            .await;
    }
}
