//! Each overlay's services run as its Deployments say, in a network namespace standing in for
//! the pod network, with the test playing the rest of the cluster.
//! (Over 300 lines: the test plays the kubelet, the API server and the network for each overlay.)

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use testkit::{
    Browser, Service, binary,
    cds::{FakeCds, gateway_config},
    eventually,
    kube_api::{ApiStandIn, certificates, config_map},
    netns::NetNs,
    otlp,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use yaml_serde::Value;

use super::objects::*;

/// The Secrets the manifests reference and the operator creates (the test plays the operator).
const SECRETS: &[(&str, &str, &str)] = &[
    ("signaling-redis", "password", "test-redis-password"),
    ("grpc-token", "token", "test-grpc-token"),
];

/// A container's environment as the kubelet would give it: literal values (with `$(VAR)`
/// references expanded), the downward API fields and the Secret keys the manifests use.
fn pod_env(
    container: &Value,
    pod: &str,
    namespace: &str,
    pod_ip: Ipv4Addr,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container["env"].as_sequence().into_iter().flatten() {
        let key = var["name"].as_str().expect("env name").to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            let mut value = value.to_owned();
            for (earlier, earlier_value) in &env {
                value = value.replace(&format!("$({earlier})"), earlier_value);
            }
            image_path(&value)
        } else if let Some(secret) = var["valueFrom"]["secretKeyRef"].as_mapping() {
            let (name, wanted) = (
                secret.get("name").and_then(Value::as_str),
                secret.get("key").and_then(Value::as_str),
            );
            SECRETS
                .iter()
                .find(|(n, k, _)| Some(*n) == name && Some(*k) == wanted)
                .map(|(_, _, value)| (*value).to_owned())
                .unwrap_or_else(|| panic!("the test has no Secret {name:?} key {wanted:?}"))
        } else {
            match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => pod.to_owned(),
                Some("metadata.namespace") => namespace.to_owned(),
                Some("status.podIP") => pod_ip.to_string(),
                other => panic!("the test does not know how to provide env {key} from {other:?}"),
            }
        };
        env.push((key, value));
    }
    env
}

/// The host of an `http://host:port…` value.
fn url_host(value: &str) -> Option<(&str, u16)> {
    let rest = value.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.split_once(':')?;
    Some((host, port.parse().ok()?))
}

