//! The call state machine, server-authoritative: who is registered, who is calling whom, and
//! what each party must be told. Pure and synchronous: commands and the clock go in, deliveries
//! come out; the runtime owns sockets, streams and timers.
//!
//! A call is ringing until the callee answers, then up until either side stops or goes away.
//! The caller's ICE candidates are buffered (bounded) while the call rings, because the callee
//! has no peer connection before it accepts (the tutorial's page would throw on them), and are
//! flushed in order right after `startCommunication`.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    time::{Duration, Instant},
};

use crate::{
    name::Name,
    presence::{MemoryPresence, Presence},
};

/// One browser session: the gateway stream it arrived on and the gateway's id for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    pub gateway: u64,
    pub session: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What a session asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Register {
        name: String,
        resume_token: Option<String>,
    },
    Call {
        to: String,
        sdp_offer: String,
        /// The W3C trace context the call travels under; every delivery of the call carries it.
        trace: Option<String>,
    },
    Answer {
        from: String,
        accept: bool,
        sdp_answer: String,
    },
    Candidate(String),
    Stop,
    /// The session's socket closed.
    Closed,
}

/// Which request a refusal answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Register,
    Call,
    Answer,
    Candidate,
    Stop,
}

/// Machine-readable reasons, next to every human message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    InvalidName,
    NameTaken,
    AlreadyRegistered,
    NotRegistered,
    SelfCall,
    AlreadyInCall,
    UserNotFound,
    Busy,
    Declined,
    Timeout,
    NoSuchCall,
    NotInCall,
    TooManyCandidates,
    HangUp,
    PeerDisconnected,
    Replaced,
}

impl Reason {
    /// The machine-readable name (metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidName => "invalid_name",
            Reason::NameTaken => "name_taken",
            Reason::AlreadyRegistered => "already_registered",
            Reason::NotRegistered => "not_registered",
            Reason::SelfCall => "self_call",
            Reason::AlreadyInCall => "already_in_call",
            Reason::UserNotFound => "user_not_found",
            Reason::Busy => "busy",
            Reason::Declined => "declined",
            Reason::Timeout => "timeout",
            Reason::NoSuchCall => "no_such_call",
            Reason::NotInCall => "not_in_call",
            Reason::TooManyCandidates => "too_many_candidates",
            Reason::HangUp => "hang_up",
            Reason::PeerDisconnected => "peer_disconnected",
            Reason::Replaced => "replaced",
        }
    }
}

/// What a session must be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Registered {
        name: Name,
        resume_token: String,
    },
    Refused {
        request: Request,
        reason: Reason,
        message: String,
    },
    IncomingCall {
        from: Name,
        sdp_offer: String,
        call: CallId,
    },
    CallAccepted {
        sdp_answer: String,
        call: CallId,
        /// How long the call rang: the call setup time.
        rang_for: Duration,
    },
    StartCommunication {
        call: CallId,
    },
    Candidate(String),
    StopCommunication {
        reason: Reason,
        message: String,
        call: CallId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub to: SessionKey,
    pub event: Event,
    /// The trace context of the call this delivery belongs to.
    pub trace: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a call may ring before the caller is told it timed out.
    pub ring_timeout: Duration,
    /// How long a disconnected session's name stays reserved for its resume token.
    pub resume_grace: Duration,
    /// How many candidates one side may send before the other side can take them.
    pub max_buffered_candidates: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ring_timeout: Duration::from_secs(30),
            resume_grace: Duration::from_secs(10),
            max_buffered_candidates: 64,
        }
    }
}

pub struct Switchboard<P = MemoryPresence> {
    limits: Limits,
    presence: P,
    sessions: HashMap<SessionKey, Session>,
    calls: HashMap<CallId, Call>,
    timers: BTreeSet<(Instant, Timer)>,
    next_call: u64,
}

#[derive(Default)]
struct Session {
    name: Option<Name>,
    call: Option<CallId>,
}

