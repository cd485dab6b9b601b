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
    pub ice_config: Service,
    pub signaling: Vec<Service>,
    pub gateways: Vec<Service>,
    pub redis: Option<Redis>,
    pub cluster: Option<RedisCluster>,
    pub dir: TempDir,
    next_browser: AtomicUsize,
}

impl Topology {
    pub async fn start(store: Store, stunner_config: &str, flags: Flags<'_>) -> Topology {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("stunnerd.conf");
        std::fs::write(&config, stunner_config).expect("write config");
        let env = flags.env.iter().copied();
        let ice_config = Launch::ice_config(&config)
            .args(flags.ice_config)
            .env(env.clone())
            .start()
            .await;
        let (redis, cluster, url, replicas) = match store {
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
        let mut signaling = Vec::new();
        for _ in 0..replicas {
            let mut launch = Launch::signaling().args(flags.signaling).env(env.clone());
            if let Some(url) = &url {
                launch = launch.args(["--redis-url", url]);
            }
            signaling.push(launch.start().await);
        }
        // Gateway 0 uses the first replica; gateway 1 the others.
        let groups: Vec<Vec<&Service>> = match replicas {
            1 => vec![vec![&signaling[0]]],
            _ => vec![vec![&signaling[0]], signaling[1..].iter().collect()],
        };
        let mut gateways = Vec::new();
        for group in groups {
            let urls: Vec<String> = group.iter().map(|s| s.url("grpc", "")).collect();
            gateways.push(
                Launch::gateway(&ice_config.url("grpc", ""), &urls.join(","))
                    .args(flags.gateway)
                    .env(env.clone())
                    .start()
                    .await,
            );
        }
        Topology {
            store,
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
