//! One browser WebSocket: decodes its frames, forwards them to signaling through the [`Link`],
//! and writes back what signaling and ice-config answer. Holds no call state: only the pending
//! ICE configuration between `register` and signaling's answer, and when to refresh it.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use stunner_proto::signaling::v1::{
    self as pb, gateway_message::Body as Up, session_message::Body as Down,
};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    ice::{IceClient, IceError},
    link::{Ended, Link, SessionHandle},
    metrics::Metrics,
    protocol::{CallResponse, ClientMessage, IceConfiguration, ServerMessage, Verdict},
    trace,
};

/// The close reason for a browser that stopped answering pings.
const NO_PONG: &str = "no pong";

/// How long the server waits for a browser to finish the closing handshake.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(5);

/// What every session of this gateway shares.
pub struct Shared {
    pub link: Arc<Link>,
    pub metrics: Metrics,
    pub ice: IceClient,
    pub limits: SessionLimits,
    /// Cancelled when the gateway starts draining: every session closes with 1001.
    pub stop: CancellationToken,
    /// Owns every session task, so the drain waits for their closing handshakes.
    pub sessions: TaskTracker,
}

#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// Messages per second a browser may send, on average.
    pub rate: u32,
    /// How many messages a browser may send at once above the rate.
    pub burst: u32,
    /// How often the server pings; a browser silent for two intervals is gone.
    pub ping_interval: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            rate: 50,
            burst: 200,
            ping_interval: Duration::from_secs(20),
        }
    }
}

/// Runs one session to its end.
pub async fn run(mut socket: WebSocket, session: u64, shared: Arc<Shared>) {
    let mut handle = shared.link.open(session);
    let mut state = State {
        session,
        shared: shared.clone(),
        pending_ice: None,
        name: None,
        call_trace: None,
        refresh_at: None,
        bucket: TokenBucket::new(shared.limits.rate, shared.limits.burst),
    };
    let mut pings = interval(shared.limits.ping_interval);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    let close = loop {
        let refresh = async {
            match state.refresh_at {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = socket.recv() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if !send(&mut socket, &shared.metrics, state.on_text(&text).await).await {
                            break None;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let reply = if state.bucket.take() {
                            error("binary frames are not part of this protocol", "invalid_message")
                        } else {
                            error("too many messages; slow down", "rate_limited")
                        };
                        if !send(&mut socket, &shared.metrics, Some(reply)).await {
                            break None;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(e)) if e.to_string().contains("too long") => {
                        shared.metrics.rejected("too_big");
                        break Some((close_code::SIZE, "message too big"));
                    }
                    Some(Err(_)) => break None,
                }
            }
            message = handle.inbox.recv() => {
                let Some(message) = message else { break None };
                let replies = state.on_signaling(*message);
                // A browser that stopped reading blocks this write; its queue overflowing
                // (`ended`) must still end the session.
                tokio::select! {
                    sent = send(&mut socket, &shared.metrics, replies) => if !sent { break None },
                    () = handle.ended.cancelled() => break Some(ended(&handle)),
                }
            }
            () = handle.ended.cancelled() => break Some(ended(&handle)),
            () = refresh => {
                state.refresh_at = None;
                if !send(&mut socket, &shared.metrics, state.refresh().await).await {
                    break None;
                }
            }
            _ = pings.tick() => {
                if last_heard.elapsed() > shared.limits.ping_interval * 2 {
                    break Some((close_code::POLICY, NO_PONG));
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            () = shared.stop.cancelled() => break Some((close_code::AWAY, "server shutting down")),
        }
    };

    // The session is over for signaling now (its peer is told at once), whatever the closing
    // handshake below takes.
    shared.link.close(session);
    shared.link.send(up(session, Up::Closed(pb::Closed {})));
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // The closing handshake: send the close, then read until the browser's own close, so
        // unread input does not turn the close into a TCP reset that loses the frame. Bounded:
        // a browser that never reads must not hold this task.
        // A browser that stopped answering pings is gone: nobody will answer the close either.
        let gone = code == close_code::POLICY && reason == NO_PONG;
        let handshake = async {
            socket.send(Message::Close(Some(frame))).await.ok()?;
            while !gone && let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
            Some(())
        };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, handshake).await;
    }
}

