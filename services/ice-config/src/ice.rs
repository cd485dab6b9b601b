//! Builds ICE configurations (an RTCConfiguration's `iceServers` and `iceTransportPolicy`)
//! from the loaded STUNner configs, with the semantics of stunner-auth-service: one ICE server
//! per matching config, carrying the URIs of its matching listeners and one credential.
//!
//! Requests are parsed into typed values here, so the gRPC and REST adapters only map errors.
//! (Over 300 lines: the request types and the build rule are one domain.)

use std::{
    fmt,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    credentials,
    store::ConfigSet,
    stunner_config::{self, Auth, AuthKind, Listener, StunnerConfig},
};

/// The longest user id accepted.
pub const MAX_USER_ID_LEN: usize = 256;

/// What a client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceRequest {
    pub user: UserId,
    pub ttl: Ttl,
    pub policy: IceTransportPolicy,
    pub filter: Filter,
    /// The host every URI carries instead of the listeners' own addresses (stunner-auth-service's
    /// `public-addr`, else `STUNNER_PUBLIC_ADDR`).
    pub public_addr: Option<PublicAddr>,
}

/// A host name or IP address that replaces the listeners' addresses in TURN URIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicAddr(String);

/// The user the credentials are issued to: at most [`MAX_USER_ID_LEN`] characters, no `:`
/// (it separates the expiry in ephemeral usernames) and no control characters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserId(String);

/// A credential lifetime between one second and the server's maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttl(Duration);

/// Limits on the lifetimes clients may ask for.
#[derive(Clone, Copy, Debug)]
pub struct TtlPolicy {
    pub default: Duration,
    pub max: Duration,
}

/// What the operator set for every request: lifetimes, and the host every URI carries when the
/// request names none.
#[derive(Clone, Debug, Default)]
pub struct Issuing {
    pub ttl: TtlPolicy,
    /// `STUNNER_PUBLIC_ADDR`: replaces every listener's address in the URIs.
    pub public_addr: Option<PublicAddr>,
}

impl Default for TtlPolicy {
    /// A day when the request names none, as stunner-auth-service; at most a week.
    fn default() -> Self {
        Self {
            default: Duration::from_secs(86_400),
            max: Duration::from_secs(7 * 86_400),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IceTransportPolicy {
    #[default]
    All,
    /// Deprecated by W3C, accepted for compatibility with stunner-auth-service.
    Public,
    Relay,
}

/// Which Gateways and listeners to include. As in stunner-auth-service, `gateway` only applies
/// together with `namespace`, and `listener` only together with both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub namespace: Option<String>,
    pub gateway: Option<String>,
    pub listener: Option<String>,
}

/// An RTCIceServer.
#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    /// Absent with auth type `none`.
    pub credentials: Option<Credentials>,
    /// The auth type the credential comes from, for metrics.
    pub auth_kind: AuthKind,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub credential: String,
}

/// The answer to an [`IceRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceConfig {
    pub ice_servers: Vec<IceServer>,
    pub policy: IceTransportPolicy,
    pub ttl: Ttl,
    /// The earliest expiry of an ephemeral credential in this config; `None` when none expires.
    pub expires_at: Option<SystemTime>,
}

/// Why no ICE configuration could be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IceError {
    #[error("no STUNner configuration available")]
    NoConfig,
    #[error("no valid listener found")]
    NoMatchingListener,
}

/// Why a request is malformed. Each API names the offending field its own way
/// ([`RequestError::rest`], [`RequestError::grpc`]); the domain only says what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("longer than {MAX_USER_ID_LEN} characters")]
    UserTooLong,
    #[error("must not contain ':' or control characters")]
    UserBadChar,
    #[error("must be between 1 and {max} seconds, got {got}")]
    TtlOutOfRange { got: u64, max: u64 },
    #[error("{0:?} is not one of all, public, relay")]
    BadPolicy(String),
    #[error("{0:?} is neither an IP address nor a host name")]
    BadPublicAddr(String),
}

