//! The three services as real processes on port 0, wired to each other.

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
        let ice_config = start_ice_config(&config, flags.ice_config, flags.env).await;
        let signaling = start_signaling(flags.signaling, flags.env).await;
        let gateway = start_gateway_with(
            flags.env,
            &ice_config.url("grpc", ""),
            &signaling.url("grpc", ""),
            flags.gateway,
        )
        .await;
        Stack {
            ice_config,
            signaling,
            gateway,
            dir,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/one2one", self.gateway.addr("http"))
    }

    /// The page, as a browser opens it.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.gateway.addr("http"))
    }

    pub async fn browser(&self) -> Browser {
        Browser::connect(&self.ws_url()).await
    }
}

/// ice-config on port 0 of 127.0.0.1, reading the STUNner config file `config`.
pub async fn start_ice_config(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Service {
    let config = config.to_str().expect("utf-8");
    let mut args = vec![
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--stunner-config",
        config,
    ];
    args.extend_from_slice(extra);
    Service::start(&binary("ice-config"), &args, env).await
}

/// signaling on port 0 of 127.0.0.1.
pub async fn start_signaling(extra: &[&str], env: &[(&str, &str)]) -> Service {
    let mut args = vec!["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Service::start(&binary("signaling"), &args, env).await
}

/// A gateway on port 0, ready (attached to signaling) when this returns.
pub async fn start_gateway(ice_config_url: &str, signaling_url: &str, extra: &[&str]) -> Service {
    start_gateway_with(&[], ice_config_url, signaling_url, extra).await
}

/// [`start_gateway`] with environment variables.
pub async fn start_gateway_with(
    env: &[(&str, &str)],
    ice_config_url: &str,
    signaling_url: &str,
    extra: &[&str],
) -> Service {
    start_gateway_in(None, env, ice_config_url, signaling_url, extra).await
}

/// [`start_gateway_with`], resolving names through `hosts` when given.
pub async fn start_gateway_in(
    hosts: Option<&Hosts>,
    env: &[(&str, &str)],
    ice_config_url: &str,
    signaling_url: &str,
    extra: &[&str],
) -> Service {
    let static_dir = static_dir();
    let static_dir = static_dir.to_str().expect("utf-8");
    let mut args = vec![
        "--http-addr",
        "127.0.0.1:0",
        "--ice-config-url",
        ice_config_url,
        "--signaling-url",
        signaling_url,
        "--static-dir",
        static_dir,
    ];
    args.extend_from_slice(extra);
    let gateway = match hosts {
        None => Service::start(&binary("gateway"), &args, env).await,
        Some(hosts) => {
            let (program, args) = hosts.wrap(&binary("gateway"), &args);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Service::start(&program, &args, env).await
        }
    };
    let ready = gateway.url("http", "/readyz");
    eventually(
        Duration::from_secs(10),
        "the gateway to attach to signaling",
        || {
            let ready = ready.clone();
            async move {
                let status = reqwest::get(&ready).await.ok()?.status();
                (status == 200).then_some(())
            }
        },
    )
    .await;
    gateway
}

/// The repository's `static/` folder.
pub fn static_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static")
}
