//! Command-line flags, each also read from an environment variable, so Kubernetes sets env and
//! humans set flags.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use svc_common::{
    Duration,
    args::{GrpcArgs, HttpArgs, ServiceArgs},
    parse_duration,
};

use crate::{
    app::{self, Settings, SourceSettings},
    ice::{Issuing, PublicAddr, TtlPolicy},
    source::cds,
};

/// Issues TURN credentials and ICE configurations from the running STUNner config, over gRPC
/// (iceconfig.v1) and the REST API of stunner-auth-service.
#[derive(Debug, Parser)]
#[command(
    name = "ice-config",
    version,
    mut_arg("grpc_addr", |a| a.default_value("0.0.0.0:50051").required(false)),
    mut_arg("http_addr", |a| a.default_value("0.0.0.0:8088").required(false)),
)]
pub struct Args {
    #[command(flatten)]
    pub grpc: GrpcArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    /// Where STUNner configs come from: config files (`file`), ConfigMaps through the
    /// Kubernetes API (`kubernetes`) or STUNner's config discovery service (`cds`).
    #[arg(long, env = "CONFIG_SOURCE", value_enum, default_value_t = SourceKind::File)]
    pub config_source: SourceKind,

    /// STUNner config file(s), e.g. the mounted `stunnerd-config` ConfigMap; comma-separated
    /// in the environment variable.
    #[arg(
        long = "stunner-config",
        env = "STUNNER_CONFIG_FILENAME",
        value_delimiter = ',',
        default_value = "/etc/stunnerd/stunnerd.conf"
    )]
    pub stunner_configs: Vec<PathBuf>,

    /// How often the config files are checked for changes.
    #[arg(long, env = "CONFIG_POLL_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    pub config_poll_interval: Duration,

    /// Namespaces whose ConfigMaps are watched (`kubernetes` source); comma-separated in the
    /// environment variable; none means every namespace.
    #[arg(long, env = "KUBE_NAMESPACES", value_delimiter = ',')]
    pub kube_namespaces: Vec<String>,

    /// Label selector of the ConfigMaps holding STUNner configs (`kubernetes` source).
    #[arg(
        long,
        env = "KUBE_LABEL_SELECTOR",
        default_value = "stunner.l7mp.io/owned-by=stunner"
    )]
    pub kube_label_selector: String,

    /// The ConfigMap data key holding the config (`kubernetes` source).
    #[arg(long, env = "KUBE_CONFIG_KEY", default_value = "stunnerd.conf")]
    pub kube_config_key: String,

    /// The config discovery service's base URL (`cds` source).
    #[arg(
        long,
        env = "CDS_URL",
        default_value = "http://stunner-config-discovery.stunner-system.svc:13478"
    )]
    pub cds_url: String,

    /// Follow only this namespace's Gateways (`cds` source); all when unset.
    #[arg(long, env = "CDS_NAMESPACE")]
    pub cds_namespace: Option<String>,

    /// Credential lifetime when a request names none.
    #[arg(long, env = "DEFAULT_TTL", default_value_t = TtlPolicy::default().default.into(), value_parser = parse_duration)]
    pub default_ttl: Duration,

    /// The longest credential lifetime a request may ask for.
    #[arg(long, env = "MAX_TTL", default_value_t = TtlPolicy::default().max.into(), value_parser = parse_duration)]
    pub max_ttl: Duration,

    /// The host every TURN URI carries instead of the listeners' own addresses (a node's or
    /// load balancer's address), unless a REST request names one (`public-addr`). Empty: unset.
    #[arg(long, env = "STUNNER_PUBLIC_ADDR")]
    pub public_addr: Option<String>,

    /// Tokens of the applications allowed to call (comma-separated; from a Secret): accepted on
    /// the gRPC port besides GRPC_TOKEN (which must then be set, for the gateways), and then
    /// required by the REST API too (`authorization: Bearer <token>`).
    #[arg(
        long,
        env = "CLIENT_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub client_tokens: Vec<svc_common::auth::Token>,

    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Args {
    /// The whole binary: parse flags, set up logging, run until SIGINT/SIGTERM.
    pub async fn parse_and_run() -> anyhow::Result<()> {
        let args = Self::parse();
        svc_common::run_binary(
            "ice-config",
            async move { app::build(args.settings()?).await },
        )
        .await
    }

    pub fn settings(self) -> anyhow::Result<Settings> {
        let (default_ttl, max_ttl) = (*self.default_ttl, *self.max_ttl);
        anyhow::ensure!(
            default_ttl >= std::time::Duration::from_secs(1) && default_ttl <= max_ttl,
            "--default-ttl must be at least 1s and at most --max-ttl ({:?})",
            max_ttl
        );
        let public_addr = self
            .public_addr
            .filter(|addr| !addr.trim().is_empty())
            .map(|addr| PublicAddr::parse(&addr))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--public-addr (STUNNER_PUBLIC_ADDR): {e}"))?;
        anyhow::ensure!(
            self.client_tokens.is_empty() || self.service.token.grpc_token.is_some(),
            "--client-tokens (CLIENT_TOKENS) needs --grpc-token (GRPC_TOKEN): without it the gateways could not call"
        );
        let mut runtime = self.service.runtime();
        runtime.client_tokens = self.client_tokens;
        let source = match self.config_source {
            SourceKind::File => {
                anyhow::ensure!(
                    !self.stunner_configs.is_empty(),
                    "--stunner-config names no file"
                );
                SourceSettings::Files {
                    paths: self.stunner_configs,
                    poll_interval: *self.config_poll_interval,
                }
            }
            SourceKind::Kubernetes => {
                let mut namespaces: Vec<Option<String>> = self
                    .kube_namespaces
                    .into_iter()
                    .map(|ns| ns.trim().to_owned())
                    .filter(|ns| !ns.is_empty())
                    .map(Some)
                    .collect();
                if namespaces.is_empty() {
                    namespaces.push(None);
                }
                SourceSettings::Kubernetes {
                    namespaces,
                    labels: self.kube_label_selector,
                    key: self.kube_config_key,
                }
            }
            SourceKind::Cds => {
                anyhow::ensure!(
                    self.cds_url.starts_with("http://"),
                    "--cds-url must be an http:// URL (the config discovery service speaks plain HTTP), got {:?}",
                    self.cds_url
                );
                SourceSettings::ConfigDiscovery {
                    url: self.cds_url,
                    namespace: self.cds_namespace.filter(|ns| !ns.is_empty()),
                    timing: cds::Timing::default(),
                }
            }
        };
        Ok(Settings {
            grpc_addr: self.grpc.grpc_addr,
            http_addr: self.http.http_addr,
            source,
            issuing: Issuing {
                ttl: TtlPolicy {
                    default: default_ttl,
                    max: max_ttl,
                },
                public_addr,
            },
            runtime,
        })
    }
}