impl RequestError {
    /// The message with the field as the REST API's query names it.
    pub fn rest(&self) -> String {
        let field = match self {
            Self::UserTooLong | Self::UserBadChar => "username",
            Self::TtlOutOfRange { .. } => "ttl",
            Self::BadPolicy(_) => "iceTransportPolicy",
            Self::BadPublicAddr(_) => "public-addr",
        };
        format!("{field}: {self}")
    }

    /// The message with the field as the proto names it.
    pub fn grpc(&self) -> String {
        let field = match self {
            Self::UserTooLong | Self::UserBadChar => "user_id",
            Self::TtlOutOfRange { .. } => "ttl_seconds",
            Self::BadPolicy(_) => "ice_transport_policy",
            Self::BadPublicAddr(_) => "public_addr",
        };
        format!("{field}: {self}")
    }
}

/// Builds the ICE configuration `request` asks for from `configs`, issuing credentials at `now`.
pub fn build(
    configs: &ConfigSet,
    request: &IceRequest,
    now: SystemTime,
) -> Result<IceConfig, IceError> {
    if configs.is_empty() {
        return Err(IceError::NoConfig);
    }
    let expiry = now + request.ttl.0;
    let ice_servers: Vec<IceServer> = configs
        .iter()
        .filter_map(|config| ice_server(config, request, expiry))
        .collect();
    if ice_servers.is_empty() {
        return Err(IceError::NoMatchingListener);
    }
    let expires_at = ice_servers
        .iter()
        .any(|server| server.auth_kind == AuthKind::Ephemeral)
        .then(|| truncate_to_second(expiry));
    Ok(IceConfig {
        ice_servers,
        policy: request.policy,
        ttl: request.ttl,
        expires_at,
    })
}

fn ice_server(
    config: &StunnerConfig,
    request: &IceRequest,
    expiry: SystemTime,
) -> Option<IceServer> {
    let public_addr = request.public_addr.as_ref().map(PublicAddr::as_str);
    let mut listeners: Vec<&Listener> = config
        .listeners
        .iter()
        .filter(|listener| request.filter.admits(listener.path()))
        .collect();
    // UDP, TCP, TLS, DTLS; as the config lists them within a protocol.
    listeners.sort_by_key(|listener| listener.protocol);
    let urls: Vec<String> = listeners
        .into_iter()
        .filter_map(|listener| listener.turn_uri(public_addr))
        .collect();
    if urls.is_empty() {
        return None;
    }
    let credentials = match &config.auth {
        Auth::None => None,
        Auth::Static { username, password } => Some(Credentials {
            username: username.clone(),
            credential: password.clone(),
        }),
        Auth::Ephemeral { secret } => {
            let username =
                credentials::ephemeral_username(unix_seconds(expiry), request.user.as_str());
            let credential = credentials::ephemeral_credential(secret, &username);
            Some(Credentials {
                username,
                credential,
            })
        }
    };
    Some(IceServer {
        urls,
        credentials,
        auth_kind: config.auth.kind(),
    })
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The instant an ephemeral username says it expires (whole seconds, rounded down).
fn truncate_to_second(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds(time))
}

/// Why listeners are left out of every answer: they have no address a client could reach
/// (only a placeholder or a wildcard) and no public address is given from outside the config.
/// One line per listener, for `/readyz` and the logs.
pub fn unadvertised(configs: &ConfigSet, public_addr: Option<&PublicAddr>) -> Vec<String> {
    if public_addr.is_some() {
        return Vec::new();
    }
    configs
        .iter()
        .flat_map(|config| &config.listeners)
        .filter_map(|listener| {
            let given = listener.unadvertised.as_deref()?;
            let given = if given.is_empty() {
                "no address"
            } else {
                given
            };
            Some(format!(
                "listener {}: skipped, its address is {given:?} and it has no public address \
                 (set the Gateway's address or STUNNER_PUBLIC_ADDR)",
                listener.name
            ))
        })
        .collect()
}

// === impl PublicAddr ===

