//! The HTTP port: the REST API of stunner-auth-service (`GET /ice`, `GET /`), plus `/healthz`,
//! `/readyz` and `/metrics`.
//!
//! Errors are plain text with the statuses and texts stunner-auth-service uses, so its clients
//! keep working: 400 for a bad parameter, 500 while no STUNner config is loaded, 404 when no
//! listener matches. Strict on the gRPC API, compatible on this one: what stunner-auth-service
//! accepts and a client may send (a `:` in a username, a TTL out of range, an unknown policy) is
//! answered here, logged and counted in `iceconfig_lenient_requests_total`.

use std::{fmt, time::SystemTime};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use svc_common::auth::Accepted;

use crate::{
    ice::{
        self, Filter, IceError, IceRequest, IceTransportPolicy, Issuing, PublicAddr, RequestError,
        Ttl, UserId,
    },
    metrics::Metrics,
    store::ConfigStore,
};

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub store: ConfigStore,
    pub metrics: Metrics,
    pub issuing: Issuing,
    /// Who may call the REST API: anyone unless CLIENT_TOKENS is set.
    pub clients: Accepted,
}

pub fn router(state: HttpState) -> Router {
    let (store, metrics) = (state.store.clone(), state.metrics.clone());
    let public_addr = state.issuing.public_addr.clone();
    Router::new()
        // HEAD would run the GET handler and mint a credential nobody sees.
        .route("/ice", get(get_ice).head(no_head))
        .route("/", get(get_turn).head(no_head))
        .with_state(state)
        .merge(svc_common::admin::router(
            move || {
                let mut readiness = store.readiness();
                let skipped = ice::unadvertised(&store.snapshot(), public_addr.as_ref());
                readiness.problems.extend(skipped);
                readiness
            },
            move || metrics.render(),
        ))
}

/// HEAD on an endpoint that issues credentials: refused, issuing nothing.
async fn no_head() -> impl IntoResponse {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET")])
}

/// The query parameters of stunner-auth-service, all optional strings so that every parse error
/// is ours to word.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Params {
    service: Option<String>,
    username: Option<String>,
    ttl: Option<String>,
    ice_transport_policy: Option<String>,
    namespace: Option<String>,
    gateway: Option<String>,
    listener: Option<String>,
    #[serde(rename = "public-addr")]
    public_addr: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IceConfigBody {
    ice_servers: Vec<IceServerBody>,
    ice_transport_policy: &'static str,
}

#[derive(Serialize)]
struct IceServerBody {
    urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<String>,
}

/// The draft-uberti-behave-turn-rest-00 response.
#[derive(Serialize)]
struct TurnBody {
    username: String,
    password: String,
    ttl: u64,
    uris: Vec<String>,
}

/// Which REST endpoint answers: their error texts differ, as in stunner-auth-service.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    /// `GET /ice`: an RTCConfiguration.
    Ice,
    /// `GET /`: the TURN REST API answer.
    Turn,
}

/// A refusal, rendered as stunner-auth-service renders it (plain text, one line), so clients
/// that match on its text keep working.
#[derive(Debug)]
enum RestError {
    /// CLIENT_TOKENS is set and the request presents none of them.
    Unauthenticated,
    /// `service` absent from `GET /`.
    ServiceMissing,
    /// `service` is not `turn`.
    ServiceNotTurn(Endpoint),
    /// `ttl` is not a number.
    TtlFormat(String),
    /// Anything else malformed (our own checks: control characters, public-addr…).
    BadRequest(RequestError),
    Ice(Endpoint, IceError),
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        if matches!(self, RestError::Unauthenticated) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, r#"Bearer realm="ice-config""#)],
                self.to_string() + "\n",
            )
                .into_response();
        }
        let status = match &self {
            RestError::Ice(_, IceError::NoConfig) => StatusCode::INTERNAL_SERVER_ERROR,
            RestError::Ice(_, IceError::NoMatchingListener) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, self.to_string() + "\n").into_response()
    }
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = |endpoint| match endpoint {
            Endpoint::Ice => "could not generate ICE auth token",
            Endpoint::Turn => "could not generate TURN auth token",
        };
        match self {
            RestError::Unauthenticated => {
                f.write_str("this API needs an application token (authorization: Bearer <token>)")
            }
            RestError::ServiceMissing => {
                f.write_str("Query argument service is required, but not found")
            }
            RestError::ServiceNotTurn(endpoint) => {
                write!(f, r#"{}: "\"service\" must be \"turn\"""#, token(*endpoint))
            }
            RestError::TtlFormat(ttl) => write!(
                f,
                "Invalid format for parameter ttl: {ttl:?} is not a whole number of seconds"
            ),
            RestError::BadRequest(error) => f.write_str(&error.rest()),
            RestError::Ice(_, IceError::NoConfig) => write!(f, "{}", IceError::NoConfig),
            RestError::Ice(Endpoint::Ice, error) => {
                write!(f, "could not generate ICE config: {error}")
            }
            RestError::Ice(Endpoint::Turn, error) => {
                write!(f, "{}: {error}", token(Endpoint::Turn))
            }
        }
    }
}

impl RestError {
    fn reason(&self) -> &'static str {
        match self {
            RestError::Ice(_, IceError::NoConfig) => "no_config",
            RestError::Ice(_, IceError::NoMatchingListener) => "no_matching_listener",
            RestError::Unauthenticated => "unauthenticated",
            _ => "invalid_argument",
        }
    }
}

