//! The three services as real processes on port 0, wired to each other: [`Launch`] starts one
//! with the test's flags and environment, [`Stack`] the usual three.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tempfile::TempDir;

use crate::{Browser, Service, binary, eventually, hosts::Hosts};

/// A static-credentials config whose listener points at `127.0.0.1:<port>`.
pub fn static_config(turn_port: u16) -> String {
    format!(
        r#"{{"version":"v1","admin":{{"name":"stunner/udp-gateway"}},
        "auth":{{"type":"static","credentials":{{"username":"user-1","password":"pass-1"}}}},
        "listeners":[{{"name":"stunner/udp-gateway/udp-listener","protocol":"TURN-UDP",
        "public_address":"127.0.0.1","public_port":{turn_port},"address":"$STUNNER_ADDR","port":3478}}]}}"#
    )
}

/// An ephemeral-credentials (TURN REST API) config whose listener points at `127.0.0.1:<port>`.
pub fn ephemeral_config(turn_port: u16, secret: &str) -> String {
    format!(
        r#"{{"version":"v1","admin":{{"name":"stunner/udp-gateway"}},
        "auth":{{"type":"ephemeral","credentials":{{"secret":"{secret}"}}}},
        "listeners":[{{"name":"stunner/udp-gateway/udp-listener","protocol":"TURN-UDP",
        "public_address":"127.0.0.1","public_port":{turn_port},"address":"$STUNNER_ADDR","port":3478}}]}}"#
    )
}

/// One of our services, about to be started on loopback port 0.
pub struct Launch<'a> {
    binary: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    hosts: Option<&'a Hosts>,
    /// Wait for `/readyz` before returning (the gateway: attached to signaling).
    ready: bool,
    /// The process's limit on open files (soft and hard), when the test sets one.
    file_limit: Option<u32>,
}

impl<'a> Launch<'a> {
    /// ice-config reading the STUNner config file `config`.
    pub fn ice_config(config: &Path) -> Self {
        Self::new("ice-config")
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(["--stunner-config", config.to_str().expect("utf-8")])
    }

    pub fn signaling() -> Self {
        Self::new("signaling").args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
    }

    /// A gateway serving the repository's page, ready (attached to signaling) when started.
    pub fn gateway(ice_config_url: &str, signaling_url: &str) -> Self {
        let static_dir = static_dir();
        let mut launch = Self::new("gateway")
            .args(["--http-addr", "127.0.0.1:0"])
            .args(["--ice-config-url", ice_config_url])
            .args(["--signaling-url", signaling_url])
            .args(["--static-dir", static_dir.to_str().expect("utf-8")]);
        launch.ready = true;
        launch
    }

    fn new(binary: &'static str) -> Self {
        Self {
            binary,
            args: Vec::new(),
            env: Vec::new(),
            hosts: None,
            ready: false,
            file_limit: None,
        }
    }

    /// Sets `--flag value`, replacing the value the launcher chose for it, if any.
    pub fn set(mut self, flag: &str, value: &str) -> Self {
        match self.args.iter().position(|a| a == flag) {
            Some(at) if at + 1 < self.args.len() => self.args[at + 1] = value.to_owned(),
            _ => self.args.extend([flag.to_owned(), value.to_owned()]),
        }
        self
    }

    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env.extend(
            vars.into_iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
        );
        self
    }

    /// Resolves names through `hosts` (a private `/etc/hosts`).
    pub fn hosts(mut self, hosts: &'a Hosts) -> Self {
        self.hosts = Some(hosts);
        self
    }

    /// Runs the process with at most `files` open files (`prlimit`), as on a host whose
    /// default limit is low.
    pub fn file_limit(mut self, files: u32) -> Self {
        self.file_limit = Some(files);
        self
    }

    /// Returns as soon as the ports are announced, ready or not.
    pub fn unready(mut self) -> Self {
        self.ready = false;
        self
    }

    pub async fn start(self) -> Service {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let service = match (self.hosts, self.file_limit) {
            (None, Some(files)) => {
                let mut wrapped = vec![format!("--nofile={files}:{files}"), "--".to_owned()];
                wrapped.push(binary(self.binary).to_string_lossy().into_owned());
                wrapped.extend(self.args.iter().cloned());
                let wrapped: Vec<&str> = wrapped.iter().map(String::as_str).collect();
                Service::start(Path::new("prlimit"), &wrapped, &env).await
            }
            (None, None) => Service::start(&binary(self.binary), &args, &env).await,
            (Some(_), Some(_)) => {
                panic!("a file limit and private hosts together are not supported")
            }
            (Some(hosts), None) => {
                let (program, wrapped) = hosts.wrap(&binary(self.binary), &args);
                let wrapped: Vec<&str> = wrapped.iter().map(String::as_str).collect();
                Service::start(&program, &wrapped, &env).await
            }
        };
        if self.ready {
            wait_ready(&service).await;
        }
        service
    }
}

/// Waits until `service`'s `/readyz` answers 200.
pub async fn wait_ready(service: &Service) {
    let ready = service.url("http", "/readyz");
    eventually(Duration::from_secs(10), "the service to be ready", || {
        let ready = ready.clone();
        async move {
            let status = reqwest::get(&ready).await.ok()?.status();
            (status == 200).then_some(())
        }
    })
    .await;
}

pub struct Stack {
    pub ice_config: Service,
    pub signaling: Service,
    pub gateway: Service,
    pub dir: TempDir,
}

/// Extra flags per service.
#[derive(Default)]
pub struct Flags<'a> {
    /// Environment for all three services.
    pub env: &'a [(&'a str, &'a str)],
    pub ice_config: &'a [&'a str],
    pub signaling: &'a [&'a str],
    pub gateway: &'a [&'a str],
}

impl Stack {
    pub async fn start(stunner_config: &str, flags: Flags<'_>) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("stunnerd.conf");
        std::fs::write(&config, stunner_config).expect("write config");
        let env = flags.env.iter().copied();
        let ice_config = Launch::ice_config(&config)
            .args(flags.ice_config)
            .env(env.clone())
            .start()
            .await;
        let signaling = Launch::signaling()
            .args(flags.signaling)
            .env(env.clone())
            .start()
            .await;
        let gateway = Launch::gateway(&ice_config.url("grpc", ""), &signaling.url("grpc", ""))
            .args(flags.gateway)
            .env(env)
            .start()
            .await;
        Stack {
            ice_config,
            signaling,
            gateway,
            dir,
        }
    }

    /// The STUNner config file ice-config reads.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("stunnerd.conf")
    }

    pub fn ws_url(&self) -> String {
        ws_url(&self.gateway)
    }

    /// The page, as a browser opens it.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.gateway.addr("http"))
    }

    pub async fn browser(&self) -> Browser {
        Browser::connect(&self.ws_url()).await
    }
}

/// The WebSocket URL of a gateway.
pub fn ws_url(gateway: &Service) -> String {
    format!("ws://{}/one2one", gateway.addr("http"))
}

/// The repository's `static/` folder.
pub fn static_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static")
}
