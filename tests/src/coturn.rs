//! A real TURN server (coturn) on loopback, and its real client (`turnutils_uclient`), to prove
//! that issued credentials allocate relays and that bad ones are refused.

use std::{process::Stdio, time::Duration};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::{Logs, free_port};

/// How coturn checks credentials.
pub enum TurnAuth<'a> {
    /// `--lt-cred-mech --user=USER:PASS`: STUNner's `static`.
    Static {
        username: &'a str,
        password: &'a str,
    },
    /// `--use-auth-secret --static-auth-secret=SECRET`: STUNner's `ephemeral` (TURN REST API).
    Secret(&'a str),
}

/// A coturn process on 127.0.0.1, killed when dropped.
pub struct Coturn {
    child: Child,
    port: u16,
    logs: Logs,
    _dir: TempDir,
}

/// What `turnutils_uclient` reported.
#[derive(Debug)]
pub struct Allocation {
    /// It allocated relays and exchanged messages through them with no loss.
    pub relayed: bool,
    pub output: String,
}

impl Coturn {
    pub async fn start(auth: TurnAuth<'_>) -> Coturn {
        Self::start_with(free_port(), auth, &[]).await
    }

    /// On `port` (a TURN server restarted on the same address, as a new STUNner pod behind
    /// the same load balancer), with extra options (e.g. short allocation lifetimes).
    pub async fn start_with(port: u16, auth: TurnAuth<'_>, extra: &[&str]) -> Coturn {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args = vec![
            "-n".to_owned(),
            "--listening-ip=127.0.0.1".into(),
            "--relay-ip=127.0.0.1".into(),
            format!("--listening-port={port}"),
            "--realm=stunner.l7mp.io".into(),
            // Relaying between two loopback allocations is what the check does.
            "--allow-loopback-peers".into(),
            "--no-cli".into(),
            "--no-tls".into(),
            "--no-dtls".into(),
            "--log-file=stdout".into(),
            format!("--userdb={}", dir.path().join("turndb.sqlite").display()),
            format!("--pidfile={}", dir.path().join("turnserver.pid").display()),
        ];
        match auth {
            TurnAuth::Static { username, password } => {
                args.push("--lt-cred-mech".into());
                args.push(format!("--user={username}:{password}"));
            }
            TurnAuth::Secret(secret) => {
                args.push("--use-auth-secret".into());
                args.push(format!("--static-auth-secret={secret}"));
            }
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut child = Command::new("turnserver")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("coturn's turnserver is installed (apt-get install coturn)");
        let logs = Logs::default();
        logs.collect(child.stdout.take().expect("piped stdout"), None);
        logs.collect(child.stderr.take().expect("piped stderr"), None);
        let ready = logs.clone();
        crate::eventually(crate::START_TIMEOUT, "coturn to open its listeners", || {
            let ready = ready.contains("Total General servers");
            async move { ready.then_some(()) }
        })
        .await;
        Coturn {
            child,
            port,
            logs,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL: the TURN server and every allocation on it are gone at once (a lost pod).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    pub fn logs(&self) -> &Logs {
        &self.logs
    }

    /// Runs `turnutils_uclient` in client-to-client mode: two allocations on this server relay
    /// messages to each other. Succeeds only if both allocations are granted.
    pub async fn allocate(&self, username: &str, password: &str) -> Allocation {
        let port = self.port.to_string();
        let run = Command::new("turnutils_uclient")
            .args([
                "-y",
                "-n",
                "1",
                "-m",
                "1",
                "-p",
                &port,
                "-u",
                username,
                "-w",
                password,
                "127.0.0.1",
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("turnutils_uclient finishes within 30s")
            .expect("turnutils_uclient is installed (apt-get install coturn)");
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let relayed = out.status.success()
            && output.contains("Total lost packets 0")
            && !output.contains("Cannot complete Allocation");
        Allocation { relayed, output }
    }
}