/// The kinds of config source, for `--config-source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    File,
    Kubernetes,
    Cds,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = Args::parse_from(["ice-config"])
            .settings()
            .expect("defaults");
        assert_eq!(settings.grpc_addr.port(), 50051);
        assert_eq!(settings.http_addr.port(), 8088);
        assert_eq!(settings.issuing.ttl.default, TtlPolicy::default().default);
        assert_eq!(settings.issuing.ttl.max, TtlPolicy::default().max);
        assert_eq!(settings.issuing.public_addr, None);
    }

    #[test]
    fn client_tokens_need_the_gateways_token() {
        let error = Args::parse_from(["ice-config", "--client-tokens", "app-1"])
            .settings()
            .expect_err("no GRPC_TOKEN");
        assert!(error.to_string().contains("GRPC_TOKEN"), "{error}");
        let settings = Args::parse_from([
            "ice-config",
            "--grpc-token",
            "shared",
            "--client-tokens",
            "app-1,app-2",
        ])
        .settings()
        .expect("both");
        assert_eq!(settings.runtime.client_tokens.len(), 2);
    }

    #[test]
    fn a_public_address_must_be_a_host() {
        let parse = |addr: &str| {
            Args::parse_from(["ice-config", "--public-addr", addr])
                .settings()
                .map(|s| s.issuing.public_addr)
        };
        assert_eq!(
            parse("203.0.113.7")
                .expect("an IP")
                .map(|a| a.as_str().to_owned()),
            Some("203.0.113.7".into())
        );
        assert_eq!(parse("").expect("empty is unset"), None);
        let error = parse("a b").expect_err("not a host").to_string();
        assert!(error.contains("STUNNER_PUBLIC_ADDR"), "{error}");
    }
}
