//! `TestApp`: the real `ice-config` binary on port 0, fed from a config file in a temp folder.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use stunner_proto::iceconfig::v1::{
    GetIceConfigRequest, IceConfig, ice_config_service_client::IceConfigServiceClient,
};
use tempfile::TempDir;
use testkit::Service;
use tonic::transport::Channel;

/// A legacy (v1alpha1) config with static credentials: the tutorial's ConfigMap.
pub const STATIC: &str = r#"{"version":"v1alpha1","admin":{"name":"stunner-daemon","loglevel":"all:INFO"},
 "auth":{"type":"plaintext","realm":"stunner.l7mp.io","credentials":{"username":"user-1","password":"pass-1"}},
 "listeners":[{"name":"udp-listener","protocol":"UDP","public_address":"192.0.2.10","public_port":3478,
   "address":"$STUNNER_ADDR","port":3478,"routes":["stunner"]},
  {"name":"tcp-listener","protocol":"TCP","public_address":"192.0.2.11","public_port":3478,
   "address":"$STUNNER_ADDR","port":3478,"routes":["stunner"]}]}"#;

/// Two operator-era Gateways with ephemeral credentials, as one `items` list.
pub const EPHEMERAL: &str = r#"{"version":"v1","items":[
 {"version":"v1","admin":{"name":"stunner/udp-gateway"},
  "auth":{"type":"ephemeral","realm":"stunner.l7mp.io","credentials":{"secret":"my-shared-secret"}},
  "listeners":[{"name":"stunner/udp-gateway/udp-listener","protocol":"TURN-UDP","public_address":"198.51.100.1",
    "public_port":3478,"address":"$STUNNER_ADDR","port":3478}]},
 {"version":"v1","admin":{"name":"stunner/tcp-gateway"},
  "auth":{"type":"ephemeral","realm":"stunner.l7mp.io","credentials":{"secret":"my-shared-secret"}},
  "listeners":[{"name":"stunner/tcp-gateway/tcp-listener","protocol":"TURN-TCP","public_address":"198.51.100.2",
    "public_port":443,"address":"$STUNNER_ADDR","port":3478}]}]}"#;

/// How long a config change may take to show (the service polls every 50ms in tests; the
/// contract is "within a second").
pub const RELOAD: Duration = Duration::from_secs(5);

pub struct TestApp {
    pub service: Service,
    pub dir: TempDir,
    pub config: PathBuf,
    pub http: reqwest::Client,
}

impl TestApp {
    /// Starts the service with `config` written to `stunnerd.conf`, or no file at all.
    pub async fn start(config: Option<&str>) -> TestApp {
        Self::start_with(config, &[]).await
    }

    /// Starts the service with `config` and these environment variables.
    pub async fn start_env(config: Option<&str>, env: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("stunnerd.conf");
        if let Some(text) = config {
            std::fs::write(&path, text).expect("write config");
        }
        Self::launch(dir, path, &[], env).await
    }

    pub async fn start_with(config: Option<&str>, extra: &[&str]) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("stunnerd.conf");
        if let Some(text) = config {
            std::fs::write(&path, text).expect("write config");
        }
        Self::start_at(dir, path, extra).await
    }

    /// Starts the service on a config path prepared by the caller inside `dir`.
    pub async fn start_at(dir: TempDir, config: PathBuf, extra: &[&str]) -> TestApp {
        Self::launch(dir, config, extra, &[]).await
    }

    async fn launch(
        dir: TempDir,
        config: PathBuf,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> TestApp {
        let path = config.to_str().expect("utf-8 path").to_owned();
        let mut args = vec![
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--stunner-config",
            &path,
            "--config-poll-interval",
            "50ms",
        ];
        args.extend_from_slice(extra);
        let service = Service::start(Path::new(env!("CARGO_BIN_EXE_ice-config")), &args, env).await;
        TestApp {
            service,
            dir,
            config,
            http: reqwest::Client::new(),
        }
    }

    pub async fn grpc(&self) -> IceConfigServiceClient<Channel> {
        IceConfigServiceClient::connect(self.service.url("grpc", ""))
            .await
            .expect("connect to gRPC")
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.service.url("grpc", ""))
            .expect("valid uri")
            .connect()
            .await
            .expect("connect to gRPC")
    }

    /// GET on the HTTP port: (status, body).
    pub async fn get(&self, path_and_query: &str) -> (u16, String) {
        let response = self
            .http
            .get(self.service.url("http", path_and_query))
            .send()
            .await
            .expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    pub async fn get_json(&self, path_and_query: &str) -> serde_json::Value {
        let (status, body) = self.get(path_and_query).await;
        assert_eq!(status, 200, "GET {path_and_query}: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    /// Replaces the config file the way an editor or `kubectl cp` would: write, then rename.
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.path().join(".stunnerd.conf.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    /// Waits until GetIceConfig for `request` answers with a config that satisfies `check`.
    pub async fn wait_for_config(
        &self,
        what: &str,
        request: GetIceConfigRequest,
        check: impl Fn(&IceConfig) -> bool,
    ) -> IceConfig {
        let client = self.grpc().await;
        testkit::eventually(RELOAD, what, || {
            let mut client = client.clone();
            let request = request.clone();
            let check = &check;
            async move {
                let answer = client.get_ice_config(request).await.ok()?.into_inner();
                check(&answer).then_some(answer)
            }
        })
        .await
    }

    /// Waits until a metric sample line exists with exactly this value.
    pub async fn wait_for_metric(&self, sample: &str, value: f64) {
        testkit::eventually(RELOAD, sample, || async {
            (metric(&self.get("/metrics").await.1, sample) == Some(value)).then_some(())
        })
        .await;
    }
}

pub use testkit::metric;

pub fn all_urls(config: &IceConfig) -> Vec<String> {
    config
        .ice_servers
        .iter()
        .flat_map(|s| s.urls.clone())
        .collect()
}
