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
    ice::TtlPolicy,
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
            ttl: TtlPolicy {
                default: default_ttl,
                max: max_ttl,
            },
            runtime: self.service.runtime(),
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
        assert_eq!(settings.ttl.default, TtlPolicy::default().default);
        assert_eq!(settings.ttl.max, TtlPolicy::default().max);
    }
}
