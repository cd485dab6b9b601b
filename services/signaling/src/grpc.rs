//! The gRPC adapter: `signaling.v1.SignalingService/Attach` over the [`Hub`]. Each session's
//! commands are handled one after the other, in the order the gateway sent them; different
//! sessions' commands run concurrently (a store round trip for one does not hold the others).

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use futures_util::{FutureExt, StreamExt as _, future::BoxFuture, stream::FuturesUnordered};
use stunner_proto::signaling::v1::{
    self as pb,
    gateway_message::Body as In,
    session_message::Body as Out,
    signaling_service_server::{SignalingService, SignalingServiceServer},
};
use svc_common::telemetry::TRACEPARENT;
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    directory::{Directory, Inbound, InboxSink},
    hub::{Hub, SEEN_EVERY, StreamGuard},
    name::Name,
    vocabulary::{CallState, Command, Event, GatewayId, Reason, Request as Req, Role, SessionKey},
};

/// Deliveries a gateway stream may fall behind by before it is cut (rather than growing memory
/// without bound or dropping messages silently); the gateway reconnects.
pub const GATEWAY_QUEUE: usize = 65_536;
/// Commands of one stream in progress at once; beyond it the stream is read no further until
/// some finish (backpressure to the gateway).
const IN_FLIGHT: usize = 1024;

pub struct SignalingGrpc<D> {
    hub: Arc<Hub<D>>,
    /// Owns the reader task of every attached stream.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl<D: Directory> SignalingGrpc<D> {
    pub fn new(hub: Arc<Hub<D>>, tasks: TaskTracker, stop: CancellationToken) -> Self {
        Self { hub, tasks, stop }
    }

    pub fn into_server(self) -> SignalingServiceServer<Self> {
        SignalingServiceServer::new(self).max_decoding_message_size(1 << 20)
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::SessionMessage, Status>> + Send>>;

#[tonic::async_trait]
impl<D: Directory> SignalingService for SignalingGrpc<D> {
    type AttachStream = SessionStream;

    async fn attach(
        &self,
        request: Request<Streaming<pb::GatewayMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        if self.hub.draining() {
            return Err(Status::unavailable(
                "this signaling replica is shutting down; attach to another",
            ));
        }
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let gateway = match inbound.message().await? {
            Some(pb::GatewayMessage {
                body: Some(In::Hello(hello)),
                ..
            }) => hello.gateway_id.parse::<GatewayId>().map_err(|_| {
                Status::invalid_argument(format!(
                    "hello.gateway_id: {:?} is not 16 hex digits",
                    hello.gateway_id
                ))
            })?,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a hello",
                ));
            }
        };
        let epoch = self.hub.epoch();
        tracing::info!(%gateway, ?peer, "gateway attached");
        let (deliveries_tx, deliveries) = mpsc::channel(GATEWAY_QUEUE);
        let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
        let cut = CancellationToken::new();
        // A fresh channel has room.
        let _ = control_tx.try_send(self.hub.welcome(&epoch.borrow()));
        self.hub.seen(gateway).await;
        let reader = Reader {
            _attached: self.hub.stream_attached(),
            hub: self.hub.clone(),
            gateway,
            stop: self.stop.clone(),
            cut: cut.clone(),
            deliveries: deliveries_tx,
            control: control_tx,
            epoch,
            subscription: None,
            acks: Acks::default(),
        };
        self.tasks.spawn(reader.run(inbound));
        let deliveries = ReceiverStream::new(deliveries).map(session_message);
        let outbound = futures_util::stream::select(deliveries, ReceiverStream::new(control))
            .map(Ok)
            .take_until(cut.cancelled_owned());
        Ok(Response::new(Box::pin(outbound)))
    }
}

/// Control messages (welcome, acknowledgements, draining) a stream may fall behind by.
const CONTROL_QUEUE: usize = 256;
/// How often the reader of a gateway's inbox renews its keys' leases (well within them).
const RENEW_EVERY: Duration = Duration::from_secs(15 * 60);
/// How often acknowledgements are sent while commands are in flight (at once when none is).
const ACK_EVERY: Duration = Duration::from_millis(20);

