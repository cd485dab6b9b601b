//! What the manifests promise without running anything: strict schema validation, the pod
//! standards, production's scaling and budgets, and an image for every command they run.
//! (Over 300 lines: one test per promise of the manifests.)

use std::process::Command;

use testkit::binary;

use super::objects::*;

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
fn production_replicates_spreads_and_protects_every_service() {
    let objects = objects("production");
    for service in SERVICES {
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
        // A new pod comes before an old one goes: rollouts never lower capacity.
        let rolling = &deployment["spec"]["strategy"];
        assert_eq!(rolling["type"].as_str(), Some("RollingUpdate"), "{service}");
        assert_eq!(
            rolling["rollingUpdate"]["maxUnavailable"].as_u64(),
            Some(0),
            "{service}"
        );
        // The stateless ones scale with load; signaling's replicas share one store.
        if *service != "signaling" {
            let hpa = of_kind(&objects, "HorizontalPodAutoscaler")
                .find(|h| h["spec"]["scaleTargetRef"]["name"].as_str() == Some(service))
                .unwrap_or_else(|| panic!("no HPA for {service}"));
            assert!(hpa["spec"]["minReplicas"].as_u64() >= Some(2));
        }
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
    // ... and keeps a stream to every signaling replica through theirs, all sharing Redis.
    let headless = of_kind(&objects, "Service")
        .find(|s| name(s) == "signaling-grpc")
        .expect("headless signaling Service");
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));
    let url = env_value(container(deployment(&objects, "gateway")), "SIGNALING_URL")
        .expect("SIGNALING_URL");
    assert!(url.starts_with("http://signaling-grpc:"), "{url}");
    let redis =
        env_value(container(deployment(&objects, "signaling")), "REDIS_URL").expect("REDIS_URL");
    assert!(redis.starts_with("redis://"), "{redis}");
}

