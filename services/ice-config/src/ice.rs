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
    stunner_config::{Auth, AuthKind, StunnerConfig},
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
}

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

/// Why a request is malformed; the message names the offending field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("username: longer than {MAX_USER_ID_LEN} characters")]
    UserTooLong,
    #[error("username: must not contain ':' or control characters")]
    UserBadChar,
    #[error("ttl: {0:?} is not a whole number of seconds")]
    TtlNotNumber(String),
    #[error("ttl: must be between 1 and {max} seconds, got {got}")]
    TtlOutOfRange { got: u64, max: u64 },
    #[error("iceTransportPolicy: {0:?} is not one of all, public, relay")]
    BadPolicy(String),
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
    let urls: Vec<String> = config
        .listeners
        .iter()
        .filter(|listener| request.filter.admits(listener.path()))
        .filter_map(|listener| listener.turn_uri())
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

    /// Parses the text of a query parameter.
    pub fn parse_text(seconds: Option<&str>, limits: TtlPolicy) -> Result<Self, RequestError> {
        let seconds = seconds
            .map(|s| {
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| RequestError::TtlNotNumber(s.to_owned()))
            })
            .transpose()?;
        Self::parse(seconds, limits)
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
