//! The one-command local stack: ice-config, signaling and gateway in one process, plus an
//! embedded TURN server, all on 127.0.0.1, fed a generated STUNner config. Two browser tabs on
//! the printed URL can call each other, relay-only, with no Kubernetes.

mod turn_server;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use turn_server::EmbeddedTurn;

/// Runs the whole call stack locally.
#[derive(Debug, Parser)]
#[command(name = "local-stack", version)]
struct Args {
    /// Where browsers open the page.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,

    /// The embedded TURN server (UDP).
    #[arg(long, env = "TURN_ADDR", default_value = "127.0.0.1:3478")]
    turn_addr: SocketAddr,

    /// The folder of the browser client.
    #[arg(long, env = "STATIC_DIR", default_value = gateway::assets::DEFAULT)]
    static_dir: PathBuf,

    /// Credential lifetime (short, to see refreshes happen).
    #[arg(long, env = "DEFAULT_TTL", default_value = "1h", value_parser = svc_common::parse_duration)]
    default_ttl: svc_common::Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = svc_common::init_telemetry("local-stack");

    let secret = svc_common::random_hex(24);
    let turn = EmbeddedTurn::start(args.turn_addr, &secret).await?;
    let dir = tempfile_dir()?;
    let config = dir.join("stunnerd.conf");
    std::fs::write(&config, stunner_config(turn.addr(), &secret))?;

    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let runtime = svc_common::RuntimeSettings {
        shutdown_grace: Duration::from_secs(5),
        ..Default::default()
    };
    // Each service with its own binary's defaults, on loopback ports of their own.
    let ice = ice_config::app::build(ice_config::app::Settings {
        grpc_addr: loopback,
        http_addr: loopback,
        source: ice_config::app::SourceSettings::Files {
            paths: vec![config],
            poll_interval: Duration::from_millis(250),
        },
        issuing: ice_config::ice::Issuing {
            ttl: ice_config::ice::TtlPolicy {
                default: *args.default_ttl,
                ..Default::default()
            },
            public_addr: None,
        },
        runtime: runtime.clone(),
    })
    .await?;
    let signaling = signaling::app::build(signaling::app::Settings {
        grpc_addr: loopback,
        http_addr: loopback,
        limits: Default::default(),
        redis: None,
        runtime: runtime.clone(),
    })
    .await?;
    let url = |runtime: &svc_common::Runtime| {
        runtime
            .addr("grpc")
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_default()
    };
    let gateway = gateway::app::build(gateway::app::Settings {
        http_addr: args.http_addr,
        signaling_url: url(&signaling),
        signaling_resolve_every: Duration::from_secs(5),
        ice_config_url: url(&ice),
        ice_config_resolve_every: Duration::from_secs(5),
        static_dir: args.static_dir,
        origins: Vec::new(),
        relay_only: true,
        gateways: Default::default(),
        limits: Default::default(),
        session_queue: gateway::app::SESSION_QUEUE,
        tls: None,
        runtime: runtime.clone(),
    })
    .await?;
    let http = gateway.addr("http").unwrap_or(args.http_addr);
    let addr = |runtime: &svc_common::Runtime, key| {
        runtime
            .addr(key)
            .map(|addr| addr.to_string())
            .unwrap_or_default()
    };
    println!(
        "local-stack listening http={http} turn={} ice-config={} ice-config-http={} signaling={} signaling-http={}",
        turn.addr(),
        addr(&ice, "grpc"),
        addr(&ice, "http"),
        addr(&signaling, "grpc"),
        addr(&signaling, "http"),
    );
    println!(
        "Open http://{http}/ in two browser tabs, register two names, and call one from the other."
    );

    let stop = CancellationToken::new();
    let mut services: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for runtime in [ice, signaling, gateway] {
        services.spawn(runtime.run(stop.clone().cancelled_owned()));
    }

    let outcome = tokio::select! {
        () = svc_common::shutdown_signal() => Ok(()),
        Some(ended) = services.join_next() => {
            Err(anyhow::anyhow!("a service stopped unexpectedly: {ended:?}"))
        }
    };
    stop.cancel();
    while let Some(ended) = services.join_next().await {
        if let Ok(Err(error)) = ended {
            tracing::warn!(%error, "service ended with an error");
        }
    }
    turn.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    telemetry.shutdown().await;
    outcome
}

/// A STUNner v1 config for the embedded TURN server, with ephemeral credentials.
fn stunner_config(turn: SocketAddr, secret: &str) -> String {
    format!(
        r#"{{"version":"v1","admin":{{"name":"local/turn"}},
  "auth":{{"type":"ephemeral","realm":"{realm}","credentials":{{"secret":"{secret}"}}}},
  "listeners":[{{"name":"local/turn/udp","protocol":"TURN-UDP","public_address":"{ip}","public_port":{port},
    "address":"{ip}","port":{port}}}]}}"#,
        realm = turn_server::REALM,
        ip = turn.ip(),
        port = turn.port(),
    )
}

/// A private folder for the generated config, removed on exit.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("stunner-local-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_reads_its_env_var() {
        use clap::CommandFactory;
        svc_common::args::assert_every_flag_reads_env(&Args::command());
    }
}
