//! Between `signaling.v1` and the vocabulary: what a gateway message asks for, and what a
//! delivery says on the wire. The wire values of reasons and requests are derived from their
//! names, not listed.

use stunner_proto::signaling::v1::{
    self as pb, gateway_message::Body as In, session_message::Body as Out,
};
use svc_common::telemetry::TRACEPARENT;

use crate::{
    name::Name,
    vocabulary::{
        CallState, Command, Delivery, Description, DescriptionKind, Event, Reason, Request as Req,
        Role,
    },
};

/// The command a gateway message carries, with the span it is routed under: calls and answers
/// continue the trace of the call they belong to; the rest are not traced.
pub fn command(message: pb::GatewayMessage) -> Option<(u64, Option<Name>, Command, tracing::Span)> {
    let pb::GatewayMessage {
        body,
        trace_context,
        user,
        seq,
        ..
    } = message;
    let incoming = trace_context.get(TRACEPARENT);
    let body = body?;
    let span = match (
        &body,
        incoming.filter(|_| svc_common::telemetry::exporting()),
    ) {
        (In::Call(c), Some(traceparent)) => routing_span("route call", traceparent, &c.to),
        (In::Answer(a), Some(traceparent)) => routing_span("route answer", traceparent, &a.from),
        _ => tracing::Span::none(),
    };
    // The call's deliveries continue from the routing span, or from the gateway's span when
    // nothing is exported here.
    let trace = || {
        span.in_scope(svc_common::telemetry::current_traceparent)
            .or_else(|| incoming.cloned())
    };
    let command = match body {
        In::Register(r) => Command::Register {
            name: r.name,
            resume_token: (!r.resume_token.is_empty()).then_some(r.resume_token),
            rejoin: r.rejoin_call_id.parse().ok(),
            reassert: r.reassert.then(|| r.call.and_then(call_state)),
            extensions: r.extensions,
        },
        In::Call(c) => Command::Call {
            to: c.to,
            sdp_offer: c.sdp_offer,
            trace: trace(),
        },
        In::Answer(a) => Command::Answer {
            from: a.from,
            accept: a.accept,
            sdp_answer: a.sdp_answer,
        },
        In::Candidate(c) => Command::Candidates(vec![c.candidate_json]),
        In::Negotiate(n) => Command::Negotiate(match DescriptionKind::parse(&n.r#type) {
            Some(kind) => Description { kind, sdp: n.sdp },
            // Refused by the switchboard, as a description without an sdp is.
            None => Description {
                kind: DescriptionKind::Offer,
                sdp: String::new(),
            },
        }),
        In::Stop(_) => Command::Stop,
        In::Closed(_) => Command::Closed,
        In::Lost(_) => Command::Lost,
        In::Hello(_) | In::Subscribe(_) | In::Received(_) => return None,
    };
    Some((seq, Name::parse(&user).ok(), command, span))
}

/// A call as a gateway states it; `None` when it does not parse.
fn call_state(call: pb::CallState) -> Option<CallState> {
    Some(CallState {
        id: call.call_id.parse().ok()?,
        peer: Name::parse(&call.peer).ok()?,
        role: if call.caller {
            Role::Caller
        } else {
            Role::Callee
        },
        up: call.up,
    })
}

/// A span for routing one call message, continuing the sender's trace.
fn routing_span(name: &'static str, traceparent: &str, peer: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "route",
        otel.name = name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = "signaling.v1.SignalingService",
        rpc.method = "Attach",
        peer = peer,
    );
    svc_common::telemetry::continue_traceparent(&span, traceparent);
    span
}

/// A delivery as its gateway gets it.
pub fn session_message(delivery: &Delivery) -> pb::SessionMessage {
    // Candidates are most of the traffic and show no trace id to the browser: their trace
    // context is only worth its allocation when spans are exported.
    let traced =
        !matches!(delivery.event, Event::Candidate(_)) || svc_common::telemetry::exporting();
    let trace = delivery.trace.as_ref().filter(|_| traced);
    let body = match &delivery.event {
        Event::Registered {
            name,
            resume_token,
            call,
        } => Out::Registered(pb::Registered {
            name: name.as_str().to_owned(),
            resume_token: resume_token.clone(),
            call: call.as_ref().map(|call| pb::CallState {
                call_id: call.id.to_string(),
                peer: call.peer.as_str().to_owned(),
                caller: call.role == Role::Caller,
                up: call.up,
            }),
        }),
        Event::Refused {
            request,
            reason,
            message,
        } => Out::Refused(pb::Refused {
            request: request_code(*request).into(),
            reason: reason_code(*reason).into(),
            message: message.clone(),
        }),
        Event::IncomingCall {
            from,
            sdp_offer,
            call,
        } => Out::IncomingCall(pb::IncomingCall {
            from: from.as_str().to_owned(),
            sdp_offer: sdp_offer.clone(),
            call_id: call.to_string(),
        }),
        Event::CallAccepted {
            sdp_answer,
            call,
            negotiation,
            ..
        } => Out::CallAccepted(pb::CallAccepted {
            sdp_answer: sdp_answer.clone(),
            call_id: call.to_string(),
            negotiation: negotiation.then_some(pb::Negotiation { polite: false }),
        }),
        Event::StartCommunication { call, negotiation } => {
            Out::StartCommunication(pb::StartCommunication {
                call_id: call.to_string(),
                negotiation: negotiation.then_some(pb::Negotiation { polite: true }),
            })
        }
        Event::Negotiate { call, description } => Out::Negotiate(pb::Negotiate {
            r#type: description.kind.as_str().to_owned(),
            sdp: description.sdp.clone(),
            call_id: call.to_string(),
        }),
        Event::Candidate(candidate_json) => Out::Candidate(pb::Candidate {
            candidate_json: candidate_json.clone(),
        }),
        Event::StopCommunication {
            reason,
            message,
            call,
        } => Out::StopCommunication(pb::StopCommunication {
            reason: reason_code(*reason).into(),
            message: message.clone(),
            call_id: call.to_string(),
        }),
    };
    pb::SessionMessage {
        session_id: delivery.to.session,
        body: Some(body),
        trace_context: trace
            .map(|trace| [(TRACEPARENT.to_owned(), trace.clone())].into())
            .unwrap_or_default(),
        position: String::new(),
    }
}

/// The wire value of a request: `REQUEST_` and its name, derived rather than listed.
fn request_code(request: Req) -> pb::Request {
    let name = format!("REQUEST_{}", format!("{request:?}").to_uppercase());
    pb::Request::from_str_name(&name).unwrap_or(pb::Request::Unspecified)
}

/// The wire value of a reason: `REASON_` and its machine-readable name in capitals.
pub fn reason_code(reason: Reason) -> pb::Reason {
    let name = format!("REASON_{}", reason.as_str().to_uppercase());
    pb::Reason::from_str_name(&name).unwrap_or(pb::Reason::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_and_request_has_its_wire_value() {
        for reason in Reason::ALL {
            let code = reason_code(*reason);
            assert_ne!(code, pb::Reason::Unspecified, "{reason:?}");
            assert_eq!(
                code.as_str_name()
                    .strip_prefix("REASON_")
                    .map(str::to_lowercase),
                Some(reason.as_str().to_owned())
            );
        }
        for request in [
            Req::Register,
            Req::Call,
            Req::Answer,
            Req::Candidate,
            Req::Stop,
            Req::Negotiate,
        ] {
            assert_ne!(
                request_code(request),
                pb::Request::Unspecified,
                "{request:?}"
            );
        }
    }
}
