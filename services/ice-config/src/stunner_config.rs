//! STUNner dataplane configs (`stunnerd.conf`), parsed into typed values.
//!
//! Both eras are accepted: `v1alpha1` (the legacy operator, the tutorial's ConfigMap) and `v1`
//! (one config per Gateway, served by the config discovery service), in JSON or YAML. STUNner
//! is written in Go, whose JSON decoder matches keys case-insensitively, so real files contain
//! both `loglevel` and `logLevel`: keys are folded to lower case before the typed decoding.
//! Everything this service does not need (clusters, routes, admin settings) is ignored.
//! (Over 300 lines: both config eras and their aliases, parsed in one place.)

use std::{collections::BTreeMap, fmt, net::Ipv6Addr, str::FromStr};

use serde::Deserialize;

/// The realm STUNner uses when a config names none.
pub const DEFAULT_REALM: &str = "stunner.l7mp.io";
/// The port STUNner listens on when a listener names none.
pub const DEFAULT_PORT: u16 = 3478;

/// One STUNner dataplane config: one Gateway with the operator, one daemon in the legacy era.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunnerConfig {
    /// `admin.name`: `namespace/gateway` with the operator, free-form in the legacy era.
    pub name: String,
    pub realm: String,
    pub auth: Auth,
    pub listeners: Vec<Listener>,
}

/// How STUNner authenticates TURN clients.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials are checked.
    None,
    /// One username/password for everybody (`static`, legacy `plaintext`).
    Static { username: String, password: String },
    /// TURN REST API credentials derived from a shared secret (`ephemeral`, legacy `longterm`,
    /// the operator's `timewindowed`).
    Ephemeral { secret: String },
}

/// A listener of the config and where clients reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// `namespace/gateway/listener` with the operator, a bare name in the legacy era.
    pub name: String,
    pub protocol: Protocol,
    /// The address and port clients connect to; `None` when the config only has a
    /// placeholder (`$STUNNER_ADDR`, `__node_address_placeholder`) or a wildcard, which must
    /// never be advertised.
    pub endpoint: Option<(String, u16)>,
    /// The port clients connect to when a public address is given from outside the config
    /// (`public-addr`, `STUNNER_PUBLIC_ADDR`): the public port, else the listening port.
    pub public_port: u16,
    /// What the config has instead of an address when `endpoint` is `None`, for the reason
    /// the listener is skipped.
    pub unadvertised: Option<String>,
}

/// The transport of a TURN listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Udp,
    Tcp,
    Tls,
    Dtls,
}

/// Why a document is not a usable STUNner config.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("the document is empty")]
    Empty,
    #[error("the document is {0} bytes; a STUNner config is at most {MAX_DOCUMENT}")]
    TooLarge(usize),
    #[error("{0}")]
    Shape(String),
    #[error("missing `version` (expected \"v1alpha1\" or \"v1\")")]
    MissingVersion,
    #[error("unsupported version {0:?} (expected \"v1alpha1\" or \"v1\")")]
    UnsupportedVersion(String),
    #[error(
        "unknown auth type {0:?} (expected none, static, plaintext, ephemeral, longterm or timewindowed)"
    )]
    UnknownAuthType(String),
    #[error("auth type {kind} needs `auth.credentials.{field}`")]
    MissingCredential {
        kind: &'static str,
        field: &'static str,
    },
    #[error(
        "listener {listener:?}: unknown protocol {protocol:?} (expected UDP, TCP, TLS, DTLS, optionally prefixed with TURN-)"
    )]
    UnknownProtocol { listener: String, protocol: String },
    #[error("listener {listener:?}: port {port} is out of range")]
    BadPort { listener: String, port: i64 },
    #[error("listener {listener:?}: {address:?} is neither an IP address nor a host name")]
    BadAddress { listener: String, address: String },
}

/// Parses one document: a single config, or a list of them under `items` (the shape of the
/// config discovery service's `GET /api/v1/configs`, handy for several Gateways in one file).
pub fn parse_document(text: &str) -> Result<Vec<StunnerConfig>, ConfigError> {
    let value = fold_keys(parse_tree(text)?);
    match value {
        serde_json::Value::Object(ref map) if map.contains_key("items") => {
            let list: RawList = from_tree(value)?;
            list.items
                .into_iter()
                .map(StunnerConfig::try_from)
                .collect()
        }
        serde_json::Value::Object(_) => Ok(vec![StunnerConfig::try_from(from_tree::<RawConfig>(
            value,
        )?)?]),
        _ => Err(ConfigError::Shape(
            "a STUNner config must be an object".into(),
        )),
    }
}

/// Parses a document that must hold exactly one config.
pub fn parse(text: &str) -> Result<StunnerConfig, ConfigError> {
    let value = fold_keys(parse_tree(text)?);
    if !value.is_object() {
        return Err(ConfigError::Shape(
            "a STUNner config must be an object".into(),
        ));
    }
    StunnerConfig::try_from(from_tree::<RawConfig>(value)?)
}

