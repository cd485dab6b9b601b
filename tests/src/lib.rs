//! What every test binary of the workspace shares: running the real service binaries on port 0,
//! running a real TURN server (coturn), and waiting on conditions with timeouts.
//!
//! Nothing here sleeps for a fixed time to let something happen: every wait polls a condition
//! and gives up with a clear message after a deadline.
//! (Over 300 lines: the process handle every test uses, with its fault injection, in one place.)

use std::{
    future::Future,
    net::{SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

pub mod browser;
pub mod cds;
pub mod coturn;
pub mod grpc;
pub mod hosts;
pub mod kube_api;
pub mod netns;
pub mod otlp;
pub mod redis;
pub mod stack;
pub mod tls;
pub mod topology;
pub mod webdriver;

pub use browser::Browser;
pub use coturn::Coturn;
pub use stack::Stack;

/// How long a process may take to start and announce its ports.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of a binary of this workspace, built into the same target directory as the running
/// test (`cargo build --workspace --bins`, which `cargo test --workspace` also does).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // Test binaries live in target/<profile>/deps, other binaries (the benchmark) beside the
    // services in target/<profile>.
    let dirs = exe.ancestors().skip(1).take(2);
    let found = dirs.map(|dir| dir.join(name)).find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "{name} is missing beside {}: build the workspace binaries first (cargo build --workspace --bins)",
            exe.display()
        )
    })
}

/// The Python of the test tools' virtualenv (`target/test-venv`, made by `scripts/test.sh`:
/// PEP 668 systems refuse `pip install` outside one), or `$TEST_PYTHON`, or `python3`.
pub fn test_python() -> PathBuf {
    if let Some(python) = std::env::var_os("TEST_PYTHON") {
        return python.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python3");
    if venv.is_file() {
        venv
    } else {
        "python3".into()
    }
}

/// Every URI of every ICE server in an RTCConfiguration (`{"iceServers": [{"urls": …}]}`), in
/// order.
pub fn ice_urls(configuration: &serde_json::Value) -> Vec<String> {
    configuration["iceServers"]
        .as_array()
        .expect("iceServers")
        .iter()
        .flat_map(|s| s["urls"].as_array().cloned().unwrap_or_default())
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

/// The value of one sample (`name{labels}`, exactly as rendered) in a Prometheus/OpenMetrics
/// text body; `None` when there is no such sample.
pub fn metric(body: &str, sample: &str) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
}

/// Polls `check` until it yields a value, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    until(within, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

/// Polls `check` until it yields a value; `None` once `within` has passed.
pub async fn until<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let poll = async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(within, poll).await.ok()
}

/// A port that was free a moment ago, on 127.0.0.1, for both TCP and UDP. Only for servers that
/// cannot bind port 0 and report it (coturn); our own services always bind port 0.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
        let port = tcp.local_addr().expect("local address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running service binary of this workspace, killed when dropped.
pub struct Service {
    child: Child,
    /// `key=address` pairs from the service's announce line on stdout.
    addrs: Vec<(String, SocketAddr)>,
    logs: Logs,
}

/// Everything a process printed on stderr, kept for failure messages.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|lines| lines.clone()).unwrap_or_default()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|line| line.contains(needle))
    }

    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line);
        }
    }

    /// Collects every line of `stream` until it closes.
    fn collect(
        &self,
        stream: impl AsyncRead + Unpin + Send + 'static,
        echo: Option<mpsc::UnboundedSender<String>>,
    ) {
        let logs = self.clone();
        // The task ends when the process closes the stream, at the latest when it is killed.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(echo) = &echo {
                    let _ = echo.send(line.clone());
                }
                logs.push(line);
            }
        });
    }
}

impl Service {
    /// Starts `binary` with `args` and `env`, and waits for its announce line
    /// (`<name> listening key=addr key=addr`) on stdout.
    pub async fn start(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Service {
        Self::launch(binary, args, env, true).await
    }

    /// Starts a program that announces nothing (not one of ours): its readiness is the
    /// caller's to check.
    pub async fn start_foreign(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Service {
        Self::launch(binary, args, env, false).await
    }

    async fn launch(
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        announces: bool,
    ) -> Service {
        let mut child = Command::new(binary)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            // The test's own settings win over the defaults above.
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let logs = Logs::default();
        let (stdout_tx, mut stdout_rx) = mpsc::unbounded_channel();
        logs.collect(child.stdout.take().expect("piped stdout"), Some(stdout_tx));
        logs.collect(child.stderr.take().expect("piped stderr"), None);
        if !announces {
            return Service {
                child,
                addrs: Vec::new(),
                logs,
            };
        }

        let announce = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = stdout_rx.recv().await {
                if line.contains(" listening ") {
                    return Some(line);
                }
            }
            None
        })
        .await;
        let Ok(Some(announce)) = announce else {
            let status = child.try_wait().ok().flatten();
            panic!(
                "{} did not announce its ports (exit status {status:?}); its output:\n{}",
                binary.display(),
                logs.lines().join("\n")
            );
        };
        let addrs = announce
            .split_whitespace()
            .filter_map(|word| word.split_once('='))
            .filter_map(|(key, addr)| Some((key.to_owned(), addr.parse().ok()?)))
            .collect();
        Service { child, addrs, logs }
    }

    /// The address announced as `key` (e.g. `grpc`, `http`), reachable on loopback.
    pub fn addr(&self, key: &str) -> SocketAddr {
        let (_, addr) = self
            .addrs
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no {key} address announced: {:?}", self.addrs));
        let mut addr = *addr;
        if addr.ip().is_unspecified() {
            addr.set_ip([127, 0, 0, 1].into());
        }
        addr
    }

    pub fn url(&self, key: &str, path: &str) -> String {
        format!("http://{}{path}", self.addr(key))
    }

    pub fn logs(&self) -> &Logs {
        &self.logs
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM and waits (up to `within`) for the process to exit; returns its exit code.
    pub async fn terminate(&mut self, within: Duration) -> Option<i32> {
        self.signal("TERM").await;
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the process did not exit within {within:?} of SIGTERM"))
            .expect("wait for the process");
        status.code()
    }

    /// Sends SIGTERM and returns at once (the drain goes on).
    pub async fn start_terminating(&self) {
        self.signal("TERM").await;
    }

    /// SIGKILL: the process is gone at once, with no chance to say goodbye (a node failure).
    pub async fn kill(&mut self) {
        self.signal("KILL").await;
        let _ = self.child.wait().await;
    }

    /// SIGSTOP: the process freezes; its sockets stay open but nothing answers.
    pub async fn freeze(&self) {
        self.signal("STOP").await;
    }

    /// SIGCONT: a frozen process carries on.
    pub async fn thaw(&self) {
        self.signal("CONT").await;
    }

    async fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the process is running").to_string();
        let sent = Command::new("kill")
            .args([format!("-{signal}"), pid.clone()])
            .status()
            .await;
        assert!(
            sent.is_ok_and(|s| s.success()),
            "kill -{signal} {pid} failed"
        );
    }

    /// The process's resident memory, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("the process is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// GETs `path` on port `key`: the status and body; `None` when no answer comes within five
    /// seconds.
    pub async fn get(&self, key: &str, path: &str) -> Option<(u16, String)> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        let response = client.get(self.url(key, path)).send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    /// The process's exit status, if it has exited.
    pub fn try_exit_code(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().ok().flatten().map(|s| s.code())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- service output ---\n{}", self.logs.lines().join("\n"));
        }
    }
}
