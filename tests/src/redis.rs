//! Real Redis for tests: a `redis-server` on a free loopback port (Debian's `redis-server`
//! package), a three-master Redis Cluster made with `redis-cli --cluster create`, and the faults
//! a store can have: stopped and started again on the same port, with its data or empty.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::{eventually, free_port};

/// One `redis-server`, killed when dropped.
pub struct Redis {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Redis {
    /// A standalone server with persistence off (snapshots only when asked, for restarts with
    /// data).
    pub async fn start() -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut redis = Redis {
            port,
            dir,
            child: None,
        };
        redis.launch(&[]).await;
        redis
    }

    /// A server replicating `master` (`--replicaof`), once it has caught up with it.
    pub async fn start_replica_of(master: &Redis) -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut replica = Redis {
            port,
            dir,
            child: None,
        };
        let master_port = master.port().to_string();
        replica
            .launch(&["--replicaof", "127.0.0.1", &master_port])
            .await;
        answers(
            port,
            &["INFO", "replication"],
            "master_link_status:up",
            "the replica to catch up with its master",
        )
        .await;
        replica
    }

    /// SIGKILL: the server is gone at once, without a word to its clients.
    pub async fn kill(&mut self) {
        self.signal("KILL").await;
        self.wait_exit().await;
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    async fn launch(&mut self, extra: &[&str]) {
        let child = spawn(self.port, self.dir.path(), extra);
        self.child = Some(child);
        wait_for_ping(self.port).await;
    }

    /// Stops the server (`SHUTDOWN SAVE`: its data is written to disk first, as a Redis with
    /// persistence would have it).
    pub async fn stop_keeping_data(&mut self) {
        cli(self.port, &["SHUTDOWN", "SAVE"]).await;
        self.wait_exit().await;
    }

    /// Stops the server and forgets everything (a Redis without persistence, or a failover to
    /// a replica that had nothing).
    pub async fn stop_losing_data(&mut self) {
        cli(self.port, &["SHUTDOWN", "NOSAVE"]).await;
        self.wait_exit().await;
        let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
    }

    /// Starts the server again on the same port (with whatever data it saved).
    pub async fn restart(&mut self) {
        self.launch(&[]).await;
    }

    /// SIGSTOP / SIGCONT: the server freezes; connections stay open, nothing answers.
    pub async fn freeze(&self) {
        self.signal("STOP").await;
    }

    pub async fn thaw(&self) {
        self.signal("CONT").await;
    }

    async fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("redis-server is running");
        let _ = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .await;
    }

    async fn wait_exit(&mut self) {
        if let Some(mut child) = self.child.take() {
            let exited = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            assert!(exited.is_ok(), "redis-server did not stop");
        }
    }

    /// Each key matching `pattern` with its time to live in milliseconds (`-1`: none).
    pub async fn ttls(&self, pattern: &str) -> Vec<(String, i64)> {
        let scanned = cli(self.port, &["--scan", "--pattern", pattern]).await;
        let mut ttls = Vec::new();
        for key in scanned.lines().filter(|k| !k.is_empty()) {
            let ttl = cli(self.port, &["PTTL", key])
                .await
                .trim()
                .parse()
                .unwrap_or(-2);
            ttls.push((key.to_owned(), ttl));
        }
        ttls
    }

    /// The number of keys in the server.
    pub async fn keys(&self) -> usize {
        cli(self.port, &["DBSIZE"])
            .await
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

/// Three masters on loopback, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<Redis>,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let mut node = Redis {
                port,
                dir,
                child: None,
            };
            node.launch(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ])
            .await;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(addresses.iter().cloned());
        args.extend([
            "--cluster-replicas".into(),
            "0".into(),
            "--cluster-yes".into(),
        ]);
        let output = Command::new("redis-cli")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("redis-cli is installed");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { nodes };
        let port = cluster.nodes[0].port;
        eventually(
            Duration::from_secs(20),
            "the cluster to be ok",
            || async move {
                cli(port, &["CLUSTER", "INFO"])
                    .await
                    .contains("cluster_state:ok")
                    .then_some(())
            },
        )
        .await;
        cluster
    }

    /// `redis+cluster://127.0.0.1:<port>,…`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The masters' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(Redis::pid).collect()
    }

    /// The keys held by each master: the data is spread over them.
    pub async fn keys_per_node(&self) -> Vec<usize> {
        let mut counts = Vec::new();
        for node in &self.nodes {
            counts.push(node.keys().await);
        }
        counts
    }
}

