//! How long the servers take to answer: tower layers timing every gRPC call (by service,
//! method and status) and every HTTP request (by method, route and status), from the request
//! to the end of its response body (a stream's whole life), into [`crate::metrics`]' standard
//! histograms.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::MatchedPath,
    http::{Method, Request, Response},
};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};

use crate::metrics::{Standard, standard};

/// The gRPC status of a path no service serves.
const UNIMPLEMENTED: &str = "12";

/// Times gRPC calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetrics;

/// Times HTTP requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpMetrics;

/// A service timed as `K` says (gRPC or HTTP).
#[derive(Clone, Debug)]
pub struct Timed<S, K> {
    inner: S,
    _kind: std::marker::PhantomData<K>,
}

impl<S> tower::Layer<S> for GrpcMetrics {
    type Service = Timed<S, GrpcMetrics>;

    fn layer(&self, inner: S) -> Self::Service {
        Timed {
            inner,
            _kind: std::marker::PhantomData,
        }
    }
}

impl<S> tower::Layer<S> for HttpMetrics {
    type Service = Timed<S, HttpMetrics>;

    fn layer(&self, inner: S) -> Self::Service {
        Timed {
            inner,
            _kind: std::marker::PhantomData,
        }
    }
}

/// What a request is recorded under, known before it is handled.
pub enum Call {
    Grpc { service: String, method: String },
    Http { method: String, route: String },
}

/// What differs between the two kinds of server: how a request is named, where the status is,
/// and the response body type.
pub trait Kind: Clone + Send + 'static {
    type Body: Body<Data = Bytes> + Unpin + Send + 'static;

    fn call<B>(request: &Request<B>) -> Call;

    /// The status known from the response's head (gRPC: only a trailers-only refusal).
    fn status(response: &Response<Self::Body>) -> Option<String>;

    fn wrap(body: TimedBody<Self::Body>) -> Self::Body;
}

impl Kind for GrpcMetrics {
    type Body = tonic::body::Body;

    fn call<B>(request: &Request<B>) -> Call {
        let (service, method) = request
            .uri()
            .path()
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("unknown", "unknown"));
        Call::Grpc {
            service: service.to_owned(),
            method: method.to_owned(),
        }
    }

    fn status(response: &Response<Self::Body>) -> Option<String> {
        grpc_status(response.headers())
    }

    fn wrap(body: TimedBody<Self::Body>) -> Self::Body {
        tonic::body::Body::new(body)
    }
}

impl Kind for HttpMetrics {
    type Body = axum::body::Body;

    fn call<B>(request: &Request<B>) -> Call {
        // The route as declared (`/ice`), never the raw path: no unbounded label values.
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("other", MatchedPath::as_str);
        // Methods outside HTTP's own set are one label, as the conventions say: a client may
        // send any token there.
        let method = match *request.method() {
            Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::DELETE
            | Method::CONNECT
            | Method::OPTIONS
            | Method::TRACE
            | Method::PATCH => request.method().as_str(),
            _ => "_OTHER",
        };
        Call::Http {
            method: method.to_owned(),
            route: route.to_owned(),
        }
    }

    fn status(response: &Response<Self::Body>) -> Option<String> {
        Some(response.status().as_u16().to_string())
    }

    fn wrap(body: TimedBody<Self::Body>) -> Self::Body {
        axum::body::Body::new(body)
    }
}

impl<S, B, K> tower::Service<Request<B>> for Timed<S, K>
where
    K: Kind,
    S: tower::Service<Request<B>, Response = Response<K::Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<K::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let call = K::call(&request);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let status = K::status(&response);
            Ok(response.map(|body| K::wrap(TimedBody::new(body, call, started, status))))
        })
    }
}

/// The gRPC status in a header map (`grpc-status`), if there is one.
fn grpc_status(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A response body that records its request's duration once it is over (finished, or dropped
/// by a client that went away).
pub struct TimedBody<B> {
    inner: B,
    call: Option<Call>,
    started: Instant,
    status: Option<String>,
}

impl<B> TimedBody<B> {
    fn new(inner: B, call: Call, started: Instant, status: Option<String>) -> Self {
        Self {
            inner,
            call: Some(call),
            started,
            status,
        }
    }

    fn record(&mut self, metrics: &Standard) {
        let Some(call) = self.call.take() else {
            return;
        };
        let seconds = self.started.elapsed().as_secs_f64();
        match call {
            Call::Grpc { service, method } => {
                // A stream cut before its trailers: the client went away.
                let status = self.status.take().unwrap_or_else(|| "1".into());
                // UNIMPLEMENTED: a path no service serves, named by the client; one label for
                // all of them, so a client cannot grow the metrics without bound.
                let (service, method) = if status == UNIMPLEMENTED {
                    ("unknown".to_owned(), "unknown".to_owned())
                } else {
                    (service, method)
                };
                metrics.rpc(service, method, status, seconds);
            }
            Call::Http { method, route } => {
                let status = self.status.take().unwrap_or_default();
                metrics.http(method, route, status, seconds);
            }
        }
    }
}

impl<B> Drop for TimedBody<B> {
    fn drop(&mut self) {
        self.record(standard());
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(grpc_status) {
                    self.status = Some(status);
                }
            }
            Poll::Ready(None) => self.record(standard()),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Layer, Service, ServiceExt};

    use super::*;

    /// A client names the path and the method: unknown ones must not become labels each.
    #[tokio::test]
    async fn unknown_paths_and_methods_are_one_label_each() {
        let unimplemented = tower::service_fn(|_: Request<()>| async {
            let response = Response::builder()
                .header("grpc-status", UNIMPLEMENTED)
                .body(tonic::body::Body::empty())
                .expect("a response");
            Ok::<_, Infallible>(response)
        });
        let mut grpc = GrpcMetrics.layer(unimplemented);
        for n in 0..3 {
            let request = Request::builder()
                .uri(format!("/made.Up{n}/Path"))
                .body(())
                .expect("a request");
            let response = grpc.ready().await.expect("ready").call(request).await;
            drop(response);
        }
        let ok = tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        });
        let mut http = HttpMetrics.layer(ok);
        let request = Request::builder()
            .method("FROBNICATE")
            .uri("/anything")
            .body(())
            .expect("a request");
        drop(http.ready().await.expect("ready").call(request).await);

        let text = crate::metrics::render(&prometheus_client::registry::Registry::default());
        assert!(text.contains(
            "rpc_server_duration_seconds_count{rpc_service=\"unknown\",rpc_method=\"unknown\",rpc_grpc_status_code=\"12\"} 3"
        ), "{text}");
        assert!(text.contains(
            "http_server_request_duration_seconds_count{http_request_method=\"_OTHER\",http_route=\"other\",http_response_status_code=\"200\"} 1"
        ), "{text}");
        assert!(
            !text.contains("made.Up") && !text.contains("FROBNICATE"),
            "{text}"
        );
    }
}
