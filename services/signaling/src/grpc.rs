//! The gRPC adapter: `signaling.v1.SignalingService/Attach` over the [`Hub`].

use std::{pin::Pin, sync::Arc};

use stunner_proto::signaling::v1::{
    self as pb,
    gateway_message::Body as In,
    session_message::Body as Out,
    signaling_service_server::{SignalingService, SignalingServiceServer},
};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    hub::Hub,
    switchboard::{Command, Delivery, Event, Reason, Request as Req},
};

#[derive(Clone)]
pub struct SignalingGrpc {
    hub: Arc<Hub>,
    /// Owns the reader task of every attached stream.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl SignalingGrpc {
    pub fn new(hub: Arc<Hub>, tasks: TaskTracker, stop: CancellationToken) -> Self {
        Self { hub, tasks, stop }
    }

    pub fn into_server(self) -> SignalingServiceServer<Self> {
        SignalingServiceServer::new(self).max_decoding_message_size(1 << 20)
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::SessionMessage, Status>> + Send>>;

#[tonic::async_trait]
impl SignalingService for SignalingGrpc {
    type AttachStream = SessionStream;

    async fn attach(
        &self,
        request: Request<Streaming<pb::GatewayMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let (gateway, deliveries) = self.hub.attach();
        tracing::info!(gateway, ?peer, "gateway attached");
        let hub = self.hub.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => break,
                    message = inbound.message() => message,
                };
                match message {
                    Ok(Some(message)) => match command(&message) {
                        Some((command, span)) => {
                            span.in_scope(|| hub.handle(gateway, message.session_id, command));
                        }
                        None => tracing::warn!(
                            gateway,
                            session = message.session_id,
                            "gateway message without a body"
                        ),
                    },
                    Ok(None) => break,
                    Err(status) => {
                        tracing::warn!(gateway, %status, "gateway stream failed");
                        break;
                    }
                }
            }
            hub.detach(gateway);
            tracing::info!(gateway, "gateway detached");
        });
        let outbound =
            ReceiverStream::new(deliveries).map(|delivery| Ok(session_message(delivery)));
        Ok(Response::new(Box::pin(outbound)))
    }
}

/// The command a gateway message carries, and the span it is routed under: calls and answers
/// continue the trace of the call they belong to; the rest are not traced.
fn command(message: &pb::GatewayMessage) -> Option<(Command, tracing::Span)> {
    let incoming = message.trace_context.get(TRACEPARENT);
    let span = match (
        message.body.as_ref()?,
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
    let command = match message.body.as_ref()? {
        In::Register(r) => Command::Register {
            name: r.name.clone(),
            resume_token: (!r.resume_token.is_empty()).then(|| r.resume_token.clone()),
        },
        In::Call(c) => Command::Call {
            to: c.to.clone(),
            sdp_offer: c.sdp_offer.clone(),
            trace: trace(),
        },
        In::Answer(a) => Command::Answer {
            from: a.from.clone(),
            accept: a.accept,
            sdp_answer: a.sdp_answer.clone(),
        },
        In::Candidate(c) => Command::Candidate(c.candidate_json.clone()),
        In::Stop(_) => Command::Stop,
        In::Closed(_) => Command::Closed,
    };
    Some((command, span))
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

/// The W3C trace context key a call's trace travels under.
const TRACEPARENT: &str = "traceparent";

fn session_message(delivery: Delivery) -> pb::SessionMessage {
    // Candidates are most of the traffic and show no trace id to the browser: their trace
    // context is only worth its allocation when spans are exported.
    let traced =
        !matches!(delivery.event, Event::Candidate(_)) || svc_common::telemetry::exporting();
    let trace = delivery.trace.filter(|_| traced);
    let body = match delivery.event {
        Event::Registered { name, resume_token } => Out::Registered(pb::Registered {
            name: name.as_str().to_owned(),
            resume_token,
        }),
        Event::Refused {
            request,
            reason,
            message,
        } => Out::Refused(pb::Refused {
            request: request_code(request).into(),
            reason: reason_code(reason).into(),
            message,
        }),
        Event::IncomingCall {
            from,
            sdp_offer,
            call,
        } => Out::IncomingCall(pb::IncomingCall {
            from: from.as_str().to_owned(),
            sdp_offer,
            call_id: call.to_string(),
        }),
        Event::CallAccepted {
            sdp_answer, call, ..
        } => Out::CallAccepted(pb::CallAccepted {
            sdp_answer,
            call_id: call.to_string(),
        }),
        Event::StartCommunication { call } => Out::StartCommunication(pb::StartCommunication {
            call_id: call.to_string(),
        }),
        Event::Candidate(candidate_json) => Out::Candidate(pb::Candidate { candidate_json }),
        Event::StopCommunication {
            reason,
            message,
            call,
        } => Out::StopCommunication(pb::StopCommunication {
            reason: reason_code(reason).into(),
            message,
            call_id: call.to_string(),
        }),
    };
    pb::SessionMessage {
        session_id: delivery.to.session,
        body: Some(body),
        trace_context: trace
            .map(|trace| [(TRACEPARENT.to_owned(), trace)].into())
            .unwrap_or_default(),
    }
}

fn request_code(request: Req) -> pb::Request {
    match request {
        Req::Register => pb::Request::Register,
        Req::Call => pb::Request::Call,
        Req::Answer => pb::Request::Answer,
        Req::Candidate => pb::Request::Candidate,
        Req::Stop => pb::Request::Stop,
    }
}

fn reason_code(reason: Reason) -> pb::Reason {
    match reason {
        Reason::InvalidName => pb::Reason::InvalidName,
        Reason::NameTaken => pb::Reason::NameTaken,
        Reason::AlreadyRegistered => pb::Reason::AlreadyRegistered,
        Reason::NotRegistered => pb::Reason::NotRegistered,
        Reason::SelfCall => pb::Reason::SelfCall,
        Reason::AlreadyInCall => pb::Reason::AlreadyInCall,
        Reason::UserNotFound => pb::Reason::UserNotFound,
        Reason::Busy => pb::Reason::Busy,
        Reason::Declined => pb::Reason::Declined,
        Reason::Timeout => pb::Reason::Timeout,
        Reason::NoSuchCall => pb::Reason::NoSuchCall,
        Reason::NotInCall => pb::Reason::NotInCall,
        Reason::TooManyCandidates => pb::Reason::TooManyCandidates,
        Reason::HangUp => pb::Reason::HangUp,
        Reason::PeerDisconnected => pb::Reason::PeerDisconnected,
        Reason::Replaced => pb::Reason::Replaced,
    }
}
