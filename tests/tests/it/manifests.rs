//! The Kubernetes manifests in `k8s/`, checked without a cluster (none can run here):
//!
//! - every overlay renders with `kubectl kustomize`, and every built-in object validates
//!   strictly against the Kubernetes schemas (`kubernetes-validate --strict`); STUNner's and
//!   the Gateway API's custom resources have no schema there and are the only ones allowed to
//!   go unchecked;
//! - every Deployment meets the pod standards (resources, probes, non-root, read-only root
//!   filesystem, no capabilities, a grace period that covers the service's drain);
//! - the Dockerfile builds what the manifests run;
//! - each service is run with exactly the command, args, env and ports its rendered
//!   Deployment gives it, in a network namespace standing in for the pod network, with the
//!   cluster's names resolving there, and the test playing what the cluster would provide
//!   (STUNner's CDS, a trace collector, the Kubernetes API with a mounted service account);
//!   then every probe and every Service port of the manifests must answer, a browser
//!   registration must work through them, ice-config's API requests must be allowed by the
//!   manifests' RBAC, and SIGTERM must drain within the grace period. A flag renamed in code
//!   breaks this test, not a cluster.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde::Deserialize;
use serde_yaml::Value;
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

const OVERLAYS: &[&str] = &["minimal", "production", "observability", "legacy-configmap"];
/// Our services, in the order they are started.
const SERVICES: &[&str] = &["ice-config", "signaling", "gateway"];
/// Kinds that are custom resources, which kubernetes-validate has no schema for.
const CUSTOM_KINDS: &[&str] = &["Gateway", "GatewayClass", "GatewayConfig", "UDPRoute"];
const KUBERNETES_VERSION: &str = "1.33.0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn render(overlay: &str) -> String {
    let dir = repo().join("k8s/overlays").join(overlay);
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl is installed");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

fn objects(overlay: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&render(overlay))
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn of_kind<'a>(objects: &'a [Value], wanted: &'a str) -> impl Iterator<Item = &'a Value> {
    objects.iter().filter(move |o| kind(o) == wanted)
}

fn deployment<'a>(objects: &'a [Value], wanted: &str) -> &'a Value {
    of_kind(objects, "Deployment")
        .find(|d| name(d) == wanted)
        .unwrap_or_else(|| panic!("no Deployment {wanted}"))
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn str_list(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|seq| {
            seq.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A literal env value of a container.
fn env_value<'a>(container: &'a Value, key: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(key))?["value"]
        .as_str()
}

/// `10s`, `1m`: the durations the manifests give the services.
fn seconds(text: &str) -> u64 {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("a duration: {text}"));
    match unit {
        "s" | "" => number,
        "m" => number * 60,
        other => panic!("unexpected unit {other} in {text}"),
    }
}

/// A probe's or Service's port: a number, or the name of one of the container's ports.
fn port(container: &Value, port: &Value) -> u16 {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).expect("a port number");
    }
    let wanted = port.as_str().expect("a port is a number or a name");
    container["ports"]
        .as_sequence()
        .and_then(|ports| ports.iter().find(|p| p["name"].as_str() == Some(wanted)))
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| {
            panic!(
                "container {} has no port named {wanted}",
                container["name"].as_str().unwrap_or_default()
            )
        })
}