/// Reads one gateway stream until it ends.
struct Reader<D: Directory> {
    /// Counts this stream as attached while it is read.
    _attached: StreamGuard<D>,
    hub: Arc<Hub<D>>,
    gateway: GatewayId,
    stop: CancellationToken,
    /// Ends the outbound side too.
    cut: CancellationToken,
    /// Where this stream's deliveries go, once the gateway subscribes it.
    deliveries: mpsc::Sender<Inbound>,
    control: mpsc::Sender<pb::SessionMessage>,
    /// The store's epoch, told to the gateway whenever it changes.
    epoch: watch::Receiver<String>,
    /// Cut when the gateway's inbox is read elsewhere.
    subscription: Option<CancellationToken>,
    acks: Acks,
}

/// Which of a stream's numbered messages are handled, for cumulative acknowledgements.
#[derive(Default)]
struct Acks {
    /// Taken in and not finished yet.
    open: BTreeSet<u64>,
    /// The highest number taken in.
    seen: u64,
    /// The highest number acknowledged.
    sent: u64,
}

impl Acks {
    fn taken(&mut self, seq: u64) {
        if seq > 0 {
            self.open.insert(seq);
            self.seen = self.seen.max(seq);
        }
    }

    fn finished(&mut self, seq: u64) {
        self.open.remove(&seq);
    }

    /// Everything up to this is handled.
    fn upto(&self) -> u64 {
        self.open.first().map_or(self.seen, |first| first - 1)
    }

    /// The acknowledgement to send now, if any: at once when nothing is in flight, otherwise
    /// only when `due`.
    fn due(&mut self, due: bool) -> Option<u64> {
        let upto = self.upto();
        (upto > self.sent && (due || self.open.is_empty())).then(|| {
            self.sent = upto;
            upto
        })
    }
}

/// One command, in its session's queue.
struct Job {
    seq: u64,
    user: Option<Name>,
    command: Command,
    span: tracing::Span,
}

impl<D: Directory> Reader<D> {
    async fn run(mut self, mut inbound: Streaming<pb::GatewayMessage>) {
        let mut queues: HashMap<u64, VecDeque<Job>> = HashMap::new();
        let mut running: FuturesUnordered<BoxFuture<'static, (u64, u64)>> = FuturesUnordered::new();
        let mut alive = tokio::time::interval(SEEN_EVERY);
        alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut acks = tokio::time::interval(ACK_EVERY);
        acks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let draining = self.hub.draining_token();
        let mut told_draining = false;
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut ack_due = false;
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = self.cut.cancelled() => break,
                () = draining.cancelled(), if !told_draining => {
                    told_draining = true;
                    self.tell(pb::session_message::Body::Draining(pb::Draining {}));
                }
                changed = self.epoch.changed() => {
                    if changed.is_ok() {
                        let welcome = self.hub.welcome(&self.epoch.borrow_and_update());
                        let _ = self.control.try_send(welcome);
                    }
                }
                _ = alive.tick() => self.hub.seen(self.gateway).await,
                _ = renew.tick(), if self.subscription.is_some() => {
                    // The reader of a gateway's inbox keeps its keys alive.
                    if let Err(error) = self.hub.directory().renew(self.gateway).await {
                        tracing::warn!(gateway = %self.gateway, %error, "cannot renew the gateway's leases");
                    }
                }
                _ = acks.tick() => ack_due = true,
                Some((session, seq)) = running.next() => {
                    self.acks.finished(seq);
                    // That session's command is done: start its next one, if any.
                    let next = queues.get_mut(&session).and_then(VecDeque::pop_front);
                    match next {
                        Some(job) => running.push(self.start(session, job)),
                        None => { queues.remove(&session); }
                    }
                }
                message = inbound.message(), if running.len() < IN_FLIGHT => match message {
                    Ok(Some(message)) => {
                        let session = message.session_id;
                        match self.take(message).await {
                            Some(job) => {
                                self.acks.taken(job.seq);
                                match queues.get_mut(&session) {
                                    Some(queue) => queue.push_back(job),
                                    None => {
                                        queues.insert(session, VecDeque::new());
                                        running.push(self.start(session, job));
                                    }
                                }
                            }
                            None => continue,
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::warn!(gateway = %self.gateway, %status, "gateway stream failed");
                        break;
                    }
                },
            }
            if let Some(upto) = self.acks.due(ack_due) {
                self.tell(pb::session_message::Body::Processed(pb::Processed {
                    seq: upto,
                }));
            }
        }
        // What was already taken in is finished, so no session's command is half done.
        let finish = async {
            while let Some((session, _)) = running.next().await {
                if let Some(job) = queues.get_mut(&session).and_then(VecDeque::pop_front) {
                    running.push(self.start(session, job));
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), finish)
            .await
            .is_err()
        {
            tracing::warn!(gateway = %self.gateway, "commands still running after the stream ended");
        }
        if let Some(subscription) = self.subscription.take() {
            subscription.cancel();
        }
        self.cut.cancel();
        tracing::info!(gateway = %self.gateway, "gateway detached");
    }

