//! What one session knows and decides, apart from its socket: the registration under way, the
//! name signaling confirmed, when to refresh the credentials, the call's trace, flood control;
//! and what each browser frame, fetched configuration or signaling message means for it.

use super::*;
use svc_common::name::Name;
use translate::{Downward, Upward, downward, error, register_refused, registered, upward};

/// An ICE configuration fetch in flight, and what it is for.
pub(super) type Fetch = Pin<Box<dyn Future<Output = (Purpose, Result<Issued, IceError>)> + Send>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    Register,
    Refresh,
}

/// Where a registration stands.
pub(super) enum Registration {
    None,
    /// Fetching credentials for `name`, before claiming it.
    Fetching {
        name: String,
        resume_token: Option<String>,
        rejoin: Option<String>,
        extensions: bool,
    },
    /// Credentials in hand; the name is being claimed.
    Claiming {
        name: String,
        config: IceConfiguration,
        refresh_in: Option<Duration>,
    },
}

pub(super) struct Session {
    pub(super) id: u64,
    pub(super) shared: Arc<Shared>,
    pub(super) registration: Registration,
    /// The name signaling confirmed.
    pub(super) name: Option<String>,
    pub(super) refresh_at: Option<Instant>,
    pub(super) fetch: Option<Fetch>,
    pub(super) trace: CallTrace,
    pub(super) bucket: TokenBucket,
    /// Renegotiations are few in a healthy call: a page sending many is throttled on its own.
    pub(super) negotiations: TokenBucket,
    /// What the page understands, as its last `register` said.
    pub(super) dialect: Dialect,
}

impl Session {
    /// The name this session holds, or is claiming.
    pub(super) fn holding(&self) -> Option<&str> {
        match &self.registration {
            Registration::Claiming { name, .. } => Some(name),
            _ => self.name.as_deref(),
        }
    }

    /// A browser frame: zero or more immediate replies.
    pub(super) fn on_text(&mut self, text: &str) -> Vec<ServerMessage> {
        if !self.bucket.take() {
            return vec![error(
                "too many messages; slow down",
                GatewayReason::RateLimited.into(),
            )];
        }
        let message = match ClientMessage::decode(text) {
            Ok(message) => message,
            Err(e) => return vec![error(&e.to_string(), e.reason().into())],
        };
        match upward(message) {
            Upward::Register {
                name,
                resume_token,
                rejoin,
                extensions,
            } => self.register(name, resume_token, rejoin, extensions),
            Upward::Call {
                to,
                sdp_offer,
                traceparent,
            } => {
                // One trace per call: the page's own, if it sent a valid one, or a new one.
                let caller = self.name.as_deref().unwrap_or_default();
                let (span, traceparent) = self.trace.call(caller, &to, traceparent.as_deref());
                let _step = span.enter();
                self.forward(Up::Call(pb::Call { to, sdp_offer }), Some(traceparent))
            }
            Upward::Answer(answer) => {
                // The answer continues the trace of the call it answers.
                let step = self.trace.answer();
                let _step = step.as_ref().map(|(span, _)| span.enter());
                let traceparent = step.as_ref().map(|(_, onward)| onward.clone());
                self.forward(Up::Answer(answer), traceparent)
            }
            Upward::Forward(body) => self.forward(body, None),
            Upward::Negotiate(negotiate) => {
                if !self.negotiations.take() {
                    return vec![error(
                        "too many renegotiations; slow down",
                        GatewayReason::RateLimited.into(),
                    )];
                }
                self.forward(Up::Negotiate(negotiate), None)
            }
            Upward::Restarted {
                cause,
                outcome,
                duration,
            } => {
                self.shared.metrics.ice_restart(cause, outcome, duration);
                self.trace.restart(cause, outcome, duration);
                Vec::new()
            }
            Upward::Refuse(reply) => vec![reply],
        }
    }

    /// A registration: credentials are fetched first, so a failed fetch reserves no name.
    pub(super) fn register(
        &mut self,
        name: String,
        resume_token: Option<String>,
        rejoin: Option<String>,
        extensions: bool,
    ) -> Vec<ServerMessage> {
        if self.name.is_some() {
            return vec![register_refused(
                "already registered",
                pb::Reason::AlreadyRegistered.into(),
            )];
        }
        self.dialect = Dialect::declared(extensions);
        // Checked before anything records or fetches for it (a name is written to logs and
        // traces); signaling checks it again, as the authority.
        let name = match Name::parse(&name) {
            Ok(name) => name.to_string(),
            Err(error) => {
                return vec![register_refused(
                    &error.to_string(),
                    pb::Reason::InvalidName.into(),
                )];
            }
        };
        // Registration is a trace of its own, including the ice-config request.
        let span = tracing::info_span!(
            parent: None,
            "register",
            otel.kind = "server",
            enduser.id = %name,
            session = self.id,
        );
        self.fetch = Some(self.issue(&name, Purpose::Register, span));
        self.registration = Registration::Fetching {
            name,
            resume_token,
            rejoin,
            extensions,
        };
        Vec::new()
    }

