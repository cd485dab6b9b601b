//! The probes and metrics every HTTP admin port serves: `/healthz` (alive), `/readyz` (ready,
//! and why not), `/metrics` (OpenMetrics text).

use std::sync::Arc;

use axum::{Router, http::StatusCode, http::header, routing::get};

/// Whether a service can do its job, and what is wrong if anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// One line per problem (shown even while ready: a degraded source, a last good config).
    pub problems: Vec<String>,
}

impl Readiness {
    pub fn ready() -> Self {
        Self {
            ready: true,
            problems: Vec::new(),
        }
    }

    /// The `/readyz` answer: 200 `ready` or 503 `not ready`, then one line per problem.
    pub fn response(&self) -> (StatusCode, String) {
        let (status, mut body) = if self.ready {
            (StatusCode::OK, "ready\n".to_owned())
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned())
        };
        for problem in &self.problems {
            body.push_str(problem);
            body.push('\n');
        }
        (status, body)
    }
}

/// `/healthz`, `/readyz` from `ready`, `/metrics` from `metrics`.
pub fn router(
    ready: impl Fn() -> Readiness + Send + Sync + 'static,
    metrics: impl Fn() -> String + Send + Sync + 'static,
) -> Router {
    let ready = Arc::new(ready);
    let metrics = Arc::new(metrics);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let answer = ready().response();
                async move { answer }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let body = metrics();
                async move { ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body) }
            }),
        )
}

/// Requests a router in-process, as `tower::ServiceExt::oneshot` does: for handler tests that
/// need no socket.
#[doc(hidden)]
pub mod testing {
    use axum::{Router, body::Body, http::StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// `GET path` with `headers`: the status and the body as text.
    pub async fn get(router: Router, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut request = axum::http::Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = router
            .oneshot(request.body(Body::empty()).expect("a valid request"))
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(
                axum::http::Request::get(path)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn probes_say_why_not_ready() {
        let router = || {
            router(
                || Readiness {
                    ready: false,
                    problems: vec!["no stream to signaling".into()],
                },
                || "# EOF\n".into(),
            )
        };
        assert_eq!(
            get(router(), "/healthz").await,
            (StatusCode::OK, "ok\n".into())
        );
        assert_eq!(
            get(router(), "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready\nno stream to signaling\n".into()
            )
        );
        assert_eq!(get(router(), "/metrics").await.1, "# EOF\n");
        let ready = super::router(Readiness::ready, String::new);
        assert_eq!(
            get(ready, "/readyz").await,
            (StatusCode::OK, "ready\n".into())
        );
    }
}