impl PublicAddr {
    /// A host for TURN URIs; brackets around an IPv6 address are accepted and dropped.
    pub fn parse(text: &str) -> Result<Self, RequestError> {
        let host = text.trim();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if stunner_config::is_host(host) {
            Ok(Self(host.to_owned()))
        } else {
            Err(RequestError::BadPublicAddr(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl IceConfig ===

impl IceConfig {
    /// How long after `now` a fresh config should replace this one: a fifth of the remaining
    /// lifetime before expiry (at least a second, at most half of it), so clients always hold
    /// valid credentials. `None` when nothing in it expires.
    pub fn refresh_after(&self, now: SystemTime) -> Option<Duration> {
        let lifetime = self.expires_at?.duration_since(now).unwrap_or_default();
        let margin = (lifetime / 5).max(Duration::from_secs(1).min(lifetime / 2));
        Some(lifetime - margin)
    }
}

// === impl Filter ===

impl Filter {
    /// Whether a listener named `namespace/gateway/listener` (`path`) passes the filter.
    /// Listeners without the operator's three-part name (the legacy era) pass only when no
    /// filter is set.
    fn admits(&self, path: Option<(&str, &str, &str)>) -> bool {
        let Some(namespace) = &self.namespace else {
            return true;
        };
        let Some((ns, gw, l)) = path else {
            return false;
        };
        if ns != namespace {
            return false;
        }
        let Some(gateway) = &self.gateway else {
            return true;
        };
        gw == gateway && self.listener.as_ref().is_none_or(|listener| l == listener)
    }

    /// Builds a filter from optional parts, treating empty strings as absent.
    pub fn new(
        namespace: Option<String>,
        gateway: Option<String>,
        listener: Option<String>,
    ) -> Self {
        let present = |s: Option<String>| s.filter(|s| !s.is_empty());
        Self {
            namespace: present(namespace),
            gateway: present(gateway),
            listener: present(listener),
        }
    }
}

// === impl UserId ===

impl UserId {
    pub fn parse(user: &str) -> Result<Self, RequestError> {
        if user.chars().count() > MAX_USER_ID_LEN {
            return Err(RequestError::UserTooLong);
        }
        if user.chars().any(|c| c == ':' || c.is_control()) {
            return Err(RequestError::UserBadChar);
        }
        Ok(Self(user.to_owned()))
    }

    /// As [`UserId::parse`], with `:` allowed: the REST API's compatible reading (the expiry
    /// comes first in `<expiry>:<user>`, so a TURN server still finds it).
    pub fn parse_allowing_colons(user: &str) -> Result<Self, RequestError> {
        Self::parse(&user.replace(':', "")).map(|_| Self(user.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl Ttl ===

impl Ttl {
    /// `None` asks for the default lifetime; anything outside `1..=max` seconds is refused.
    pub fn parse(seconds: Option<u64>, limits: TtlPolicy) -> Result<Self, RequestError> {
        let Some(seconds) = seconds else {
            return Ok(Self(limits.default));
        };
        let max = limits.max.as_secs();
        if seconds == 0 || seconds > max {
            return Err(RequestError::TtlOutOfRange { got: seconds, max });
        }
        Ok(Self(Duration::from_secs(seconds)))
    }

    /// Any number of seconds brought within `1..=max` (`None`: the default), and whether it had
    /// to be: the REST API's compatible reading.
    pub fn clamp(seconds: Option<i64>, limits: TtlPolicy) -> (Self, bool) {
        let Some(seconds) = seconds else {
            return (Self(limits.default), false);
        };
        let max = i64::try_from(limits.max.as_secs()).unwrap_or(i64::MAX);
        let within = seconds.clamp(1, max.max(1));
        (
            Self(Duration::from_secs(within.unsigned_abs())),
            within != seconds,
        )
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

// === impl IceTransportPolicy ===

impl FromStr for IceTransportPolicy {
    type Err = RequestError;

    fn from_str(s: &str) -> Result<Self, RequestError> {
        match s {
            "all" => Ok(Self::All),
            "public" => Ok(Self::Public),
            "relay" => Ok(Self::Relay),
            other => Err(RequestError::BadPolicy(other.to_owned())),
        }
    }
}

impl IceTransportPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Public => "public",
            Self::Relay => "relay",
        }
    }
}

// === impl IceServer ===

/// Never prints a credential.
impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.credentials.as_ref().map(|c| &c.username))
            .field("auth_kind", &self.auth_kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