#[test]
fn every_overlay_renders_and_its_builtin_objects_validate_strictly() {
    let dir = tempfile::tempdir().expect("temp dir");
    for overlay in OVERLAYS {
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, render(overlay)).expect("write");
        // As a module of the test tools' virtualenv (scripts/test.sh makes it), whatever is on
        // PATH.
        let output = Command::new(testkit::test_python())
            .args([
                "-m",
                "kubernetes_validate",
                "--strict",
                "--kubernetes-version",
                KUBERNETES_VERSION,
            ])
            .arg(&file)
            .output()
            .expect("python3 is installed");
        assert!(
            !String::from_utf8_lossy(&output.stderr)
                .contains("No module named kubernetes_validate"),
            "kubernetes-validate is not installed (bash scripts/test.sh puts it in target/test-venv)"
        );
        let report = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{overlay}: {report}");
        for line in report.lines() {
            assert!(!line.starts_with("ERROR"), "{overlay}: {line}");
            if line.starts_with("WARN") {
                assert!(
                    CUSTOM_KINDS
                        .iter()
                        .any(|k| line.contains(&format!("kind {k} "))),
                    "{overlay}: only custom resources may go unchecked: {line}"
                );
            }
        }
        let validated = report
            .lines()
            .filter(|l| l.starts_with("INFO") && l.contains(" passed for resource "))
            .count();
        let builtin = objects(overlay)
            .iter()
            .filter(|o| !CUSTOM_KINDS.contains(&kind(o)))
            .count();
        assert_eq!(
            validated, builtin,
            "{overlay}: every built-in object was validated:\n{report}"
        );
    }
}

#[test]
fn every_deployment_meets_the_pod_standards() {
    for overlay in OVERLAYS {
        let objects = objects(overlay);
        for deployment in of_kind(&objects, "Deployment") {
            let id = format!("{overlay}/{}", name(deployment));
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"].as_bool(),
                Some(true),
                "{id}"
            );
            for container in pod["containers"].as_sequence().expect("containers") {
                let security = &container["securityContext"];
                assert_eq!(
                    security["readOnlyRootFilesystem"].as_bool(),
                    Some(true),
                    "{id}"
                );
                assert_eq!(
                    security["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{id}"
                );
                assert_eq!(str_list(&security["capabilities"]["drop"]), ["ALL"], "{id}");
                for bound in ["requests", "limits"] {
                    for resource in ["cpu", "memory"] {
                        assert!(
                            !container["resources"][bound][resource].is_null(),
                            "{id}: {bound}.{resource}"
                        );
                    }
                }
                for probe in ["livenessProbe", "readinessProbe"] {
                    assert!(container[probe].is_mapping(), "{id}: {probe}");
                }
                // A gRPC port is probed over gRPC health.
                let grpc_ports: Vec<u16> = container["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["name"].as_str() == Some("grpc"))
                    .map(|p| port(container, &p["containerPort"]))
                    .collect();
                for grpc in grpc_ports {
                    for probe in ["livenessProbe", "readinessProbe"] {
                        let probed = &container[probe]["grpc"]["port"];
                        assert_eq!(
                            probed.as_u64(),
                            Some(u64::from(grpc)),
                            "{id}: {probe} is a gRPC health probe"
                        );
                    }
                }
            }
            if SERVICES.contains(&name(deployment)) {
                let container = container(deployment);
                let grace = pod["terminationGracePeriodSeconds"]
                    .as_u64()
                    .expect("a grace period");
                let drain =
                    seconds(env_value(container, "SHUTDOWN_GRACE").expect("SHUTDOWN_GRACE"));
                let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
                    .as_u64()
                    .unwrap_or(0);
                assert!(
                    grace > pre_stop + drain,
                    "{id}: grace {grace}s <= preStop {pre_stop}s + drain {drain}s"
                );
                // Only ice-config, reading ConfigMaps, may talk to the API server.
                let automount = pod["automountServiceAccountToken"].as_bool();
                let needs_api = *overlay == "legacy-configmap" && name(deployment) == "ice-config";
                assert_eq!(
                    automount,
                    Some(needs_api),
                    "{id}: automountServiceAccountToken"
                );
            }
        }
        for role in of_kind(&objects, "Role").chain(of_kind(&objects, "ClusterRole")) {
            for rule in role["rules"].as_sequence().expect("rules") {
                assert_eq!(
                    str_list(&rule["resources"]),
                    ["configmaps"],
                    "{overlay}: {rule:?}"
                );
                for verb in str_list(&rule["verbs"]) {
                    assert!(
                        ["get", "list", "watch"].contains(&verb.as_str()),
                        "{overlay}: {verb}"
                    );
                }
            }
        }
    }
}

#[test]
fn production_scales_spreads_and_protects_the_stateless_services() {
    let objects = objects("production");
    for service in ["ice-config", "gateway"] {
        let deployment = deployment(&objects, service);
        assert!(
            deployment["spec"]["replicas"].as_u64() >= Some(2),
            "{service} replicas"
        );
        let spread = &deployment["spec"]["template"]["spec"]["topologySpreadConstraints"];
        let keys: Vec<&str> = spread
            .as_sequence()
            .expect("topology spread")
            .iter()
            .filter_map(|c| c["topologyKey"].as_str())
            .collect();
        assert_eq!(
            keys,
            ["topology.kubernetes.io/zone", "kubernetes.io/hostname"],
            "{service}"
        );
        let hpa = of_kind(&objects, "HorizontalPodAutoscaler")
            .find(|h| h["spec"]["scaleTargetRef"]["name"].as_str() == Some(service))
            .unwrap_or_else(|| panic!("no HPA for {service}"));
        assert!(hpa["spec"]["minReplicas"].as_u64() >= Some(2));
        let pdb = of_kind(&objects, "PodDisruptionBudget")
            .find(|p| {
                p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"].as_str()
                    == Some(service)
            })
            .unwrap_or_else(|| panic!("no PodDisruptionBudget for {service}"));
        assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
        assert!(env_value(container(deployment), "OTEL_EXPORTER_OTLP_ENDPOINT").is_some());
    }
    // The gateway balances over ice-config's pods through the headless Service.
    let headless = of_kind(&objects, "Service")
        .find(|s| name(s) == "ice-config-grpc")
        .expect("headless Service");
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));
    let url = env_value(container(deployment(&objects, "gateway")), "ICE_CONFIG_URL")
        .expect("ICE_CONFIG_URL");
    assert!(url.starts_with("http://ice-config-grpc:"), "{url}");
}