async fn probe(ns_ip: Ipv4Addr, container: &Value, probe: &Value) -> Result<(), String> {
    if probe["grpc"].is_mapping() {
        let port = port(container, &probe["grpc"]["port"]);
        let service = probe["grpc"]["service"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{ns_ip}:{port}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let mut client = HealthClient::new(channel);
        let status = client
            .check(HealthCheckRequest {
                service: service.clone(),
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .status;
        return (status == ServingStatus::Serving as i32)
            .then_some(())
            .ok_or(format!("gRPC health {service:?} on {port}: {status}"));
    }
    if probe["httpGet"].is_mapping() {
        let port = port(container, &probe["httpGet"]["port"]);
        let path = probe["httpGet"]["path"].as_str().unwrap_or("/");
        let url = format!("http://{ns_ip}:{port}{path}");
        let status = reqwest::get(&url)
            .await
            .map_err(|e| e.to_string())?
            .status();
        return status
            .is_success()
            .then_some(())
            .ok_or(format!("GET {url}: {status}"));
    }
    if probe["tcpSocket"].is_mapping() {
        let port = port(container, &probe["tcpSocket"]["port"]);
        return tokio::net::TcpStream::connect((ns_ip, port))
            .await
            .map(drop)
            .map_err(|e| format!("TCP {port}: {e}"));
    }
    Err(format!("unknown probe {probe:?}"))
}

/// An overlay, rendered, with the containers of our services found by name.
struct Overlay {
    name: &'static str,
    objects: Vec<Value>,
    namespace: String,
}

impl Overlay {
    fn render(name: &'static str) -> Self {
        let objects = objects(name);
        let namespace = deployment(&objects, "gateway")["metadata"]["namespace"]
            .as_str()
            .expect("namespaced")
            .to_owned();
        Self {
            name,
            objects,
            namespace,
        }
    }

    fn container(&self, service: &str) -> &Value {
        container(deployment(&self.objects, service))
    }

    /// What runs: our services, and what the overlay brings besides (its Redis).
    fn deployments(&self) -> Vec<&str> {
        let mut running: Vec<&str> = of_kind(&self.objects, "Deployment")
            .map(name)
            .filter(|n| !SERVICES.contains(n))
            .collect();
        running.extend(SERVICES);
        running
    }

    fn pod(&self, service: &str) -> &Value {
        &deployment(&self.objects, service)["spec"]["template"]["spec"]
    }

    fn services(&self) -> impl Iterator<Item = &Value> {
        of_kind(&self.objects, "Service")
    }

    /// Every form of every Service name, as a pod resolves them.
    fn service_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for service in self.services() {
            let (svc, ns) = (
                name(service),
                service["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default"),
            );
            names.extend([
                svc.to_owned(),
                format!("{svc}.{ns}"),
                format!("{svc}.{ns}.svc"),
                format!("{svc}.{ns}.svc.cluster.local"),
            ]);
        }
        names
    }

    /// Hosts our containers are pointed at that are not our Services (STUNner's CDS, a trace
    /// collector): the test plays them.
    fn external_hosts(&self) -> BTreeMap<String, u16> {
        let ours = self.service_names();
        let mut external = BTreeMap::new();
        for service in SERVICES {
            let container = self.container(service);
            for var in container["env"].as_sequence().into_iter().flatten() {
                if let Some((host, port)) = var["value"].as_str().and_then(url_host)
                    && !ours.iter().any(|n| n == host)
                {
                    external.insert(host.to_owned(), port);
                }
            }
        }
        external
    }
}

/// What the cluster would provide: a pod network where the manifests' Service names resolve,
/// STUNner's config (through its config discovery service or, legacy, a ConfigMap in the
/// Kubernetes API), a trace collector.
struct Cluster {
    netns: NetNs,
    /// Serves for as long as the cluster is up.
    _cds: Option<FakeCds>,
    /// The pods' emptyDir volumes.
    scratch: tempfile::TempDir,
    api: Option<KubernetesApi>,
    collector: Option<otlp::Receiver>,
}

impl Cluster {
    async fn provide(overlay: &Overlay) -> Self {
        let service_names = overlay.service_names();
        let external = overlay.external_hosts();
        let netns = NetNs::create(|netns| {
            let mut hosts: Vec<(Ipv4Addr, String)> = service_names
                .iter()
                .map(|n| (netns.ns_ip, n.clone()))
                .collect();
            hosts.extend(external.keys().map(|h| (netns.host_ip, h.clone())));
            hosts
        });
        let stunner = gateway_config("stunner/udp-gateway", "198.51.100.20");
        let ice = overlay.container("ice-config");
        let (mut cds, mut api) = (None, None);
        match config_source(ice).as_str() {
            "cds" => {
                let url = env_value(ice, "CDS_URL").expect("CDS_URL");
                let (_, port) = url_host(url).expect("an http URL");
                let server = FakeCds::start_on(SocketAddr::from((netns.host_ip, port))).await;
                server.put(stunner);
                cds = Some(server);
            }
            "kubernetes" => {
                let stand_in = KubernetesApi::start(netns.host_ip, &overlay.namespace).await;
                stand_in
                    .server
                    .put(config_map("stunner", "stunnerd-config", &stunner));
                api = Some(stand_in);
            }
            other => panic!(
                "{}: the test cannot provide ice-config's {other:?} source",
                overlay.name
            ),
        }
        let collector = match env_value(ice, "OTEL_EXPORTER_OTLP_ENDPOINT").and_then(url_host) {
            Some((_, port)) => {
                Some(otlp::Receiver::start_on(SocketAddr::from((netns.host_ip, port))).await)
            }
            None => None,
        };
        Self {
            netns,
            _cds: cds,
            scratch: tempfile::tempdir().expect("temp dir"),
            api,
            collector,
        }
    }

    /// Starts `service` with exactly its container's command, args and env, plus what the
    /// kubelet adds: the API server's address, and the service account when the pod mounts it.
    async fn run(&self, overlay: &Overlay, service: &str) -> Service {
        let container = overlay.container(service);
        let command = str_list(&container["command"]);
        // Ours are the workspace's binaries; another image's command is a program this machine
        // has (redis-server).
        let program = if SERVICES.contains(&service) {
            binary(
                Path::new(&command[0])
                    .file_name()
                    .and_then(|f| f.to_str())
                    .expect("a binary"),
            )
        } else {
            PathBuf::from(&command[0])
        };
        let mut env = pod_env(
            container,
            &format!("{service}-0"),
            &overlay.namespace,
            self.netns.ns_ip,
        );
        // The kubelet expands `$(VAR)` in args from the container's env; an emptyDir mount is
        // a folder of the test's.
        let scratch = self.scratch.path().join(service);
        let mounts: Vec<String> = container["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|m| m["mountPath"].as_str().map(str::to_owned))
            .collect();
        let args: Vec<String> = str_list(&container["args"])
            .into_iter()
            .map(|mut arg| {
                for (key, value) in &env {
                    arg = arg.replace(&format!("$({key})"), value);
                }
                if mounts.contains(&arg) {
                    std::fs::create_dir_all(&scratch).expect("a scratch folder");
                    arg = scratch.display().to_string();
                }
                arg
            })
            .collect();
        let mut service_account = None;
        if let Some(api) = &self.api {
            env.push((
                "KUBERNETES_SERVICE_HOST".into(),
                self.netns.host_ip.to_string(),
            ));
            env.push((
                "KUBERNETES_SERVICE_PORT".into(),
                api.server.addr().port().to_string(),
            ));
            if overlay.pod(service)["automountServiceAccountToken"].as_bool() == Some(true) {
                service_account = Some(api.service_account.path());
            }
        }
        if SERVICES.contains(&service) {
            self.netns
                .start(&program, &args, &env, service_account)
                .await
        } else {
            self.netns.start_foreign(&program, &args, &env).await
        }
    }
}

/// Every startup, liveness and readiness probe of `service` passes.
async fn probes_pass(overlay: &Overlay, cluster: &Cluster, service: &str, process: &Service) {
    let container = overlay.container(service);
    for kind in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let spec = &container[kind];
        if spec.is_null() {
            continue;
        }
        let last = std::sync::Mutex::new(String::new());
        let passed = testkit::until(Duration::from_secs(30), || async {
            match probe(cluster.netns.ns_ip, container, spec).await {
                Ok(()) => Some(()),
                Err(error) => {
                    *last.lock().expect("lock") = error;
                    None
                }
            }
        })
        .await;
        assert!(
            passed.is_some(),
            "{}: {service}'s {kind} to pass: {}\n{}",
            overlay.name,
            last.lock().expect("lock"),
            process.logs().lines().join("\n")
        );
    }
}

/// Every Service port leads to a container port that accepts connections.
async fn service_ports_connect(overlay: &Overlay, cluster: &Cluster) {
    for service in overlay.services() {
        let running = overlay.deployments();
        let selected = service["spec"]["selector"]["app.kubernetes.io/name"]
            .as_str()
            .filter(|s| running.contains(s))
            .unwrap_or_else(|| {
                panic!(
                    "{}: Service {} selects none of the services",
                    overlay.name,
                    name(service)
                )
            });
        let container = overlay.container(selected);
        for service_port in service["spec"]["ports"].as_sequence().expect("ports") {
            let target = port(container, &service_port["targetPort"]);
            tokio::net::TcpStream::connect((cluster.netns.ns_ip, target))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: Service {} port {target}: {e}",
                        overlay.name,
                        name(service)
                    )
                });
        }
    }
}