// === impl StunnerConfig ===

#[cfg(test)]
impl StunnerConfig {
    /// A config with a name and nothing else, for tests of what merely holds configs.
    pub(crate) fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            realm: "r".into(),
            auth: Auth::None,
            listeners: vec![],
        }
    }
}

impl StunnerConfig {
    /// `(namespace, gateway)` when `admin.name` has the operator's `namespace/gateway` form.
    pub fn gateway_ref(&self) -> Option<(&str, &str)> {
        self.name.split_once('/')
    }
}

impl TryFrom<RawConfig> for StunnerConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        match raw.version.as_deref().map(str::trim) {
            None | Some("") => return Err(ConfigError::MissingVersion),
            Some("v1alpha1" | "v1") => {}
            Some(other) => return Err(ConfigError::UnsupportedVersion(other.to_owned())),
        }
        let raw_auth = raw.auth.unwrap_or_default();
        let realm = raw_auth
            .realm
            .clone()
            .filter(|realm| !realm.is_empty())
            .unwrap_or_else(|| DEFAULT_REALM.to_owned());
        let auth = Auth::try_from(raw_auth)?;
        let listeners = raw
            .listeners
            .into_iter()
            .map(Listener::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: raw.admin.and_then(|admin| admin.name).unwrap_or_default(),
            realm,
            auth,
            listeners,
        })
    }
}

// === impl Auth ===

impl Auth {
    /// The label used in metrics and logs.
    pub fn kind(&self) -> AuthKind {
        match self {
            Auth::None => AuthKind::None,
            Auth::Static { .. } => AuthKind::Static,
            Auth::Ephemeral { .. } => AuthKind::Ephemeral,
        }
    }
}

/// The kind of an [`Auth`], without its secrets: what metrics and expiry logic need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthKind {
    None,
    Static,
    Ephemeral,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::Static => "static",
            AuthKind::Ephemeral => "ephemeral",
        }
    }
}

/// Never prints a password or secret.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Static { username, .. } => f
                .debug_struct("Static")
                .field("username", username)
                .finish_non_exhaustive(),
            Auth::Ephemeral { .. } => f.debug_struct("Ephemeral").finish_non_exhaustive(),
        }
    }
}

impl TryFrom<RawAuth> for Auth {
    type Error = ConfigError;

    fn try_from(raw: RawAuth) -> Result<Self, ConfigError> {
        // STUNner's default auth type is static.
        let kind = raw
            .kind
            .unwrap_or_else(|| "static".into())
            .to_ascii_lowercase();
        let mut credentials = raw.credentials;
        let mut take = |kind: &'static str, field: &'static str| {
            credentials
                .remove(field)
                .filter(|value| !value.is_empty())
                .ok_or(ConfigError::MissingCredential { kind, field })
        };
        match kind.trim() {
            "none" => Ok(Auth::None),
            "static" | "plaintext" => Ok(Auth::Static {
                username: take("static", "username")?,
                password: take("static", "password")?,
            }),
            "ephemeral" | "longterm" | "timewindowed" => Ok(Auth::Ephemeral {
                secret: take("ephemeral", "secret")?,
            }),
            _ => Err(ConfigError::UnknownAuthType(kind)),
        }
    }
}

// === impl Listener ===

impl Listener {
    /// `(namespace, gateway, listener)` when the name has the operator's three-part form.
    pub fn path(&self) -> Option<(&str, &str, &str)> {
        let mut parts = self.name.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(ns), Some(gw), Some(l), None) => Some((ns, gw, l)),
            _ => None,
        }
    }

    /// The TURN URI clients use for this listener, with `public_addr` (already checked to be a
    /// host) in place of the config's addresses when given; `None` if it has no advertisable
    /// endpoint.
    pub fn turn_uri(&self, public_addr: Option<&str>) -> Option<String> {
        let (host, port) = match public_addr {
            Some(host) => (host, self.public_port),
            None => self
                .endpoint
                .as_ref()
                .map(|(host, port)| (host.as_str(), *port))?,
        };
        let host = if host.parse::<Ipv6Addr>().is_ok() {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let (scheme, transport) = match self.protocol {
            Protocol::Udp => ("turn", "udp"),
            Protocol::Tcp => ("turn", "tcp"),
            Protocol::Tls => ("turns", "tcp"),
            Protocol::Dtls => ("turns", "udp"),
        };
        Some(format!("{scheme}:{host}:{port}?transport={transport}"))
    }
}

impl TryFrom<RawListener> for Listener {
    type Error = ConfigError;