    pub(super) fn start_refresh(&mut self) {
        self.refresh_at = None;
        let Some(name) = self.name.clone() else {
            return;
        };
        tracing::info!(session = self.id, "refreshing credentials");
        self.fetch = Some(self.issue(&name, Purpose::Refresh, tracing::Span::none()));
    }

    pub(super) fn issue(&self, name: &str, purpose: Purpose, span: tracing::Span) -> Fetch {
        let (ice, name) = (self.shared.ice.clone(), name.to_owned());
        Box::pin(async move { (purpose, ice.issue(&name).instrument(span).await) })
    }

    /// Credentials arrived (or could not be had).
    pub(super) fn on_issued(
        &mut self,
        purpose: Purpose,
        issued: Result<Issued, IceError>,
    ) -> Vec<ServerMessage> {
        match (purpose, issued) {
            (Purpose::Register, Ok(issued)) => {
                let Registration::Fetching {
                    name,
                    resume_token,
                    rejoin,
                    extensions,
                } = std::mem::replace(&mut self.registration, Registration::None)
                else {
                    return Vec::new();
                };
                self.registration = Registration::Claiming {
                    name: name.clone(),
                    config: issued.config,
                    refresh_in: issued.refresh_in,
                };
                let body = Up::Register(pb::Register {
                    name,
                    resume_token: resume_token.unwrap_or_default(),
                    rejoin_call_id: rejoin.unwrap_or_default(),
                    extensions,
                    ..Default::default()
                });
                self.forward(body, None)
            }
            (Purpose::Register, Err(e)) => {
                self.registration = Registration::None;
                let reply = match e {
                    IceError::InvalidUser(_) => register_refused(
                        "a name may only contain letters, digits and _ - . @ +",
                        pb::Reason::InvalidName.into(),
                    ),
                    // The cause stays in the logs: a transport's words are not for browsers.
                    IceError::Unavailable(_) => {
                        tracing::warn!(session = self.id, error = %e, "ice-config unavailable");
                        register_refused(
                            "TURN credentials are unavailable; try again shortly",
                            GatewayReason::IceConfigUnavailable.into(),
                        )
                    }
                };
                vec![reply]
            }
            (Purpose::Refresh, Ok(issued)) => {
                if self.name.is_none() {
                    return Vec::new();
                }
                self.refresh_at = issued.refresh_in.map(|d| Instant::now() + d);
                vec![ServerMessage::IceConfiguration {
                    ice_configuration: issued.config,
                }]
            }
            (Purpose::Refresh, Err(e)) => {
                tracing::warn!(session = self.id, error = %e, "credential refresh failed; retrying");
                self.refresh_at = Some(Instant::now() + REFRESH_RETRY);
                Vec::new()
            }
        }
    }

    /// Carries `body` to signaling under `traceparent`; a refusal when it cannot be.
    pub(super) fn forward(&mut self, body: Up, traceparent: Option<String>) -> Vec<ServerMessage> {
        let mut message = up(self.id, self.name.as_deref(), body);
        if let Some(traceparent) = traceparent {
            message
                .trace_context
                .insert(TRACEPARENT.to_owned(), traceparent);
        }
        if self.shared.link.send(message) {
            return Vec::new();
        }
        if matches!(self.registration, Registration::Claiming { .. }) {
            self.registration = Registration::None;
        }
        vec![error(
            "signaling is unavailable; try again shortly",
            GatewayReason::SignalingUnavailable.into(),
        )]
    }

    pub(super) fn refuse_binary(&mut self) -> ServerMessage {
        if self.bucket.take() {
            error(
                "binary frames are not part of this protocol",
                GatewayReason::InvalidMessage.into(),
            )
        } else {
            error(
                "too many messages; slow down",
                GatewayReason::RateLimited.into(),
            )
        }
    }

    /// What signaling says to this session, in the browser's words.
    pub(super) fn on_signaling(&mut self, message: pb::SessionMessage) -> Option<ServerMessage> {
        let trace_id = calltrace::trace_id_in(&message.trace_context);
        let body = message.body?;
        // Each delivery of a call is a step of the call's trace.
        let _step = self.trace.delivery(&body, &message.trace_context);
        match downward(body, trace_id) {
            Downward::Tell(reply) => Some(reply),
            Downward::Registered {
                name,
                resume_token,
                call,
            } => {
                let Registration::Claiming {
                    config, refresh_in, ..
                } = std::mem::replace(&mut self.registration, Registration::None)
                else {
                    return None;
                };
                self.name = Some(name);
                // The tutorial's page cannot apply fresh credentials: none are fetched for it.
                self.refresh_at = refresh_in
                    .filter(|_| self.dialect != Dialect::Tutorial)
                    .map(|d| Instant::now() + d);
                Some(registered(config, resume_token, call))
            }
            Downward::RegisterRefused(reply) => {
                self.registration = Registration::None;
                Some(reply)
            }
            Downward::Replaced(reply) => {
                self.name = None;
                self.refresh_at = None;
                Some(reply)
            }
            Downward::Nothing => None,
        }
    }
}
