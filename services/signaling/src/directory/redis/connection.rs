//! Reaching Redis: the URL forms (standalone, Sentinel, Cluster) and connections that reconnect
//! by themselves. One shared connection carries every short command (in batches on one server
//! or a Sentinel's master: [`super::batch`]; a Cluster's connection routes each to its node);
//! each blocking inbox read gets a connection of its own, since a blocked command holds every
//! command queued behind it on its connection.
//! (Over 300 lines with its URL tests.)

use std::{sync::Arc, time::Duration};

use redis::{
    Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value,
    aio::ConnectionLike,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelServerType},
};
use tokio::sync::Mutex;

use super::{batch::Batched, socket::Socket};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a short command may take: past it the store is taken for unavailable.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the store is, from `--redis-url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `redis://[user:password@]host:port[/db]`: one server.
    Single(String),
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/<master>[/db]`: the master
    /// Sentinel names, found again after a failover.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        db: i64,
        username: Option<String>,
        password: Option<String>,
    },
    /// `redis+cluster://[user:password@]host:port[,host:port…]`: a Redis Cluster, from any of
    /// its nodes.
    Cluster {
        nodes: Vec<String>,
        username: Option<String>,
        password: Option<String>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{0:?} is not a Redis URL (redis://, redis+sentinel://, redis+cluster://)")]
    Scheme(String),
    #[error(
        "{0:?}: TLS to Redis (rediss://) is not supported; reach it over a private network, or through a TLS proxy beside signaling"
    )]
    Tls(String),
    #[error("{0:?} names no host")]
    NoHost(String),
    #[error(
        "{0:?}: a Sentinel URL names the master after the hosts: redis+sentinel://host:26379/mymaster"
    )]
    NoMaster(String),
    #[error("{0:?}: the database must be a number")]
    Database(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| UrlError::Scheme(url.to_owned()))?;
        if scheme == "rediss" {
            return Err(UrlError::Tls(url.to_owned()));
        }
        if scheme == "redis" {
            if rest.is_empty() {
                return Err(UrlError::NoHost(url.to_owned()));
            }
            return Ok(StoreUrl::Single(url.to_owned()));
        }
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(credentials) => match credentials.split_once(':') {
                Some((user, password)) => (
                    Some(user.to_owned()).filter(|u| !u.is_empty()),
                    Some(password.to_owned()),
                ),
                None => (Some(credentials.to_owned()), None),
            },
        };
        let mut parts = rest.split('/');
        let hosts: Vec<String> = parts
            .next()
            .unwrap_or_default()
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if hosts.is_empty() {
            return Err(UrlError::NoHost(url.to_owned()));
        }
        match scheme {
            "redis+cluster" => Ok(StoreUrl::Cluster {
                nodes: hosts,
                username,
                password,
            }),
            "redis+sentinel" => {
                let master = parts
                    .next()
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| UrlError::NoMaster(url.to_owned()))?
                    .to_owned();
                let db = match parts.next().filter(|d| !d.is_empty()) {
                    Some(db) => db.parse().map_err(|_| UrlError::Database(url.to_owned()))?,
                    None => 0,
                };
                Ok(StoreUrl::Sentinel {
                    sentinels: hosts,
                    master,
                    db,
                    username,
                    password,
                })
            }
            _ => Err(UrlError::Scheme(url.to_owned())),
        }
    }
}

/// Makes connections to the store.
pub enum Backend {
    /// One server, or a Sentinel's master: batching connections.
    Batching(Connector),
    Cluster(Box<ClusterClient>),
}

/// Opens sockets to one server: the one a URL names, or whichever a Sentinel says is master
/// when the socket is opened.
#[derive(Clone)]
pub enum Connector {
    Server(ConnectionInfo),
    Sentinel {
        sentinel: Arc<Mutex<SentinelClient>>,
        db: i64,
    },
}

impl Connector {
    pub async fn open(&self) -> RedisResult<Socket> {
        match self {
            Connector::Server(info) => Socket::connect(info, CONNECT_TIMEOUT).await,
            Connector::Sentinel { sentinel, .. } => {
                // Asked again on every socket: after a failover, the new master.
                let client = sentinel.lock().await.async_get_client().await?;
                Socket::connect(client.get_connection_info(), CONNECT_TIMEOUT).await
            }
        }
    }