struct Call {
    caller: SessionKey,
    callee: SessionKey,
    caller_name: Name,
    callee_name: Name,
    ring_deadline: Option<Instant>,
    /// The caller's candidates, held until the callee accepts.
    to_callee: Vec<String>,
    trace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Ring(CallId),
    Grace(Name),
}

/// Collects deliveries while one command is handled, under the trace of the call at hand.
#[derive(Default)]
struct Out {
    deliveries: Vec<Delivery>,
    trace: Option<String>,
}

impl Out {
    fn send(&mut self, to: SessionKey, event: Event) {
        let trace = self.trace.clone();
        self.deliveries.push(Delivery { to, event, trace });
    }

    fn refuse(
        &mut self,
        to: SessionKey,
        request: Request,
        reason: Reason,
        message: impl Into<String>,
    ) {
        self.send(
            to,
            Event::Refused {
                request,
                reason,
                message: message.into(),
            },
        );
    }
}

impl Switchboard<MemoryPresence> {
    pub fn new(limits: Limits) -> Self {
        Self::with_presence(limits, MemoryPresence::default())
    }
}

impl<P: Presence> Switchboard<P> {
    pub fn with_presence(limits: Limits, presence: P) -> Self {
        Self {
            limits,
            presence,
            sessions: HashMap::new(),
            calls: HashMap::new(),
            timers: BTreeSet::new(),
            next_call: 1,
        }
    }

    /// Handles one command from `from` at `now`.
    pub fn handle(&mut self, now: Instant, from: SessionKey, command: Command) -> Vec<Delivery> {
        let mut out = Out::default();
        match command {
            Command::Register { name, resume_token } => {
                self.register(&mut out, from, &name, resume_token)
            }
            Command::Call {
                to,
                sdp_offer,
                trace,
            } => {
                out.trace.clone_from(&trace);
                self.call(&mut out, now, from, &to, sdp_offer, trace);
            }
            Command::Answer {
                from: caller,
                accept,
                sdp_answer,
            } => {
                self.answer(&mut out, now, from, &caller, accept, sdp_answer);
            }
            Command::Candidate(candidate) => self.candidate(&mut out, from, candidate),
            Command::Stop => self.stop(&mut out, from),
            Command::Closed => self.closed(&mut out, now, from),
        }
        out.deliveries
    }

    /// Ends every session of a gateway whose stream went away.
    pub fn gateway_closed(&mut self, now: Instant, gateway: u64) -> Vec<Delivery> {
        let gone: Vec<SessionKey> = self
            .sessions
            .keys()
            .filter(|k| k.gateway == gateway)
            .copied()
            .collect();
        let mut out = Out::default();
        for key in gone {
            self.closed(&mut out, now, key);
        }
        out.deliveries
            .retain(|delivery| delivery.to.gateway != gateway);
        out.deliveries
    }

    /// The earliest pending deadline, for the runtime's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Fires every deadline that has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<Delivery> {
        let mut out = Out::default();
        while let Some((at, _)) = self.timers.first()
            && *at <= now
        {
            let Some((_, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::Ring(id) => self.ring_timeout(&mut out, id),
                Timer::Grace(name) => self.presence.expire(&name),
            }
        }
        out.deliveries
    }

