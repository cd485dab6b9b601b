//! Call tracing: one W3C trace (`traceparent`) per call, continued from the page when it sends
//! one, carried through signaling with the call, and shown to both parties as `traceId` so a
//! user's bug report can be found in the traces. Each browser-visible step of a call is a span
//! of that trace where spans are exported; nothing is built for it otherwise.

use std::{collections::HashMap, time::Duration};

use stunner_proto::signaling::v1::{self as pb, session_message::Body as Down};
use svc_common::telemetry::TRACEPARENT;

use crate::{
    protocol::{RestartCause, RestartOutcome},
    reason::Reason,
};

/// The call a session is in, as far as tracing goes: its id and `traceparent`, as signaling
/// last told it.
#[derive(Default)]
pub struct CallTrace {
    call: Option<(String, String)>,
}

impl CallTrace {
    /// The span of the browser's `call`, and the `traceparent` signaling gets with it.
    pub fn call(&self, caller: &str, callee: &str, page: Option<&str>) -> (tracing::Span, String) {
        call_span(caller, callee, page)
    }

    /// The span of the callee's answer and the `traceparent` it carries on, under the call's
    /// trace (none when the call is not known yet).
    pub fn answer(&self) -> Option<(tracing::Span, String)> {
        let (call_id, traceparent) = self.call.as_ref()?;
        Some(step_span("incomingCallResponse", call_id, traceparent))
    }

    /// An ICE restart the page reports, as a span of the call's trace with its cause, outcome
    /// and duration (when spans are exported and the call is known).
    pub fn restart(&self, cause: RestartCause, outcome: RestartOutcome, duration: Duration) {
        let Some((call_id, traceparent)) = self.call.as_ref() else {
            return;
        };
        let (span, _) = step_span("iceRestart", call_id, traceparent);
        span.record("call.outcome", outcome.as_str());
        span.record("ice.restart.cause", cause.as_str());
        span.record(
            "ice.restart.duration_ms",
            u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        );
    }

    /// A delivery from signaling: the span of its step of the call (when spans are exported),
    /// with what became of the call where the caller learns it.
    pub fn delivery(
        &mut self,
        body: &Down,
        context: &HashMap<String, String>,
    ) -> Option<tracing::Span> {
        let traceparent = context
            .get(TRACEPARENT)
            .filter(|_| svc_common::telemetry::exporting())?;
        let (step, call_id) = delivery(body)?;
        // Candidates name no call: they belong to the one this session is in.
        let known = self.call.as_ref().map(|(id, _)| id.clone());
        let call_id = Some(call_id)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .or(known)
            .unwrap_or_default();
        let (span, _) = step_span(step, &call_id, traceparent);
        let outcome = |reason: pb::Reason| Reason::from(reason).as_str();
        match body {
            Down::CallAccepted(_) => {
                span.record("call.outcome", "accepted");
            }
            Down::Refused(refused) => {
                span.record("call.outcome", outcome(refused.reason()));
            }
            Down::StopCommunication(stop) => {
                span.record("call.outcome", outcome(stop.reason()));
            }
            _ => {}
        }
        self.call = match body {
            Down::StopCommunication(_) | Down::Refused(_) => None,
            _ => Some((call_id, traceparent.clone())),
        };
        Some(span)
    }
}

/// The browser message id a delivery becomes, and its call id, for the call's trace.
fn delivery(body: &Down) -> Option<(&'static str, &str)> {
    Some(match body {
        Down::IncomingCall(call) => ("incomingCall", &call.call_id),
        Down::CallAccepted(accepted) => ("callResponse", &accepted.call_id),
        Down::StartCommunication(start) => ("startCommunication", &start.call_id),
        Down::StopCommunication(stop) => ("stopCommunication", &stop.call_id),
        Down::Candidate(_) => ("iceCandidate", ""),
        Down::Negotiate(negotiate) => ("negotiate", &negotiate.call_id),
        Down::Refused(refused) if refused.request() == pb::Request::Call => ("callResponse", ""),
        Down::Registered(_)
        | Down::Refused(_)
        | Down::Welcome(_)
        | Down::Processed(_)
        | Down::Draining(_) => return None,
    })
}

/// A fresh, sampled `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-01`.
pub fn new_traceparent() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("no OS randomness: {e}"));
    // An all-zero id is invalid; with 128 random bits this guards a theoretical case only.
    bytes[0] |= 1;
    bytes[16] |= 1;
    let hex = hex::encode(bytes);
    format!("00-{}-{}-01", &hex[..32], &hex[32..])
}

/// The trace id of a valid version-00 `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let valid = parts.next().is_none()
        && version == "00"
        && hex(trace, 32)
        && nonzero(trace)
        && hex(parent, 16)
        && nonzero(parent)
        && hex(flags, 2);
    valid.then_some(trace)
}

/// The span of a browser's `call`: the root of the call's trace, or a child of the page's own
/// `traceparent`; and the `traceparent` that carries it on to signaling (a fresh one when no
/// spans are exported).
fn call_span(caller: &str, callee: &str, page: Option<&str>) -> (tracing::Span, String) {
    let page = page.filter(|t| trace_id(t).is_some());
    if !svc_common::telemetry::exporting() {
        let traceparent = page.map_or_else(new_traceparent, str::to_owned);
        return (tracing::Span::none(), traceparent);
    }
    let span = tracing::info_span!(
        parent: None,
        "call",
        otel.kind = "server",
        enduser.id = caller,
        peer = callee,
    );
    if let Some(page) = page {
        svc_common::telemetry::continue_traceparent(&span, page);
    }
    let traceparent = span
        .in_scope(svc_common::telemetry::current_traceparent)
        .or_else(|| page.map(str::to_owned))
        .unwrap_or_else(new_traceparent);
    (span, traceparent)
}

/// A span for one step of a call (a delivery to the browser, the callee's answer) under the
/// call's `traceparent`, and the `traceparent` to send on.
fn step_span(step: &'static str, call_id: &str, traceparent: &str) -> (tracing::Span, String) {
    if !svc_common::telemetry::exporting() {
        return (tracing::Span::none(), traceparent.to_owned());
    }
    let span = tracing::info_span!(
        "step",
        otel.name = step,
        otel.kind = "server",
        call.id = call_id,
        call.outcome = tracing::field::Empty,
        ice.restart.cause = tracing::field::Empty,
        ice.restart.duration_ms = tracing::field::Empty,
    );
    svc_common::telemetry::continue_traceparent(&span, traceparent);
    let onward = span
        .in_scope(svc_common::telemetry::current_traceparent)
        .unwrap_or_else(|| traceparent.to_owned());
    (span, onward)
}

/// The trace id carried in gRPC trace metadata, if any.
pub fn trace_id_in(context: &HashMap<String, String>) -> Option<String> {
    context
        .get(TRACEPARENT)
        .and_then(|t| trace_id(t))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents() {
        let fresh = new_traceparent();
        assert_eq!(trace_id(&fresh).map(str::len), Some(32), "{fresh}");
        assert_ne!(new_traceparent(), fresh);
        let w3c = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(trace_id(w3c), Some("0af7651916cd43dd8448eb211c80319c"));
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
    }
}