impl From<RequestError> for RestError {
    fn from(error: RequestError) -> Self {
        RestError::BadRequest(error)
    }
}

#[tracing::instrument(name = "GET /ice", skip_all)]
async fn get_ice(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Result<Json<IceConfigBody>, RestError> {
    let config = state
        .issue(Endpoint::Ice, &headers, params)
        .inspect_err(|e| state.metrics.rejected("rest", e.reason()))?;
    Ok(Json(IceConfigBody {
        ice_transport_policy: config.policy.as_str(),
        ice_servers: config
            .ice_servers
            .into_iter()
            .map(|server| {
                let (username, credential) = server
                    .credentials
                    .map(|c| (Some(c.username), Some(c.credential)))
                    .unwrap_or_default();
                IceServerBody {
                    urls: server.urls,
                    username,
                    credential,
                }
            })
            .collect(),
    }))
}

/// The TURN REST API answer: like stunner-auth-service, the first matching Gateway only.
#[tracing::instrument(name = "GET /", skip_all)]
async fn get_turn(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Result<Json<TurnBody>, RestError> {
    let config = state
        .issue(Endpoint::Turn, &headers, params)
        .inspect_err(|e| state.metrics.rejected("rest", e.reason()))?;
    let ttl = config.ttl.as_duration().as_secs();
    let Some(first) = config.ice_servers.into_iter().next() else {
        return Err(RestError::Ice(Endpoint::Turn, IceError::NoMatchingListener));
    };
    let (username, password) = first
        .credentials
        .map(|c| (c.username, c.credential))
        .unwrap_or_default();
    Ok(Json(TurnBody {
        username,
        password,
        ttl,
        uris: first.urls,
    }))
}

impl HttpState {
    /// Checks in stunner-auth-service's order: the parameters' format, a config loaded at all,
    /// `service`, then what only this service checks; compatible where it is lenient.
    fn issue(
        &self,
        endpoint: Endpoint,
        headers: &HeaderMap,
        params: Params,
    ) -> Result<ice::IceConfig, RestError> {
        let authorization = headers.get(header::AUTHORIZATION).map(|h| h.as_bytes());
        if !self.clients.admits(authorization) {
            return Err(RestError::Unauthenticated);
        }
        let service = params.service.filter(|s| !s.is_empty());
        if service.is_none() && matches!(endpoint, Endpoint::Turn) {
            return Err(RestError::ServiceMissing);
        }
        let ttl = match params.ttl.as_deref().map(str::trim) {
            None => None,
            Some(text) => Some(
                text.parse::<i64>()
                    .map_err(|_| RestError::TtlFormat(text.to_owned()))?,
            ),
        };
        let configs = self.store.snapshot();
        if configs.is_empty() {
            return Err(RestError::Ice(endpoint, IceError::NoConfig));
        }
        if service.as_deref() != Some("turn") {
            return Err(RestError::ServiceNotTurn(endpoint));
        }
        let lenient = |what: Lenient| {
            tracing::info!(
                lenient = what.as_str(),
                "accepted for compatibility: {}",
                what.explain()
            );
            self.metrics.lenient(what.as_str());
        };
        let username = params.username.unwrap_or_default();
        if username.contains(':') {
            lenient(Lenient::UsernameColon);
        }
        let (ttl, clamped) = Ttl::clamp(ttl, self.issuing.ttl);
        if clamped {
            lenient(Lenient::TtlClamped);
        }
        let policy = match params.ice_transport_policy.as_deref() {
            None => IceTransportPolicy::All,
            Some(text) => text
                .trim()
                .to_ascii_lowercase()
                .parse()
                .unwrap_or_else(|_| {
                    lenient(Lenient::UnknownPolicy);
                    IceTransportPolicy::All
                }),
        };
        let public_addr = match params.public_addr.as_deref().map(str::trim) {
            None | Some("") => self.issuing.public_addr.clone(),
            Some(addr) => Some(PublicAddr::parse(addr)?),
        };
        let request = IceRequest {
            user: UserId::parse_allowing_colons(&username)?,
            ttl,
            policy,
            filter: Filter::new(params.namespace, params.gateway, params.listener),
            public_addr,
        };
        let config = ice::build(&configs, &request, SystemTime::now())
            .map_err(|error| RestError::Ice(endpoint, error))?;
        self.metrics
            .issued("rest", config.ice_servers.iter().map(|s| s.auth_kind));
        Ok(config)
    }
}

/// What the REST API accepts that the gRPC API refuses, because stunner-auth-service accepts it
/// and its clients may send it.
#[derive(Clone, Copy, Debug)]
enum Lenient {
    /// A `:` in `username`: TURN REST user ids may hold colons; the expiry comes first.
    UsernameColon,
    /// A `ttl` below a second or above the maximum, brought within them.
    TtlClamped,
    /// An `iceTransportPolicy` that is none of `all`, `public`, `relay`: answered as `all`.
    UnknownPolicy,
}

impl Lenient {
    fn as_str(self) -> &'static str {
        match self {
            Lenient::UsernameColon => "username_colon",
            Lenient::TtlClamped => "ttl_clamped",
            Lenient::UnknownPolicy => "unknown_policy",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Lenient::UsernameColon => "a username with ':'",
            Lenient::TtlClamped => "a ttl out of range, brought within the limits",
            Lenient::UnknownPolicy => "an unknown iceTransportPolicy, answered as all",
        }
    }
}
