//! The HTTP port: the REST API of stunner-auth-service (`GET /ice`, `GET /`), plus `/healthz`,
//! `/readyz` and `/metrics`.
//!
//! Errors are plain text with the statuses stunner-auth-service uses, so its clients keep
//! working: 400 for a bad parameter, 500 while no STUNner config is loaded, 404 when no listener
//! matches.

use std::time::SystemTime;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};

use crate::{
    ice::{
        self, Filter, IceError, IceRequest, IceTransportPolicy, RequestError, Ttl, TtlPolicy,
        UserId,
    },
    metrics::Metrics,
    store::ConfigStore,
};

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub store: ConfigStore,
    pub metrics: Metrics,
    pub ttl: TtlPolicy,
}

pub fn router(state: HttpState) -> Router {
    let (store, metrics) = (state.store.clone(), state.metrics.clone());
    Router::new()
        // HEAD would run the GET handler and mint a credential nobody sees.
        .route("/ice", get(get_ice).head(no_head))
        .route("/", get(get_turn).head(no_head))
        .with_state(state)
        .merge(svc_common::admin::router(
            move || store.readiness(),
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

/// A refusal, rendered as stunner-auth-service renders it.
#[derive(Debug)]
enum RestError {
    BadRequest(String),
    Ice(IceError),
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            RestError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            RestError::Ice(IceError::NoConfig) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                IceError::NoConfig.to_string(),
            ),
            RestError::Ice(error @ IceError::NoMatchingListener) => (
                StatusCode::NOT_FOUND,
                format!("could not generate ICE config: {error}"),
            ),
        };
        (status, message + "\n").into_response()
    }
}

impl RestError {
    fn reason(&self) -> &'static str {
        match self {
            RestError::BadRequest(_) => "invalid_argument",
            RestError::Ice(IceError::NoConfig) => "no_config",
            RestError::Ice(IceError::NoMatchingListener) => "no_matching_listener",
        }
    }
}

impl From<RequestError> for RestError {
    fn from(error: RequestError) -> Self {
        RestError::BadRequest(error.to_string())
    }
}

#[tracing::instrument(name = "GET /ice", skip_all)]
async fn get_ice(
    State(state): State<HttpState>,
    Query(params): Query<Params>,
) -> Result<Json<IceConfigBody>, RestError> {
    let config = state
        .issue(params)
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
    Query(params): Query<Params>,
) -> Result<Json<TurnBody>, RestError> {
    let config = state
        .issue(params)
        .inspect_err(|e| state.metrics.rejected("rest", e.reason()))?;
    let ttl = config.ttl.as_duration().as_secs();
    let Some(first) = config.ice_servers.into_iter().next() else {
        return Err(RestError::Ice(IceError::NoMatchingListener));
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
    fn issue(&self, params: Params) -> Result<ice::IceConfig, RestError> {
        if params.service.as_deref() != Some("turn") {
            return Err(RestError::BadRequest(r#""service" must be "turn""#.into()));
        }
        let request = IceRequest {
            user: UserId::parse(params.username.as_deref().unwrap_or_default())?,
            ttl: Ttl::parse_text(params.ttl.as_deref(), self.ttl)?,
            policy: params
                .ice_transport_policy
                .as_deref()
                .map_or(Ok(IceTransportPolicy::All), str::parse)?,
            filter: Filter::new(params.namespace, params.gateway, params.listener),
        };
        let config = ice::build(&self.store.snapshot(), &request, SystemTime::now())
            .map_err(RestError::Ice)?;
        for server in &config.ice_servers {
            self.metrics.issued("rest", server.auth_kind);
        }
        Ok(config)
    }
}
