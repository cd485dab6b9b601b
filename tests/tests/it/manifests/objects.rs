//! What the repository declares: the rendered overlays and their objects, read with small
//! accessors, and the Dockerfile's stages.

use std::{collections::BTreeMap, path::PathBuf, process::Command};

use serde::Deserialize;
use yaml_serde::Value;

pub const OVERLAYS: &[&str] = &[
    "minimal",
    "production",
    "observability",
    "legacy-configmap",
    "public-ice-config",
];
/// Our services, in the order they are started.
pub const SERVICES: &[&str] = &["ice-config", "signaling", "gateway"];
/// Kinds that are custom resources, which kubernetes-validate has no schema for.
pub const CUSTOM_KINDS: &[&str] = &[
    "Gateway",
    "GatewayClass",
    "GatewayConfig",
    "UDPRoute",
    "ServiceMonitor",
];
pub const KUBERNETES_VERSION: &str = "1.33.0";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn render(overlay: &str) -> String {
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

pub fn objects(overlay: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(&render(overlay))
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc| !doc.is_null())
        .collect()
}

pub fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn of_kind<'a>(objects: &'a [Value], wanted: &'a str) -> impl Iterator<Item = &'a Value> {
    objects.iter().filter(move |o| kind(o) == wanted)
}

pub fn deployment<'a>(objects: &'a [Value], wanted: &str) -> &'a Value {
    of_kind(objects, "Deployment")
        .find(|d| name(d) == wanted)
        .unwrap_or_else(|| panic!("no Deployment {wanted}"))
}

pub fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

pub fn str_list(value: &Value) -> Vec<String> {
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
pub fn env_value<'a>(container: &'a Value, key: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(key))?["value"]
        .as_str()
}

/// The Secret (name, key) an env value of a container comes from.
pub fn env_value_from<'a>(container: &'a Value, key: &str) -> Option<(&'a str, &'a str)> {
    let secret = &container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(key))?["valueFrom"]["secretKeyRef"];
    Some((secret["name"].as_str()?, secret["key"].as_str()?))
}

/// `10s`, `1m`: the durations the manifests give the services.
pub fn seconds(text: &str) -> u64 {
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
pub fn port(container: &Value, port: &Value) -> u16 {
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

/// The Dockerfile's stages: name → the destinations its `COPY` lines write.
pub fn dockerfile_stages() -> BTreeMap<String, Vec<(String, String)>> {
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

/// What the manifests point a container at, rewritten for this machine: an image path the
/// Dockerfile copies from the repository is that repository path.
pub fn image_path(value: &str) -> String {
    for copies in dockerfile_stages().values() {
        for (source, dest) in copies {
            if value == dest && !source.starts_with('/') {
                return repo().join(source).display().to_string();
            }
        }
    }
    value.to_owned()
}