struct State {
    session: u64,
    shared: Arc<Shared>,
    /// Fetched before the name is reserved; sent once signaling confirms the name.
    pending_ice: Option<(IceConfiguration, Option<Duration>)>,
    /// The name signaling confirmed.
    name: Option<String>,
    /// The id and trace context of the call this session is in, as signaling last told it.
    call_trace: Option<(String, String)>,
    refresh_at: Option<Instant>,
    bucket: TokenBucket,
}

impl State {
    /// A browser frame: zero or more immediate replies.
    async fn on_text(&mut self, text: &str) -> Vec<ServerMessage> {
        if !self.bucket.take() {
            return vec![error("too many messages; slow down", "rate_limited")];
        }
        let message = match ClientMessage::decode(text) {
            Ok(message) => message,
            Err(e) => return vec![error(&e.to_string(), e.reason())],
        };
        let mut trace_context = HashMap::new();
        // Kept open until the message is on its way to signaling.
        let mut step: Option<tracing::Span> = None;
        let body = match message {
            ClientMessage::Register { name, resume_token } => {
                if self.name.is_some() || self.pending_ice.is_some() {
                    return vec![register_refused("already registered", "already_registered")];
                }
                // Credentials first: if they cannot be had, no name is reserved.
                // Boxed: a gRPC call future is large, and every idle session would carry its size.
                // Registration is a trace of its own, including the ice-config request.
                let span = tracing::info_span!(
                    parent: None,
                    "register",
                    otel.kind = "server",
                    enduser.id = %name,
                    session = self.session,
                );
                match Box::pin(self.shared.ice.issue(&name).instrument(span)).await {
                    Ok(issued) => self.pending_ice = Some((issued.config, issued.refresh_in)),
                    Err(IceError::InvalidUser(_)) => {
                        return vec![register_refused(
                            "a name may only contain letters, digits and _ - . @ +",
                            "invalid_name",
                        )];
                    }
                    Err(e @ IceError::Unavailable(_)) => {
                        tracing::warn!(session = self.session, error = %e, "ice-config unavailable");
                        return vec![register_refused(&e.to_string(), "ice_config_unavailable")];
                    }
                }
                Up::Register(pb::Register {
                    name,
                    resume_token: resume_token.unwrap_or_default(),
                })
            }
            ClientMessage::Call {
                to,
                sdp_offer,
                traceparent,
            } => {
                // One trace per call: the page's own, if it sent a valid one, or a new one.
                let caller = self.name.as_deref().unwrap_or_default();
                let (span, traceparent) = trace::call_span(caller, &to, traceparent.as_deref());
                trace_context.insert(trace::TRACEPARENT.to_owned(), traceparent);
                step = Some(span);
                Up::Call(pb::Call { to, sdp_offer })
            }
            ClientMessage::IncomingCallResponse {
                from,
                call_response,
                sdp_answer,
            } => {
                let accept = call_response == CallResponse::Accept;
                // The answer continues the trace of the call it answers.
                if let Some((call_id, traceparent)) = &self.call_trace {
                    let (span, onward) =
                        trace::step_span("incomingCallResponse", call_id, traceparent);
                    trace_context.insert(trace::TRACEPARENT.to_owned(), onward);
                    step = Some(span);
                }
                if accept && sdp_answer.as_deref().is_none_or(str::is_empty) {
                    return vec![error(
                        "an accepted call needs an sdpAnswer",
                        "invalid_message",
                    )];
                }
                Up::Answer(pb::Answer {
                    from,
                    accept,
                    sdp_answer: sdp_answer.unwrap_or_default(),
                })
            }
            ClientMessage::OnIceCandidate { candidate } => Up::Candidate(pb::Candidate {
                candidate_json: serde_json::to_string(&candidate).unwrap_or_default(),
            }),
            ClientMessage::Stop => Up::Stop(pb::Stop {}),
        };
        let message = pb::GatewayMessage {
            trace_context,
            ..up(self.session, body)
        };
        let sent = self.shared.link.send(message);
        drop(step);
        if !sent {
            self.pending_ice = None;
            return vec![error(
                "signaling is unavailable; try again shortly",
                "signaling_unavailable",
            )];
        }
        Vec::new()
    }