/// A browser registers through the gateway: gateway → signaling and gateway → ice-config
/// (through the headless Service) → the STUNner config the test served, all by the
/// manifests' names.
async fn a_browser_registers(overlay: &Overlay, cluster: &Cluster) {
    let gateway = port(overlay.container("gateway"), &Value::from("http"));
    let ns_ip = cluster.netns.ns_ip;
    let page = reqwest::get(format!("http://{ns_ip}:{gateway}/"))
        .await
        .expect("the page");
    assert_eq!(
        page.status(),
        200,
        "{}: the page is served from STATIC_DIR",
        overlay.name
    );
    let mut browser = Browser::connect(&format!("ws://{ns_ip}:{gateway}/one2one")).await;
    let reply = browser.register_ok("alice").await;
    assert!(
        reply
            .to_string()
            .contains("turn:198.51.100.20:3478?transport=udp"),
        "{}: {reply}",
        overlay.name
    );
    browser.close().await;
}

/// Runs the overlay's three services as its Deployments say, and checks what it promises.
async fn run_as_the_manifests_say(name: &'static str) {
    let overlay = Overlay::render(name);
    let cluster = Cluster::provide(&overlay).await;
    let mut running = Vec::new();
    for service in overlay.deployments() {
        running.push((service, cluster.run(&overlay, service).await));
    }
    for (service, process) in &running {
        probes_pass(&overlay, &cluster, service, process).await;
    }
    service_ports_connect(&overlay, &cluster).await;
    a_browser_registers(&overlay, &cluster).await;
    if let Some(api) = &cluster.api {
        check_rbac(&overlay.objects, overlay.pod("ice-config"), api);
    }
    if let Some(collector) = &cluster.collector {
        eventually(
            Duration::from_secs(20),
            "spans from the gateway and ice-config",
            || {
                let spans = collector.spans();
                let from = |s: &str| spans.iter().any(|span| span.service == s);
                let both = from("gateway") && from("ice-config");
                async move { both.then_some(()) }
            },
        )
        .await;
    }
    // SIGTERM drains within the grace period the manifests give.
    for (service, mut process) in running.into_iter().rev() {
        let grace = overlay.pod(service)["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace");
        let code = process.terminate(Duration::from_secs(grace)).await;
        assert_eq!(
            code,
            Some(0),
            "{}: {service} exits cleanly on SIGTERM",
            overlay.name
        );
    }
    drop(cluster);
}

