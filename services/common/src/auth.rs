//! A shared secret between the services: gRPC servers refuse callers that do not present it
//! ([`RequireToken`]), the gateway presents it ([`Bearer`]). gRPC health is open to anyone, so
//! Kubernetes' probes need no secret. A port may accept more tokens than the shared one (one
//! per application allowed to call ice-config): [`Accepted`].

use std::{
    fmt,
    str::FromStr,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::{Either, Ready, ready};
use subtle::ConstantTimeEq;
use tonic::{
    Status,
    codegen::http,
    metadata::{Ascii, MetadataValue},
};

/// Paths anyone may call.
const OPEN: &str = "/grpc.health.v1.Health/";

/// The shared secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl FromStr for Token {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a token must not be empty".into());
        }
        // It travels as an HTTP/2 header value.
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token may only contain visible ASCII characters".into());
        }
        Ok(Self(text.into()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Whether an `authorization` header value presents this token, compared in constant time.
    fn presented_in(&self, header: &[u8]) -> bool {
        let Some(presented) = header.strip_prefix(b"Bearer ") else {
            return false;
        };
        // Only the length may show in the time taken, never how much of the token matched.
        presented.ct_eq(self.0.as_bytes()).into()
    }
}

/// The tokens a port accepts; none at all: the port is open.
#[derive(Clone, Debug, Default)]
pub struct Accepted(Arc<[Token]>);

impl Accepted {
    pub fn new(tokens: impl IntoIterator<Item = Token>) -> Self {
        Self(tokens.into_iter().collect())
    }

    /// Whether the port takes anyone.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a request with this `authorization` header may pass: the port is open, or the
    /// header presents one of the tokens (each compared in constant time).
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        self.is_open()
            || authorization.is_some_and(|header| {
                self.0
                    .iter()
                    .fold(false, |found, token| token.presented_in(header) | found)
            })
    }
}

/// A tower layer for a gRPC server: calls without an accepted token are refused
/// `UNAUTHENTICATED`.
#[derive(Clone, Debug)]
pub struct RequireToken(pub Accepted);

impl<S> tower::Layer<S> for RequireToken {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Checked<S> {
        Checked {
            inner,
            token: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Checked<S> {
    inner: S,
    token: Accepted,
}

impl<S, B> tower::Service<http::Request<B>> for Checked<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let allowed = request.uri().path().starts_with(OPEN)
            || self.token.admits(
                request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .map(|h| h.as_bytes()),
            );
        if allowed {
            Either::Left(self.inner.call(request))
        } else {
            let refusal = Status::unauthenticated("this port needs the services' shared token");
            Either::Right(ready(Ok(refusal.into_http())))
        }
    }
}

/// A gRPC client interceptor presenting the token (when there is one).
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&Token>) -> Self {
        Self(token.map(|token| {
            let value = format!("Bearer {}", token.0);
            // A token is visible ASCII (checked when parsed), so always a valid header value.
            value
                .parse()
                .unwrap_or_else(|_| unreachable!("a token is a valid header value"))
        }))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_whole() {
        let token: Token = "s3cret".parse().expect("valid");
        assert!(token.presented_in(b"Bearer s3cret"));
        for wrong in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret2",
            b"s3cret",
            b"Bearer ",
            b"",
        ] {
            assert!(!token.presented_in(wrong), "{wrong:?}");
        }
        assert!("".parse::<Token>().is_err());
        assert!("two words".parse::<Token>().is_err());
        assert_eq!(format!("{token:?}"), "Token(…)");
    }

    #[test]
    fn a_port_accepts_any_of_its_tokens() {
        let tokens = ["shared", "app-1", "app-2"].map(|t| t.parse::<Token>().expect("valid"));
        let accepted = Accepted::new(tokens);
        for header in [&b"Bearer shared"[..], b"Bearer app-1", b"Bearer app-2"] {
            assert!(accepted.admits(Some(header)), "{header:?}");
        }
        assert!(!accepted.admits(Some(b"Bearer app-3")));
        assert!(!accepted.admits(None));
        let open = Accepted::default();
        assert!(open.is_open() && open.admits(None));
    }
}