    /// What signaling says to this session, in the browser's words.
    fn on_signaling(&mut self, message: pb::SessionMessage) -> Option<ServerMessage> {
        let trace_id = trace::trace_id_in(&message.trace_context);
        let body = message.body?;
        // Each delivery of a call is a step of the call's trace.
        let traceparent = message
            .trace_context
            .get(trace::TRACEPARENT)
            .filter(|_| svc_common::telemetry::exporting());
        let _step = match (traceparent, delivery(&body)) {
            (Some(traceparent), Some((step, call_id))) => {
                // Candidates name no call: they belong to the one this session is in.
                let known = self.call_trace.as_ref().map(|(id, _)| id.clone());
                let call_id = Some(call_id)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .or(known)
                    .unwrap_or_default();
                let (span, _) = trace::step_span(step, &call_id, traceparent);
                // What became of the call, where the caller learns it.
                match &body {
                    Down::CallAccepted(_) => {
                        span.record("call.outcome", "accepted");
                    }
                    Down::Refused(refused) => {
                        span.record("call.outcome", reason_text(refused.reason()));
                    }
                    Down::StopCommunication(stop) => {
                        span.record("call.outcome", reason_text(stop.reason()));
                    }
                    _ => {}
                }
                self.call_trace = match &body {
                    Down::StopCommunication(_) | Down::Refused(_) => None,
                    _ => Some((call_id, traceparent.clone())),
                };
                Some(span)
            }
            _ => None,
        };
        let message = pb::SessionMessage {
            body: Some(body),
            ..message
        };
        Some(match message.body? {
            Down::Registered(registered) => {
                let (config, refresh_in) = self.pending_ice.take()?;
                self.name = Some(registered.name);
                self.refresh_at = refresh_in.map(|d| Instant::now() + d);
                ServerMessage::RegisterResponse {
                    response: Verdict::Accepted,
                    message: None,
                    reason: None,
                    ice_configuration: Some(config),
                    resume_token: Some(registered.resume_token),
                }
            }
            Down::Refused(refused) => {
                let reason = reason_text(refused.reason());
                match refused.request() {
                    pb::Request::Register => {
                        if refused.reason() == pb::Reason::Replaced {
                            self.name = None;
                            self.refresh_at = None;
                            return Some(error(&refused.message, reason));
                        }
                        self.pending_ice = None;
                        register_refused(&refused.message, reason)
                    }
                    pb::Request::Call => ServerMessage::CallResponse {
                        response: Verdict::Rejected,
                        sdp_answer: None,
                        message: Some(refused.message),
                        reason: Some(reason),
                        call_id: None,
                        trace_id,
                    },
                    _ => error(&refused.message, reason),
                }
            }
            Down::IncomingCall(call) => ServerMessage::IncomingCall {
                from: call.from,
                sdp_offer: call.sdp_offer,
                call_id: call.call_id,
                trace_id,
            },
            Down::CallAccepted(accepted) => ServerMessage::CallResponse {
                response: Verdict::Accepted,
                sdp_answer: Some(accepted.sdp_answer),
                message: None,
                reason: None,
                call_id: Some(accepted.call_id),
                trace_id,
            },
            Down::StartCommunication(start) => ServerMessage::StartCommunication {
                call_id: start.call_id,
                trace_id,
            },
            // Written by a gateway from a decoded candidate, so it decodes.
            Down::Candidate(candidate) => ServerMessage::IceCandidate {
                candidate: serde_json::from_str(&candidate.candidate_json).ok()?,
            },
            Down::StopCommunication(stop) => ServerMessage::StopCommunication {
                reason: reason_text(stop.reason()),
                message: stop.message,
                call_id: stop.call_id,
                trace_id,
            },
        })
    }