/// The Dockerfile's stages: name → the destinations its `COPY` lines write.
fn dockerfile_stages() -> BTreeMap<String, Vec<(String, String)>> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let mut stages = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["FROM", .., "AS", stage] => {
                current = (*stage).to_owned();
                stages.insert(current.clone(), Vec::new());
            }
            ["COPY", rest @ ..] if rest.len() >= 2 => {
                let source = rest[rest.len() - 2].to_owned();
                let dest = rest[rest.len() - 1].to_owned();
                stages
                    .entry(current.clone())
                    .or_insert_with(Vec::new)
                    .push((source, dest));
            }
            _ => {}
        }
    }
    stages
}

#[test]
fn the_dockerfile_builds_what_the_manifests_run() {
    let stages = dockerfile_stages();
    for overlay in OVERLAYS {
        let objects = objects(overlay);
        for service in SERVICES {
            let container = container(deployment(&objects, service));
            let image = container["image"].as_str().expect("image");
            let target = image
                .rsplit('/')
                .next()
                .and_then(|i| i.split(':').next())
                .expect("image name");
            assert_eq!(
                target, *service,
                "{overlay}: the image is named after its Dockerfile target"
            );
            let copies = stages
                .get(target)
                .unwrap_or_else(|| panic!("no Dockerfile target {target}"));
            let command = str_list(&container["command"]);
            assert_eq!(
                command.len(),
                1,
                "{overlay}/{service}: the command is the binary"
            );
            assert!(
                copies.iter().any(|(_, dest)| *dest == command[0]),
                "{overlay}/{service}: {} is not installed by target {target}: {copies:?}",
                command[0]
            );
            if let Some(static_dir) = env_value(container, "STATIC_DIR") {
                assert!(
                    copies.contains(&("static".to_owned(), static_dir.to_owned())),
                    "{overlay}: STATIC_DIR"
                );
            }
        }
    }
}

/// What the manifests point a container at, rewritten for this machine: an image path the
/// Dockerfile copies from the repository is that repository path.
fn image_path(value: &str) -> String {
    for copies in dockerfile_stages().values() {
        for (source, dest) in copies {
            if value == dest && !source.starts_with('/') {
                return repo().join(source).display().to_string();
            }
        }
    }
    value.to_owned()
}