    /// The database the sockets select.
    pub fn db(&self) -> i64 {
        match self {
            Connector::Server(info) => info.redis_settings().db(),
            Connector::Sentinel { db, .. } => *db,
        }
    }
}

impl Backend {
    pub fn new(url: &StoreUrl) -> RedisResult<Self> {
        Ok(match url {
            StoreUrl::Single(url) => {
                Backend::Batching(Connector::Server(url.as_str().into_connection_info()?))
            }
            StoreUrl::Sentinel {
                sentinels,
                master,
                db,
                username,
                password,
            } => {
                let mut info = redis::RedisConnectionInfo::default().set_db(*db);
                if let Some(username) = username {
                    info = info.set_username(username);
                }
                if let Some(password) = password {
                    info = info.set_password(password);
                }
                let node = redis::sentinel::SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(info);
                let sentinels = sentinels
                    .iter()
                    .map(|host| format!("redis://{host}"))
                    .collect::<Vec<_>>();
                let sentinel = SentinelClient::build(
                    sentinels,
                    master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )?;
                Backend::Batching(Connector::Sentinel {
                    sentinel: Arc::new(Mutex::new(sentinel)),
                    db: *db,
                })
            }
            StoreUrl::Cluster {
                nodes,
                username,
                password,
            } => {
                let nodes = nodes.iter().map(|host| format!("redis://{host}"));
                let mut builder = ClusterClientBuilder::new(nodes)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(2);
                if let Some(username) = username {
                    builder = builder.username(username);
                }
                if let Some(password) = password {
                    builder = builder.password(password);
                }
                Backend::Cluster(Box::new(builder.build()?))
            }
        })
    }

    /// The shared connection for short commands; `blocking` for one of its own, whose
    /// commands may wait up to `block` on the server.
    pub async fn connect(&self, block: Option<Duration>) -> RedisResult<Conn> {
        let timeout = block.map_or(RESPONSE_TIMEOUT, |b| b + RESPONSE_TIMEOUT);
        match self {
            Backend::Batching(connector) => {
                // Reachable now, or not at all: a first connection must succeed.
                let socket = connector.open().await?;
                Ok(Conn::Batched(Batched::new(
                    connector.clone(),
                    socket,
                    timeout,
                )))
            }
            Backend::Cluster(cluster) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(timeout);
                Ok(Conn::Cluster(
                    cluster.get_async_connection_with_config(config).await?,
                ))
            }
        }
    }
}

/// A connection of either kind.
#[derive(Clone)]
pub enum Conn {
    Cluster(ClusterConnection),
    /// To one server: its commands go in batches.
    Batched(Batched),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Batched(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Batched(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Cluster(c) => c.get_db(),
            Conn::Batched(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(
            "redis://:secret@redis:6379/2".parse(),
            Ok(StoreUrl::Single("redis://:secret@redis:6379/2".into()))
        );
        assert_eq!(
            "redis+cluster://u:p@a:7000,b:7001".parse(),
            Ok(StoreUrl::Cluster {
                nodes: vec!["a:7000".into(), "b:7001".into()],
                username: Some("u".into()),
                password: Some("p".into()),
            })
        );
        assert_eq!(
            "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/3".parse(),
            Ok(StoreUrl::Sentinel {
                sentinels: vec!["s1:26379".into(), "s2:26379".into()],
                master: "mymaster".into(),
                db: 3,
                username: None,
                password: Some("pw".into()),
            })
        );
        assert_eq!(
            "redis+sentinel://s1:26379".parse::<StoreUrl>(),
            Err(UrlError::NoMaster("redis+sentinel://s1:26379".into()))
        );
        assert!(matches!(
            "http://x".parse::<StoreUrl>(),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            "rediss://redis:6380".parse::<StoreUrl>(),
            Err(UrlError::Tls(_))
        ));
        assert!(matches!(
            "redis+cluster://".parse::<StoreUrl>(),
            Err(UrlError::NoHost(_))
        ));
    }
}