    /// Fresh credentials for the registered name, pushed before the current ones expire.
    async fn refresh(&mut self) -> Option<ServerMessage> {
        let name = self.name.clone()?;
        match Box::pin(self.shared.ice.issue(&name)).await {
            Ok(issued) => {
                self.refresh_at = issued.refresh_in.map(|d| Instant::now() + d);
                Some(ServerMessage::IceConfiguration {
                    ice_configuration: issued.config,
                })
            }
            Err(e) => {
                tracing::warn!(session = self.session, error = %e, "credential refresh failed; retrying");
                self.refresh_at = Some(Instant::now() + Duration::from_secs(5));
                None
            }
        }
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
        Down::Refused(refused) if refused.request() == pb::Request::Call => ("callResponse", ""),
        Down::Registered(_) | Down::Refused(_) => return None,
    })
}

/// Why the server ended a session, as a close code and reason.
fn ended(handle: &SessionHandle) -> (u16, &'static str) {
    match handle.reason() {
        Some(Ended::TooSlow) => (close_code::POLICY, "too slow reading messages"),
        _ => (
            close_code::AGAIN,
            "signaling unavailable; reconnect and resume",
        ),
    }
}

/// Writes replies; `false` once the socket is gone.
async fn send(
    socket: &mut WebSocket,
    metrics: &Metrics,
    replies: impl IntoIterator<Item = ServerMessage>,
) -> bool {
    for reply in replies {
        metrics.reply(&reply);
        if socket
            .send(Message::Text(reply.encode().into()))
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

fn up(session: u64, body: Up) -> pb::GatewayMessage {
    pb::GatewayMessage {
        session_id: session,
        body: Some(body),
        trace_context: Default::default(),
    }
}

fn error(message: &str, reason: &'static str) -> ServerMessage {
    ServerMessage::Error {
        message: message.to_owned(),
        reason,
    }
}

fn register_refused(message: &str, reason: &'static str) -> ServerMessage {
    ServerMessage::RegisterResponse {
        response: Verdict::Rejected,
        message: Some(message.to_owned()),
        reason: Some(reason),
        ice_configuration: None,
        resume_token: None,
    }
}

/// The machine-readable reason the browser sees.
pub fn reason_text(reason: pb::Reason) -> &'static str {
    match reason {
        pb::Reason::Unspecified => "unspecified",
        pb::Reason::InvalidName => "invalid_name",
        pb::Reason::NameTaken => "name_taken",
        pb::Reason::AlreadyRegistered => "already_registered",
        pb::Reason::NotRegistered => "not_registered",
        pb::Reason::SelfCall => "self_call",
        pb::Reason::AlreadyInCall => "already_in_call",
        pb::Reason::UserNotFound => "user_not_found",
        pb::Reason::Busy => "busy",
        pb::Reason::Declined => "declined",
        pb::Reason::Timeout => "timeout",
        pb::Reason::NoSuchCall => "no_such_call",
        pb::Reason::NotInCall => "not_in_call",
        pb::Reason::TooManyCandidates => "too_many_candidates",
        pb::Reason::HangUp => "hang_up",
        pb::Reason::PeerDisconnected => "peer_disconnected",
        pb::Reason::Replaced => "replaced",
        pb::Reason::InvalidMessage => "invalid_message",
    }
}

/// Per-session flood control: `rate` tokens a second, at most `burst` saved up.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