/// ice-config's `--config-source`, from its args or env; `file` by default.
fn config_source(container: &Value) -> String {
    let args = str_list(&container["args"]);
    let from_args = args.iter().enumerate().find_map(|(i, arg)| {
        arg.strip_prefix("--config-source=")
            .map(str::to_owned)
            .or_else(|| {
                (arg == "--config-source")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
    });
    from_args
        .or_else(|| env_value(container, "CONFIG_SOURCE").map(str::to_owned))
        .unwrap_or_else(|| "file".to_owned())
}

/// The Kubernetes API as a pod sees it: the stand-in over TLS, and the service account folder
/// (token, CA certificate, namespace) the kubelet would mount.
struct KubernetesApi {
    server: ApiStandIn,
    service_account: tempfile::TempDir,
    token: String,
}

impl KubernetesApi {
    async fn start(ip: Ipv4Addr, namespace: &str) -> KubernetesApi {
        let service_account = tempfile::tempdir().expect("temp dir");
        let certs = tempfile::tempdir().expect("temp dir");
        let (ca, cert, key) = certificates(certs.path(), ip.into());
        let server = ApiStandIn::start(SocketAddr::from((ip, 6443)), Some((&cert, &key))).await;
        let token = format!("token-{}", std::process::id());
        let folder = service_account.path();
        std::fs::copy(&ca, folder.join("ca.crt")).expect("copy ca.crt");
        std::fs::write(folder.join("token"), &token).expect("write token");
        std::fs::write(folder.join("namespace"), namespace).expect("write namespace");
        KubernetesApi {
            server,
            service_account,
            token,
        }
    }
}

/// Every request ice-config made carried its token and is allowed by a Role bound to its
/// ServiceAccount in the request's namespace: the manifests' RBAC is enough, and namespaced.
fn check_rbac(objects: &[Value], pod: &Value, api: &KubernetesApi) {
    let account = pod["serviceAccountName"]
        .as_str()
        .expect("a service account");
    let account_namespace = pod_namespace(objects);
    let requests = api.server.requests();
    assert!(!requests.is_empty(), "ice-config called the API");
    for request in requests {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {}", api.token).as_str()),
            "{request:?}"
        );
        let namespace = request.namespace.as_deref().expect("a namespaced request");
        let allowed = of_kind(objects, "RoleBinding")
            .filter(|b| b["metadata"]["namespace"].as_str() == Some(namespace))
            .filter(|b| {
                b["subjects"].as_sequence().into_iter().flatten().any(|s| {
                    s["kind"].as_str() == Some("ServiceAccount")
                        && s["name"].as_str() == Some(account)
                        && s["namespace"].as_str() == Some(account_namespace.as_str())
                })
            })
            .filter_map(|b| {
                of_kind(objects, "Role").find(|r| {
                    r["metadata"]["namespace"].as_str() == Some(namespace)
                        && Some(name(r)) == b["roleRef"]["name"].as_str()
                })
            })
            .flat_map(|role| role["rules"].as_sequence().into_iter().flatten())
            .any(|rule| {
                str_list(&rule["apiGroups"]) == [""]
                    && str_list(&rule["resources"]).contains(&"configmaps".to_owned())
                    && str_list(&rule["verbs"]).contains(&request.verb)
            });
        assert!(allowed, "the manifests' RBAC does not allow {request:?}");
    }
}

fn pod_namespace(objects: &[Value]) -> String {
    deployment(objects, "ice-config")["metadata"]["namespace"]
        .as_str()
        .expect("namespaced")
        .to_owned()
}

#[tokio::test]
async fn services_run_as_the_minimal_overlay_says() {
    run_as_the_manifests_say("minimal").await;
}

#[tokio::test]
async fn services_run_as_the_production_overlay_says() {
    run_as_the_manifests_say("production").await;
}

#[tokio::test]
async fn services_run_as_the_legacy_configmap_overlay_says() {
    run_as_the_manifests_say("legacy-configmap").await;
}