    fn try_from(raw: RawListener) -> Result<Self, ConfigError> {
        let name = raw.name.unwrap_or_default();
        let protocol = raw
            .protocol
            .as_deref()
            .unwrap_or("UDP")
            .parse()
            .map_err(|()| ConfigError::UnknownProtocol {
                listener: name.clone(),
                protocol: raw.protocol.clone().unwrap_or_default(),
            })?;
        let port = |value: Option<i64>| match value {
            None | Some(0) => Ok(None),
            Some(port) => u16::try_from(port)
                .map(Some)
                .map_err(|_| ConfigError::BadPort {
                    listener: name.clone(),
                    port,
                }),
        };
        let public_port = port(raw.public_port)?;
        let listen_port = port(raw.port)?.unwrap_or(DEFAULT_PORT);
        let given = [&raw.public_address, &raw.address]
            .into_iter()
            .flatten()
            .map(|address| address.trim())
            .find(|address| !address.is_empty())
            .map(str::to_owned);
        let endpoint = match (advertisable(raw.public_address), advertisable(raw.address)) {
            (Some(host), _) => Some((host, public_port.unwrap_or(listen_port))),
            (None, Some(host)) => Some((host, listen_port)),
            (None, None) => None,
        };
        let unadvertised = endpoint.is_none().then(|| given.unwrap_or_default());
        if let Some((host, _)) = &endpoint
            && !is_host(host)
        {
            return Err(ConfigError::BadAddress {
                listener: name,
                address: host.clone(),
            });
        }
        Ok(Self {
            name,
            protocol,
            endpoint,
            public_port: public_port.unwrap_or(listen_port),
            unadvertised,
        })
    }
}

/// An IP address or a DNS name: what may stand between `turn:` and the port.
pub fn is_host(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || (host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }))
}

/// An address clients can actually reach: not empty, not a wildcard, not a placeholder that
/// something else substitutes later: `$STUNNER_ADDR` (stunnerd expands it from its own
/// environment) or `__node_address_placeholder` (STUNNER's config discovery patches in the
/// address of the node a dataplane pod runs on).
fn advertisable(address: Option<String>) -> Option<String> {
    let address = address?.trim().to_owned();
    let wildcard = matches!(address.as_str(), "0.0.0.0" | "::" | "[::]");
    let placeholder = address.starts_with('$') || is_node_placeholder(&address);
    (!address.is_empty() && !placeholder && !wildcard).then_some(address)
}

/// STUNner's node address placeholder (`__node_address_placeholder` in its API), in any
/// spelling of the same `__…placeholder` form.
fn is_node_placeholder(address: &str) -> bool {
    address.starts_with("__") && address.to_ascii_lowercase().ends_with("placeholder")
}

// === impl Protocol ===

impl FromStr for Protocol {
    type Err = ();

    /// `UDP` up to STUNner v0.15, `TURN-UDP` later; case-insensitive.
    fn from_str(s: &str) -> Result<Self, ()> {
        let upper = s.trim().to_ascii_uppercase();
        match upper.strip_prefix("TURN-").unwrap_or(&upper) {
            "UDP" => Ok(Protocol::Udp),
            "TCP" => Ok(Protocol::Tcp),
            "TLS" => Ok(Protocol::Tls),
            "DTLS" => Ok(Protocol::Dtls),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Udp => "TURN-UDP",
            Protocol::Tcp => "TURN-TCP",
            Protocol::Tls => "TURN-TLS",
            Protocol::Dtls => "TURN-DTLS",
        })
    }
}

// === the wire shape (keys already folded to lower case) ===

#[derive(Deserialize)]
struct RawList {
    #[serde(default)]
    items: Vec<RawConfig>,
}

#[derive(Deserialize)]
struct RawConfig {
    version: Option<String>,
    admin: Option<RawAdmin>,
    auth: Option<RawAuth>,
    #[serde(default)]
    listeners: Vec<RawListener>,
}

#[derive(Deserialize)]
struct RawAdmin {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawAuth {
    #[serde(rename = "type")]
    kind: Option<String>,
    realm: Option<String>,
    #[serde(default)]
    credentials: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawListener {
    name: Option<String>,
    protocol: Option<String>,
    public_address: Option<String>,
    public_port: Option<i64>,
    address: Option<String>,
    port: Option<i64>,
}

/// The largest document parsed: STUNner's configs are a few kilobytes each, and parsing a huge
/// one (YAML above all) costs seconds of CPU.
pub const MAX_DOCUMENT: usize = 4 << 20;

/// JSON when it looks like JSON (for JSON's better error messages), YAML otherwise.
fn parse_tree(text: &str) -> Result<serde_json::Value, ConfigError> {
    if text.len() > MAX_DOCUMENT {
        return Err(ConfigError::TooLarge(text.len()));
    }
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(ConfigError::Empty);
    }
    if trimmed.starts_with('{') {
        return serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()));
    }
    match yaml_serde::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Null) => Err(ConfigError::Empty),
        Ok(value) => Ok(value),
        Err(e) => Err(ConfigError::Yaml(e.to_string())),
    }
}

fn from_tree<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ConfigError> {
    serde_json::from_value(value).map_err(|e| ConfigError::Shape(e.to_string()))
}

/// Lower-cases every object key, as Go's case-insensitive JSON decoding would see them.
fn fold_keys(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key.to_ascii_lowercase(), fold_keys(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(fold_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests;