    /// A message from the gateway: a command for a session, or about the stream itself.
    async fn take(&mut self, message: pb::GatewayMessage) -> Option<Job> {
        match &message.body {
            Some(In::Subscribe(subscribe)) => {
                self.subscribe(&subscribe.from).await;
                None
            }
            Some(In::Hello(_)) | None => {
                tracing::warn!(gateway = %self.gateway, session = message.session_id, "gateway message without a command");
                None
            }
            Some(_) => job(message),
        }
    }

    /// This stream carries the gateway's deliveries from now on, from position `from`.
    async fn subscribe(&mut self, from: &str) {
        if let Some(old) = self.subscription.take() {
            old.cancel();
        }
        let subscription = self.cut.child_token();
        self.subscription = Some(subscription.clone());
        let inbox = InboxSink {
            sink: self.deliveries.clone(),
            cut: subscription,
            overflow: self.cut.clone(),
        };
        let from = (!from.is_empty()).then(|| from.to_owned());
        self.hub.subscribe(self.gateway, from, inbox).await;
    }

    fn tell(&self, body: pb::session_message::Body) {
        let message = pb::SessionMessage {
            body: Some(body),
            ..Default::default()
        };
        if self.control.try_send(message).is_err() {
            tracing::warn!(gateway = %self.gateway, "gateway not reading its stream; cutting it");
            self.cut.cancel();
        }
    }

    fn start(&self, session: u64, job: Job) -> BoxFuture<'static, (u64, u64)> {
        let hub = self.hub.clone();
        let from = SessionKey {
            gateway: self.gateway,
            session,
        };
        let Job {
            seq,
            user,
            command,
            span,
        } = job;
        async move {
            tracing::Instrument::instrument(hub.handle(from, user, command), span).await;
            (session, seq)
        }
        .boxed()
    }
}

/// The command a gateway message carries, with the span it is routed under: calls and answers
/// continue the trace of the call they belong to; the rest are not traced.
fn job(message: pb::GatewayMessage) -> Option<Job> {
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
        In::Candidate(c) => Command::Candidate(c.candidate_json),
        In::Stop(_) => Command::Stop,
        In::Closed(_) => Command::Closed,
        In::Lost(_) => Command::Lost,
        In::Hello(_) | In::Subscribe(_) => return None,
    };
    Some(Job {
        seq,
        user: Name::parse(&user).ok(),
        command,
        span,
    })
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

fn session_message(inbound: Inbound) -> pb::SessionMessage {
    let Inbound { position, delivery } = inbound;
    // Candidates are most of the traffic and show no trace id to the browser: their trace
    // context is only worth its allocation when spans are exported.
    let traced =
        !matches!(delivery.event, Event::Candidate(_)) || svc_common::telemetry::exporting();
    let trace = delivery.trace.filter(|_| traced);
    let body = match delivery.event {
        Event::Registered {
            name,
            resume_token,
            call,
        } => Out::Registered(pb::Registered {
            name: name.as_str().to_owned(),
            resume_token,
            call: call.map(|call| pb::CallState {
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
        position: position.unwrap_or_default(),
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
        ] {
            assert_ne!(
                request_code(request),
                pb::Request::Unspecified,
                "{request:?}"
            );
        }
    }
}