/// Only gateways reach the gRPC ports of signaling and ice-config (and only signaling reaches
/// Redis); every service presents the shared token from the same optional Secret.
#[test]
fn only_gateways_reach_the_internal_ports() {
    for overlay in OVERLAYS {
        let objects = objects(overlay);
        let mut guarded = vec![("signaling", "grpc"), ("ice-config", "grpc")];
        if of_kind(&objects, "Deployment").any(|d| name(d) == "signaling-redis") {
            guarded.push(("signaling-redis", "redis"));
        }
        for (service, port) in guarded {
            let policy = of_kind(&objects, "NetworkPolicy")
                .find(|p| {
                    p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str()
                        == Some(service)
                })
                .unwrap_or_else(|| panic!("{overlay}: no NetworkPolicy for {service}"));
            let ports: Vec<&str> = container(deployment(&objects, service))["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str())
                .collect();
            let client = if service == "signaling-redis" {
                "signaling"
            } else {
                "gateway"
            };
            for rule in policy["spec"]["ingress"]
                .as_sequence()
                .expect("ingress rules")
            {
                let named: Vec<&str> = rule["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["port"].as_str())
                    .collect();
                for name in &named {
                    assert!(
                        ports.contains(name),
                        "{overlay}: {service} has no port {name}"
                    );
                }
                if named.contains(&port) {
                    let from: Vec<&str> = rule["from"]
                        .as_sequence()
                        .expect("a rule for the guarded port names who may come")
                        .iter()
                        .filter_map(|f| {
                            f["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str()
                        })
                        .collect();
                    assert_eq!(from, [client], "{overlay}: {service}:{port}");
                }
            }
        }
        for service in SERVICES {
            let token = container(deployment(&objects, service))["env"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|v| v["name"].as_str() == Some("GRPC_TOKEN"))
                .unwrap_or_else(|| panic!("{overlay}: {service} has no GRPC_TOKEN"));
            let secret = &token["valueFrom"]["secretKeyRef"];
            assert_eq!(
                (secret["name"].as_str(), secret["key"].as_str()),
                (Some("grpc-token"), Some("token")),
                "{overlay}: {service}"
            );
        }
    }
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

/// The public Ingress routes the page, its assets and the WebSocket, nothing else: the gateway's
/// `/metrics` and probes stay inside. ice-config is exposed only by the opt-in component, and
/// then only its API, with tokens of its own.
#[test]
fn the_public_ingress_routes_only_the_page_and_the_websocket() {
    let allowed = [
        ("/one2one", "Exact"),
        ("/", "Exact"),
        ("/index.html", "Exact"),
        ("/favicon.ico", "Exact"),
        ("/css", "Prefix"),
        ("/js", "Prefix"),
    ];
    for overlay in OVERLAYS {
        let objects = objects(overlay);
        for ingress in of_kind(&objects, "Ingress") {
            let paths: Vec<(&str, &str, &str)> = ingress["spec"]["rules"]
                .as_sequence()
                .into_iter()
                .flatten()
                .flat_map(|rule| rule["http"]["paths"].as_sequence().into_iter().flatten())
                .map(|path| {
                    (
                        path["path"].as_str().unwrap_or_default(),
                        path["pathType"].as_str().unwrap_or_default(),
                        path["backend"]["service"]["name"]
                            .as_str()
                            .unwrap_or_default(),
                    )
                })
                .collect();
            match name(ingress) {
                "gateway" => {
                    for (path, kind, service) in &paths {
                        assert!(
                            allowed.contains(&(*path, *kind)) && *service == "gateway",
                            "{overlay}: the public Ingress routes {kind} {path} to {service}"
                        );
                    }
                    assert!(paths.iter().any(|p| p.0 == "/one2one"), "{overlay}");
                }
                "ice-config-grpc" => {
                    assert_eq!(
                        *overlay, "public-ice-config",
                        "ice-config exposed in {overlay}"
                    );
                    assert_eq!(
                        paths,
                        [("/iceconfig.v1.IceConfigService/", "Prefix", "ice-config")],
                        "only the API, not health or reflection"
                    );
                    let tokens = env_value_from(
                        container(deployment(&objects, "ice-config")),
                        "CLIENT_TOKENS",
                    );
                    assert_eq!(tokens, Some(("ice-config-clients", "tokens")), "{overlay}");
                }
                other => panic!("{overlay}: unexpected Ingress {other}"),
            }
        }
    }
}

/// Objects of cluster-scoped kinds carry no namespace (kustomize stamps one on kinds it does not
/// know, such as STUNner's GatewayClass, when a kustomization sets `namespace:`).
#[test]
fn no_cluster_scoped_object_has_a_namespace() {
    let cluster_scoped = [
        "Namespace",
        "GatewayClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "IngressClass",
        "PriorityClass",
        "StorageClass",
        "PersistentVolume",
    ];
    for overlay in OVERLAYS {
        for object in objects(overlay) {
            let namespace = &object["metadata"]["namespace"];
            if cluster_scoped.contains(&kind(&object)) {
                assert!(
                    namespace.is_null(),
                    "{overlay}: {} {} has namespace {namespace:?}",
                    kind(&object),
                    name(&object)
                );
            } else {
                assert!(
                    namespace.as_str().is_some_and(|ns| !ns.is_empty()),
                    "{overlay}: {} {} has no namespace",
                    kind(&object),
                    name(&object)
                );
            }
        }
    }
}

/// Every port of signaling and ice-config names who may come: nothing there is open to every
/// pod; metrics ports to Prometheus.
#[test]
fn no_internal_port_is_open_to_everyone() {
    for overlay in OVERLAYS {
        let objects = objects(overlay);
        for service in ["signaling", "ice-config"] {
            let rules: Vec<&yaml_serde::Value> = of_kind(&objects, "NetworkPolicy")
                .filter(|p| {
                    p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str()
                        == Some(service)
                })
                .flat_map(|p| p["spec"]["ingress"].as_sequence().into_iter().flatten())
                .collect();
            assert!(!rules.is_empty(), "{overlay}: {service} has no policy");
            for rule in &rules {
                assert!(
                    rule["from"]
                        .as_sequence()
                        .is_some_and(|from| !from.is_empty()),
                    "{overlay}: a rule of {service} lets every pod in: {rule:?}"
                );
            }
            let prometheus = rules.iter().any(|rule| {
                rule["from"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|peer| {
                        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str()
                            == Some("prometheus")
                    })
                    && rule["ports"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .any(|p| p["port"].as_str() == Some("http"))
            });
            assert!(prometheus, "{overlay}: Prometheus cannot scrape {service}");
        }
    }
}

/// With the observability overlay, Prometheus finds every service's metrics port through one
/// ServiceMonitor.
#[test]
fn a_service_monitor_covers_every_metrics_port() {
    let objects = objects("observability");
    let monitor = of_kind(&objects, "ServiceMonitor")
        .next()
        .expect("a ServiceMonitor");
    let wanted = &monitor["spec"]["selector"]["matchLabels"];
    let port = monitor["spec"]["endpoints"][0]["port"]
        .as_str()
        .expect("a port");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["path"].as_str(),
        Some("/metrics")
    );
    for service in SERVICES {
        let covered = of_kind(&objects, "Service").any(|s| {
            let labels = &s["metadata"]["labels"];
            s["metadata"]["labels"]["app.kubernetes.io/name"].as_str() == Some(*service)
                && wanted
                    .as_mapping()
                    .expect("labels")
                    .iter()
                    .all(|(k, v)| &labels[k] == v)
                && s["spec"]["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"].as_str() == Some(port))
        });
        assert!(covered, "{service}'s metrics are not scraped");
    }
}