/// A container's environment as the kubelet would give it: literal values (with `$(VAR)`
/// references expanded) and the downward API fields the manifests use.
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
    Err(format!("unknown probe {probe:?}"))
}

/// Runs the overlay's three services as its Deployments say, and checks what it promises.
async fn run_as_the_manifests_say(overlay: &str) {
    let objects = objects(overlay);
    let namespace = deployment(&objects, "gateway")["metadata"]["namespace"]
        .as_str()
        .expect("namespaced")
        .to_owned();
    let services: Vec<&Value> = of_kind(&objects, "Service").collect();
    let containers: Vec<(&str, &Value)> = SERVICES
        .iter()
        .map(|s| (*s, container(deployment(&objects, s))))
        .collect();

    // Names: the manifests' Services resolve to the "pod network" (the namespace); anything
    // else a container is pointed at (STUNner's CDS, a trace collector) to the test.
    let mut service_names = Vec::new();
    for service in &services {
        let (svc, ns) = (
            name(service),
            service["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default"),
        );
        for form in [
            svc.to_owned(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ] {
            service_names.push(form);
        }
    }
    let mut external: BTreeMap<String, u16> = BTreeMap::new();
    for (_, container) in &containers {
        for var in container["env"].as_sequence().into_iter().flatten() {
            if let Some((host, port)) = var["value"].as_str().and_then(url_host)
                && !service_names.iter().any(|n| n == host)
            {
                external.insert(host.to_owned(), port);
            }
        }
    }
    let netns = NetNs::create(|netns| {
        let mut hosts: Vec<(Ipv4Addr, String)> = service_names
            .iter()
            .map(|n| (netns.ns_ip, n.clone()))
            .collect();
        hosts.extend(external.keys().map(|h| (netns.host_ip, h.clone())));
        hosts
    });

    // What the cluster would provide: STUNner's config (through its config discovery service
    // or, legacy, a ConfigMap in the Kubernetes API), a trace collector.
    let stunner = gateway_config("stunner/udp-gateway", "198.51.100.20");
    let ice = containers[0].1;
    let mut cds = None;
    let mut cluster = None;
    match config_source(ice).as_str() {
        "cds" => {
            let url = env_value(ice, "CDS_URL").expect("CDS_URL");
            let (_, port) = url_host(url).expect("an http URL");
            let server = FakeCds::start_on(SocketAddr::from((netns.host_ip, port))).await;
            server.put(stunner.clone());
            cds = Some(server);
        }
        "kubernetes" => {
            let api = KubernetesApi::start(netns.host_ip, &namespace).await;
            api.server
                .put(config_map("stunner", "stunnerd-config", &stunner));
            cluster = Some(api);
        }
        other => panic!("{overlay}: the test cannot provide ice-config's {other:?} source"),
    }
    let collector =
        match env_value(containers[0].1, "OTEL_EXPORTER_OTLP_ENDPOINT").and_then(url_host) {
            Some((_, port)) => {
                Some(otlp::Receiver::start_on(SocketAddr::from((netns.host_ip, port))).await)
            }
            None => None,
        };

    let mut running: Vec<(&str, &Value, Service)> = Vec::new();
    for (service, container) in &containers {
        let command = str_list(&container["command"]);
        let program = binary(
            Path::new(&command[0])
                .file_name()
                .and_then(|f| f.to_str())
                .expect("a binary"),
        );
        let args = str_list(&container["args"]);
        let mut env = pod_env(container, &format!("{service}-0"), &namespace, netns.ns_ip);
        // What the kubelet adds: the API server's address, and the service account's token
        // when the pod mounts it.
        let pod = &deployment(&objects, service)["spec"]["template"]["spec"];
        let mut service_account = None;
        if let Some(api) = &cluster {
            env.push(("KUBERNETES_SERVICE_HOST".into(), netns.host_ip.to_string()));
            env.push((
                "KUBERNETES_SERVICE_PORT".into(),
                api.server.addr().port().to_string(),
            ));
            if pod["automountServiceAccountToken"].as_bool() == Some(true) {
                service_account = Some(api.service_account.path());
            }
        }
        let process = netns.start(&program, &args, &env, service_account).await;
        running.push((service, container, process));
    }

    for (service, container, process) in &running {
        for kind in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let spec = &container[kind];
            if spec.is_null() {
                continue;
            }
            let what = format!("{overlay}: {service}'s {kind} to pass");
            let last = std::sync::Mutex::new(String::new());
            let outcome = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    match probe(netns.ns_ip, container, spec).await {
                        Ok(()) => return,
                        Err(error) => *last.lock().expect("lock") = error,
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            assert!(
                outcome.is_ok(),
                "{what}: {}\n{}",
                last.lock().expect("lock"),
                process.logs().lines().join("\n")
            );
        }
    }

    // Every Service port leads to a container port that accepts connections.
    for service in &services {
        let selector = &service["spec"]["selector"]["app.kubernetes.io/name"];
        let Some((_, container, _)) = running
            .iter()
            .find(|(s, _, _)| selector.as_str() == Some(*s))
        else {
            panic!(
                "{overlay}: Service {} selects none of the services",
                name(service)
            );
        };
        for service_port in service["spec"]["ports"].as_sequence().expect("ports") {
            let target = port(container, &service_port["targetPort"]);
            tokio::net::TcpStream::connect((netns.ns_ip, target))
                .await
                .unwrap_or_else(|e| {
                    panic!("{overlay}: Service {} port {target}: {e}", name(service))
                });
        }
    }

    // A browser registers through the gateway: gateway → signaling and gateway → ice-config
    // (through the headless Service) → the CDS config, all by the manifests' names.
    let gateway_port = port(containers[2].1, &Value::from("http"));
    let page = reqwest::get(format!("http://{}:{gateway_port}/", netns.ns_ip))
        .await
        .expect("the page");
    assert_eq!(
        page.status(),
        200,
        "{overlay}: the page is served from STATIC_DIR"
    );
    let mut browser =
        Browser::connect(&format!("ws://{}:{gateway_port}/one2one", netns.ns_ip)).await;
    let reply = browser.register_ok("alice").await;
    assert!(
        reply
            .to_string()
            .contains("turn:198.51.100.20:3478?transport=udp"),
        "{overlay}: {reply}"
    );
    browser.close().await;

    if let Some(api) = &cluster {
        check_rbac(
            &objects,
            &deployment(&objects, "ice-config")["spec"]["template"]["spec"],
            api,
        );
    }

    if let Some(collector) = &collector {
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
    for (service, _, mut process) in running.into_iter().rev() {
        let grace = deployment(&objects, service)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace");
        let code = process.terminate(Duration::from_secs(grace)).await;
        assert_eq!(
            code,
            Some(0),
            "{overlay}: {service} exits cleanly on SIGTERM"
        );
    }
    drop((cds, cluster));
    drop(netns);
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

/// The images' runtime (distroless `cc`) has glibc and libgcc and nothing else: no OpenSSL.
#[test]
fn the_binaries_need_only_what_the_runtime_image_has() {
    const RUNTIME: &[&str] = &[
        "linux-vdso.so.1",
        "libgcc_s.so.1",
        "libm.so.6",
        "libc.so.6",
        "ld-linux-x86-64.so.2",
    ];
    for service in SERVICES {
        let output = Command::new("ldd")
            .arg(binary(service))
            .output()
            .expect("ldd");
        let libraries = String::from_utf8_lossy(&output.stdout).into_owned();
        for line in libraries.lines() {
            let library = line.split_whitespace().next().unwrap_or_default();
            let library = library.rsplit('/').next().unwrap_or_default();
            assert!(
                RUNTIME.contains(&library),
                "{service} needs {library}, which distroless/cc lacks"
            );
        }
    }
}