/// A `redis-server` watched by one Sentinel (`redis-server --sentinel`), which names it as the
/// master of `calls`: the URL clients are given is the Sentinel's, never the server's.
/// Optionally with a replica, which the Sentinel promotes when the master goes away.
pub struct RedisSentinel {
    pub master: Redis,
    pub replica: Option<Redis>,
    port: u16,
    _dir: TempDir,
    _sentinel: Child,
}

impl RedisSentinel {
    pub async fn start() -> RedisSentinel {
        Self::build(false).await
    }

    /// A master and its replica, watched by the Sentinel.
    pub async fn with_replica() -> RedisSentinel {
        Self::build(true).await
    }

    async fn build(with_replica: bool) -> RedisSentinel {
        let master = Redis::start().await;
        let replica = match with_replica {
            true => Some(Redis::start_replica_of(&master).await),
            false => None,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        // Sentinel rewrites its configuration file: it must be its own, and writable.
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\nloglevel warning\n\
                 sentinel monitor calls 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds calls 1000\n\
                 sentinel failover-timeout calls 5000\n",
                master.port()
            ),
        )
        .expect("write sentinel.conf");
        let sentinel = Command::new(server())
            .arg(&config)
            .arg("--sentinel")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server --sentinel");
        let master_port = master.port().to_string();
        answers(
            port,
            &MASTER_OF_CALLS,
            &master_port,
            "the sentinel to name the master",
        )
        .await;
        if let Some(replica) = &replica {
            let replica_port = replica.port().to_string();
            let replicas = ["SENTINEL", "replicas", "calls"];
            answers(
                port,
                &replicas,
                &replica_port,
                "the sentinel to know the replica",
            )
            .await;
        }
        RedisSentinel {
            master,
            replica,
            port,
            _dir: dir,
            _sentinel: sentinel,
        }
    }

    /// Waits until the replica has everything the master has, SIGKILLs the master, and waits
    /// until the Sentinel names the replica as the master.
    pub async fn fail_over(&mut self) {
        let replica_port = self
            .replica
            .as_ref()
            .expect("a Sentinel started with a replica")
            .port()
            .to_string();
        let acknowledged = cli(self.master.port(), &["WAIT", "1", "5000"]).await;
        assert_eq!(acknowledged.trim(), "1", "the replica has every write");
        self.master.kill().await;
        let promoted = "the sentinel to promote the replica";
        answers(self.port, &MASTER_OF_CALLS, &replica_port, promoted).await;
    }

    /// `redis+sentinel://127.0.0.1:<sentinel port>/calls`.
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/calls", self.port)
    }
}

/// Asks the Sentinel which server is the master of `calls`.
const MASTER_OF_CALLS: [&str; 3] = ["SENTINEL", "get-master-addr-by-name", "calls"];

/// Waits until the server on `port` answers `args` with something containing `expected`.
async fn answers(port: u16, args: &[&str], expected: &str, what: &str) {
    eventually(Duration::from_secs(30), what, || async move {
        cli(port, args).await.contains(expected).then_some(())
    })
    .await;
}

fn spawn(port: u16, dir: &Path, extra: &[&str]) -> Child {
    let port = port.to_string();
    let mut args = vec![
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dbfilename",
        "dump.rdb",
        "--protected-mode",
        "no",
        "--loglevel",
        "warning",
    ];
    args.extend_from_slice(extra);
    Command::new(server())
        .args(&args)
        .current_dir(dir)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is installed (apt-get install redis-server)")
}

fn server() -> PathBuf {
    PathBuf::from("redis-server")
}

async fn wait_for_ping(port: u16) {
    eventually(
        Duration::from_secs(30),
        "redis-server to answer",
        || async move { (cli(port, &["PING"]).await.trim() == "PONG").then_some(()) },
    )
    .await;
}

/// `redis-cli -p <port> args…`, its output.
pub async fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await;
    output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