    /// Registered names, including those held for a resume.
    pub fn names(&self) -> usize {
        self.presence.len()
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    // === commands ===

    fn register(&mut self, out: &mut Out, from: SessionKey, name: &str, token: Option<String>) {
        let session = self.sessions.entry(from).or_default();
        if let Some(current) = &session.name {
            let message = format!("already registered as {current}");
            return out.refuse(from, Request::Register, Reason::AlreadyRegistered, message);
        }
        let name = match Name::parse(name) {
            Ok(name) => name,
            Err(error) => {
                return out.refuse(
                    from,
                    Request::Register,
                    Reason::InvalidName,
                    error.to_string(),
                );
            }
        };
        let claim =
            match self
                .presence
                .claim(&name, from, token.as_deref().filter(|t| !t.is_empty()))
            {
                Ok(claim) => claim,
                Err(_) => {
                    let message = format!("the name {name} is taken");
                    return out.refuse(from, Request::Register, Reason::NameTaken, message);
                }
            };
        if let Some(old) = claim.displaced {
            // The same user came back on a new connection before the old one was seen closing.
            if let Some(old_session) = self.sessions.get_mut(&old) {
                old_session.name = None;
            }
            self.end_call_of(
                out,
                old,
                Reason::PeerDisconnected,
                "remote user disconnected",
            );
            out.refuse(
                old,
                Request::Register,
                Reason::Replaced,
                format!("{name} signed in elsewhere"),
            );
        }
        self.sessions.entry(from).or_default().name = Some(name.clone());
        out.send(
            from,
            Event::Registered {
                name,
                resume_token: claim.token,
            },
        );
    }

    fn call(
        &mut self,
        out: &mut Out,
        now: Instant,
        from: SessionKey,
        to: &str,
        sdp_offer: String,
        trace: Option<String>,
    ) {
        let session = self.sessions.entry(from).or_default();
        let Some(caller_name) = session.name.clone() else {
            return out.refuse(
                from,
                Request::Call,
                Reason::NotRegistered,
                "register before calling",
            );
        };
        if session.call.is_some() {
            return out.refuse(
                from,
                Request::Call,
                Reason::AlreadyInCall,
                "already in a call",
            );
        }
        let not_found = || format!("User {to} is not registered");
        let Ok(callee_name) = Name::parse(to) else {
            return out.refuse(from, Request::Call, Reason::UserNotFound, not_found());
        };
        if callee_name == caller_name {
            return out.refuse(
                from,
                Request::Call,
                Reason::SelfCall,
                "you cannot call yourself",
            );
        }
        let Some(callee) = self.presence.resolve(&callee_name) else {
            return out.refuse(from, Request::Call, Reason::UserNotFound, not_found());
        };
        let callee_session = self.sessions.entry(callee).or_default();
        if callee_session.call.is_some() {
            // Answered here, without disturbing the callee.
            let message = format!("User {callee_name} is busy");
            return out.refuse(from, Request::Call, Reason::Busy, message);
        }
        let id = CallId(self.next_call);
        self.next_call += 1;
        callee_session.call = Some(id);
        self.sessions.entry(from).or_default().call = Some(id);
        let deadline = now + self.limits.ring_timeout;
        self.timers.insert((deadline, Timer::Ring(id)));
        self.calls.insert(
            id,
            Call {
                caller: from,
                callee,
                caller_name: caller_name.clone(),
                callee_name,
                ring_deadline: Some(deadline),
                to_callee: Vec::new(),
                trace,
            },
        );
        out.send(
            callee,
            Event::IncomingCall {
                from: caller_name,
                sdp_offer,
                call: id,
            },
        );
    }

    fn answer(
        &mut self,
        out: &mut Out,
        now: Instant,
        from: SessionKey,
        caller: &str,
        accept: bool,
        sdp_answer: String,
    ) {
        let ringing = self.call_of(from).filter(|(_, call)| {
            call.callee == from
                && call.ring_deadline.is_some()
                && call.caller_name.as_str() == caller
        });
        let Some((id, call)) = ringing else {
            let message = format!("there is no incoming call from {caller} to answer");
            return out.refuse(from, Request::Answer, Reason::NoSuchCall, message);
        };
        out.trace.clone_from(&call.trace);
        if !accept {
            let caller = self.end_call(id).map(|call| call.caller);
            if let Some(caller) = caller {
                out.refuse(caller, Request::Call, Reason::Declined, "user declined");
            }
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut rang_for = Duration::ZERO;
        if let Some(deadline) = call.ring_deadline.take() {
            self.timers.remove(&(deadline, Timer::Ring(id)));
            rang_for = self
                .limits
                .ring_timeout
                .saturating_sub(deadline.saturating_duration_since(now));
        }
        out.send(
            call.caller,
            Event::CallAccepted {
                sdp_answer,
                call: id,
                rang_for,
            },
        );
        out.send(call.callee, Event::StartCommunication { call: id });
        for candidate in call.to_callee.drain(..) {
            out.send(call.callee, Event::Candidate(candidate));
        }
    }

    fn candidate(&mut self, out: &mut Out, from: SessionKey, candidate: String) {
        let Some(id) = self.sessions.get(&from).and_then(|s| s.call) else {
            return out.refuse(from, Request::Candidate, Reason::NotInCall, "not in a call");
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        out.trace.clone_from(&call.trace);
        if from == call.callee {
            // The caller has had its peer connection since it sent the offer.
            return out.send(call.caller, Event::Candidate(candidate));
        }
        if call.ring_deadline.is_none() {
            return out.send(call.callee, Event::Candidate(candidate));
        }
        if call.to_callee.len() >= self.limits.max_buffered_candidates {
            let message = format!(
                "more than {} candidates before the call was answered",
                self.limits.max_buffered_candidates
            );
            return out.refuse(from, Request::Candidate, Reason::TooManyCandidates, message);
        }
        call.to_callee.push(candidate);
    }

    fn stop(&mut self, out: &mut Out, from: SessionKey) {
        if !self.end_call_of(out, from, Reason::HangUp, "remote user hanged out") {
            out.refuse(from, Request::Stop, Reason::NotInCall, "not in a call");
        }
    }

    fn closed(&mut self, out: &mut Out, now: Instant, from: SessionKey) {
        self.end_call_of(
            out,
            from,
            Reason::PeerDisconnected,
            "remote user disconnected",
        );
        let Some(session) = self.sessions.remove(&from) else {
            return;
        };
        if let Some(name) = session.name {
            self.presence.suspend(&name, from);
            self.timers
                .insert((now + self.limits.resume_grace, Timer::Grace(name)));
        }
    }

    fn ring_timeout(&mut self, out: &mut Out, id: CallId) {
        let Some(call) = self.end_call(id) else {
            return;
        };
        out.trace.clone_from(&call.trace);
        out.refuse(
            call.caller,
            Request::Call,
            Reason::Timeout,
            format!("User {} did not answer", call.callee_name),
        );
        out.send(
            call.callee,
            Event::StopCommunication {
                reason: Reason::Timeout,
                message: "the call was not answered in time".into(),
                call: id,
            },
        );
    }

    // === helpers ===

    fn call_of(&self, session: SessionKey) -> Option<(CallId, &Call)> {
        let id = self.sessions.get(&session)?.call?;
        Some((id, self.calls.get(&id)?))
    }

    /// Ends `session`'s call, telling the other party why. Returns whether there was one.
    fn end_call_of(
        &mut self,
        out: &mut Out,
        session: SessionKey,
        reason: Reason,
        message: &str,
    ) -> bool {
        let Some((id, _)) = self.call_of(session) else {
            return false;
        };
        let Some(call) = self.end_call(id) else {
            return false;
        };
        let peer = if call.caller == session {
            call.callee
        } else {
            call.caller
        };
        let outer = std::mem::replace(&mut out.trace, call.trace.clone());
        out.send(
            peer,
            Event::StopCommunication {
                reason,
                message: message.into(),
                call: id,
            },
        );
        out.trace = outer;
        true
    }

    /// Removes a call and its timer, and frees both parties.
    fn end_call(&mut self, id: CallId) -> Option<Call> {
        let call = self.calls.remove(&id)?;
        if let Some(deadline) = call.ring_deadline {
            self.timers.remove(&(deadline, Timer::Ring(id)));
        }
        for party in [call.caller, call.callee] {
            if let Some(session) = self.sessions.get_mut(&party)
                && session.call == Some(id)
            {
                session.call = None;
            }
        }
        Some(call)
    }
}

#[cfg(test)]
mod tests;
