//! The call state machine, server-authoritative: who is registered, who is calling whom, and
//! what each party must be told. Commands and the clock go in, deliveries come out; the state
//! lives in the [`Directory`] it is handed, and every step changes one record there atomically
//! with the pure rules of [`crate::record`] (see there why a call is kept as two legs).
//!
//! A call rings until the callee answers, then is up until either side stops or goes away.
//! The caller's ICE candidates are buffered (bounded) in the callee's leg while the call rings,
//! because the callee has no peer connection before it accepts (the tutorial's page would throw
//! on them), and are flushed in order right after `startCommunication`.
//!
//! A command touches at most two records, one after the other. Between the two another replica
//! may act; each step checks what it relies on (the holder, the call id), so the loser of a race
//! sees the winner's outcome: two callers ringing one callee both claim their own leg, then race
//! for the callee's, and the second is told busy and gives its own leg back.

use std::time::Duration;

use crate::{
    directory::{Change, Directory, Result, Timer},
    name::Name,
    record::{Leg, Reach as Told, Role, UserRecord, token_matches},
    vocabulary::{
        CallId, Command, Delivery, Event, GatewayId, Limits, Reason, Request, SessionKey, Timestamp,
    },
};

/// A caller's leg outlives its ringing deadline by this much before it is taken for stale (a
/// call whose callee could not be reached because the store failed half-way).
const STALE_RINGING: Duration = Duration::from_secs(5);

pub struct Switchboard<D> {
    directory: D,
    limits: Limits,
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

/// What to do to a peer's leg when telling it something.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LegChange {
    Keep,
    Up,
    End,
}

impl<D: Directory> Switchboard<D> {
    pub fn new(directory: D, limits: Limits) -> Self {
        Self { directory, limits }
    }

    pub fn directory(&self) -> &D {
        &self.directory
    }

    /// Handles one command from session `from`, which its gateway knows as registered under
    /// `user` (checked against the store: the holder of that name must be `from`).
    pub async fn handle(
        &self,
        now: Timestamp,
        from: SessionKey,
        user: Option<&Name>,
        command: Command,
    ) -> Result<Vec<Delivery>> {
        let mut out = Out::default();
        match command {
            Command::Register { name, resume_token } => {
                self.register(&mut out, now, from, user, &name, resume_token)
                    .await?;
            }
            Command::Call {
                to,
                sdp_offer,
                trace,
            } => {
                out.trace.clone_from(&trace);
                self.call(&mut out, now, from, user, &to, sdp_offer, trace)
                    .await?;
            }
            Command::Answer {
                from: caller,
                accept,
                sdp_answer,
            } => {
                self.answer(&mut out, now, from, user, &caller, accept, sdp_answer)
                    .await?;
            }
            Command::Candidate(candidate) => {
                self.candidate(&mut out, from, user, candidate).await?;
            }
            Command::Stop => self.stop(&mut out, from, user).await?,
            Command::Closed => self.closed(&mut out, now, from, user).await?,
        }
        Ok(out.deliveries)
    }

    /// Fires every timer due at `now`.
    pub async fn expire(&self, now: Timestamp) -> Result<Vec<Delivery>> {
        let mut out = Out::default();
        for timer in self.directory.due(now).await? {
            out.trace = None;
            match timer {
                Timer::Ring { callee, call } => self.ring_timeout(&mut out, &callee, call).await?,
                Timer::Grace { name, epoch } => self.grace_over(&mut out, &name, epoch).await?,
            }
        }
        Ok(out.deliveries)
    }

    /// The earliest timer, where the store can tell.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.directory.next_deadline()
    }

    /// `gateway` went away with its sessions: each of them is gone, as if its socket closed.
    pub async fn gateway_gone(&self, now: Timestamp, gateway: GatewayId) -> Result<Vec<Delivery>> {
        let mut out = Out::default();
        for name in self.directory.tracked(gateway).await? {
            let gone = self
                .directory
                .update(&name, |current| match current {
                    Some(record) if record.holder.is_some_and(|h| h.gateway == gateway) => {
                        let mut record = record.clone();
                        let epoch = record.go_away(now + self.limits.resume_grace);
                        let leg = record.call.take();
                        Change::Put(record, Some((epoch, leg)))
                    }
                    _ => Change::Keep(None),
                })
                .await?;
            if let Some((epoch, leg)) = gone {
                self.left(&mut out, now, &name, epoch, leg).await?;
            }
        }
        out.deliveries.retain(|d| d.to.gateway != gateway);
        Ok(out.deliveries)
    }

    // === commands ===

    async fn register(
        &self,
        out: &mut Out,
        now: Timestamp,
        from: SessionKey,
        user: Option<&Name>,
        name: &str,
        token: Option<String>,
    ) -> Result<()> {
        if let Some(current) = user {
            let message = format!("already registered as {current}");
            out.refuse(from, Request::Register, Reason::AlreadyRegistered, message);
            return Ok(());
        }
        let name = match Name::parse(name) {
            Ok(name) => name,
            Err(error) => {
                out.refuse(
                    from,
                    Request::Register,
                    Reason::InvalidName,
                    error.to_string(),
                );
                return Ok(());
            }
        };
        let token = token.filter(|t| !t.is_empty());
        let fresh = svc_common::random_hex(16);
        let claim = self
            .directory
            .update(&name, |current| match current {
                None => Change::Put(UserRecord::new(from, fresh.clone()), Claim::fresh(&fresh)),
                // A name whose grace period is over is free, whether or not its timer fired.
                Some(record) if record.expired(now) => {
                    Change::Put(UserRecord::new(from, fresh.clone()), Claim::fresh(&fresh))
                }
                // The same session asking again (its gateway re-sent the request).
                Some(record) if record.held_by(from) => Change::Keep(Claim::fresh(&record.token)),
                Some(record)
                    if token
                        .as_deref()
                        .is_some_and(|t| token_matches(t, &record.token)) =>
                {
                    let mut record = record.clone();
                    let epoch = record.epoch;
                    let displaced = record.take_over(from);
                    let ended = record.call.take();
                    let pending = std::mem::take(&mut record.pending);
                    let claim = Claim::Granted {
                        token: record.token.clone(),
                        displaced,
                        ended,
                        pending,
                        resumed_epoch: Some(epoch),
                    };
                    Change::Put(record, claim)
                }
                Some(_) => Change::Keep(Claim::Taken),
            })
            .await?;
        let Claim::Granted {
            token,
            displaced,
            ended,
            pending,
            resumed_epoch,
        } = claim
        else {
            let message = format!("the name {name} is taken");
            out.refuse(from, Request::Register, Reason::NameTaken, message);
            return Ok(());
        };
        if let Some(epoch) = resumed_epoch {
            self.directory
                .cancel(&Timer::Grace {
                    name: name.clone(),
                    epoch,
                })
                .await?;
        }
        if let Some(leg) = ended {
            // A new page (a reload) has no peer connection for the old call: end it.
            self.end_peer_leg(out, &name, &leg, Reason::PeerDisconnected, DISCONNECTED)
                .await?;
        }
        if let Some(old) = displaced {
            // The same user came back on a new connection before the old one was seen closing.
            let message = format!("{name} signed in elsewhere");
            out.refuse(old, Request::Register, Reason::Replaced, message);
        }
        self.directory.track(from.gateway, &name, true).await?;
        out.send(
            from,
            Event::Registered {
                name,
                resume_token: token,
            },
        );
        for event in pending {
            out.send(from, event);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        out: &mut Out,
        now: Timestamp,
        from: SessionKey,
        user: Option<&Name>,
        to: &str,
        sdp_offer: String,
        trace: Option<String>,
    ) -> Result<()> {
        let not_registered = "register before calling";
        let Some(me) = user else {
            out.refuse(from, Request::Call, Reason::NotRegistered, not_registered);
            return Ok(());
        };
        let not_found = || format!("User {to} is not registered");
        let callee = Name::parse(to).ok();
        let id = CallId::random();
        let deadline = now + self.limits.ring_timeout;
        let leg = |peer: &Name, role| Leg {
            id,
            peer: peer.clone(),
            role,
            ringing_until: Some(deadline),
            placed: now,
            buffered: Vec::new(),
            trace: trace.clone(),
        };
        let placed = self
            .directory
            .update(me, |current| {
                let Some(record) = current.filter(|r| r.held_by(from)) else {
                    return Change::Keep(Err((Reason::NotRegistered, not_registered.to_owned())));
                };
                if in_call(record, now) {
                    return Change::Keep(Err((Reason::AlreadyInCall, "already in a call".into())));
                }
                let Some(callee) = &callee else {
                    return Change::Keep(Err((Reason::UserNotFound, not_found())));
                };
                if callee == me {
                    let message = "you cannot call yourself".to_owned();
                    return Change::Keep(Err((Reason::SelfCall, message)));
                }
                let mut record = record.clone();
                record.call = Some(leg(callee, Role::Caller));
                Change::Put(record, Ok(()))
            })
            .await?;
        if let Err((reason, message)) = placed {
            out.refuse(from, Request::Call, reason, message);
            return Ok(());
        }
        let Some(callee) = callee else {
            return Ok(());
        };
        let rung = self
            .directory
            .update(&callee, |current| {
                let Some((record, holder)) = current
                    .filter(|r| !r.expired(now))
                    .and_then(|r| Some((r, r.holder?)))
                else {
                    return Change::Keep(Err(Reason::UserNotFound));
                };
                if in_call(record, now) {
                    return Change::Keep(Err(Reason::Busy));
                }
                let mut record = record.clone();
                record.call = Some(leg(me, Role::Callee));
                Change::Put(record, Ok(holder))
            })
            .await;
        let refusal = match rung {
            Ok(Ok(holder)) => {
                let timer = Timer::Ring {
                    callee: callee.clone(),
                    call: id,
                };
                self.directory.schedule(deadline, timer).await?;
                let event = Event::IncomingCall {
                    from: me.clone(),
                    sdp_offer,
                    call: id,
                };
                out.send(holder, event);
                return Ok(());
            }
            Ok(Err(Reason::Busy)) => (Reason::Busy, format!("User {callee} is busy")),
            Ok(Err(reason)) => (reason, not_found()),
            Err(error) => {
                // Give the caller's leg back if the store lets us; it goes stale otherwise.
                let _ = self.drop_leg(me, id).await;
                return Err(error);
            }
        };
        // Answered here, without disturbing the callee.
        self.drop_leg(me, id).await?;
        out.refuse(from, Request::Call, refusal.0, refusal.1);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        out: &mut Out,
        now: Timestamp,
        from: SessionKey,
        user: Option<&Name>,
        caller: &str,
        accept: bool,
        sdp_answer: String,
    ) -> Result<()> {
        let none = || format!("there is no incoming call from {caller} to answer");
        let Some(me) = user else {
            out.refuse(from, Request::Answer, Reason::NoSuchCall, none());
            return Ok(());
        };
        let answered = self
            .directory
            .update(me, |current| {
                let ringing = current.filter(|r| r.held_by(from)).and_then(|r| {
                    r.call.as_ref().filter(|leg| {
                        leg.role == Role::Callee && leg.ringing() && leg.peer.as_str() == caller
                    })
                });
                let (Some(record), Some(_)) = (current, ringing) else {
                    return Change::Keep(None);
                };
                let mut record = record.clone();
                let Some(mut leg) = record.call.take() else {
                    return Change::Keep(None);
                };
                let buffered = std::mem::take(&mut leg.buffered);
                let answered = (leg.clone(), buffered);
                if accept {
                    leg.ringing_until = None;
                    record.call = Some(leg);
                }
                Change::Put(record, Some(answered))
            })
            .await?;
        let Some((leg, buffered)) = answered else {
            out.refuse(from, Request::Answer, Reason::NoSuchCall, none());
            return Ok(());
        };
        out.trace.clone_from(&leg.trace);
        let timer = Timer::Ring {
            callee: me.clone(),
            call: leg.id,
        };
        self.directory.cancel(&timer).await?;
        if !accept {
            let declined = refused(Request::Call, Reason::Declined, "user declined");
            self.tell(out, &leg.peer, leg.id, LegChange::End, declined)
                .await?;
            return Ok(());
        }
        let accepted = Event::CallAccepted {
            sdp_answer,
            call: leg.id,
            rang_for: now.saturating_since(leg.placed),
        };
        let told = self
            .tell(out, &leg.peer, leg.id, LegChange::Up, accepted)
            .await?;
        if told.is_none() {
            // The caller left the call meanwhile.
            self.drop_leg(me, leg.id).await?;
            let stop = stop_event(Reason::HangUp, HUNG_UP, leg.id);
            out.send(from, stop);
            return Ok(());
        }
        out.send(from, Event::StartCommunication { call: leg.id });
        for candidate in buffered {
            out.send(from, Event::Candidate(candidate));
        }
        Ok(())
    }

    async fn candidate(
        &self,
        out: &mut Out,
        from: SessionKey,
        user: Option<&Name>,
        candidate: String,
    ) -> Result<()> {
        let leg = match user {
            Some(me) => self
                .directory
                .load(me)
                .await?
                .filter(|r| r.held_by(from))
                .and_then(|r| r.call),
            None => None,
        };
        let Some(leg) = leg else {
            out.refuse(from, Request::Candidate, Reason::NotInCall, "not in a call");
            return Ok(());
        };
        out.trace.clone_from(&leg.trace);
        let told = if leg.role == Role::Caller {
            self.to_callee(out, from, &leg, candidate).await?
        } else {
            let event = Event::Candidate(candidate);
            self.tell(out, &leg.peer, leg.id, LegChange::Keep, event)
                .await?
        };
        match told {
            Some(Told::Live(_) | Told::Held) => {}
            Some(Told::Dropped) => {
                let message = format!("{} is away and cannot take more now", leg.peer);
                out.refuse(from, Request::Candidate, Reason::TooManyCandidates, message);
            }
            None => out.refuse(from, Request::Candidate, Reason::NotInCall, "not in a call"),
        }
        Ok(())
    }

    /// A caller's candidate: buffered in the callee's leg while the call rings, delivered once
    /// it is up.
    async fn to_callee(
        &self,
        out: &mut Out,
        from: SessionKey,
        leg: &Leg,
        candidate: String,
    ) -> Result<Option<Told>> {
        let max = self.limits.max_buffered_candidates;
        let outcome = self
            .directory
            .update(&leg.peer, |current| {
                let Some((record, theirs)) = current.and_then(|r| Some((r, r.leg(leg.id)?))) else {
                    return Change::Keep(Buffer::Gone);
                };
                if !theirs.ringing() {
                    return deliver_or_hold(record, LegChange::Keep, leg.id, || {
                        Event::Candidate(candidate.clone())
                    })
                    .map(Buffer::Told);
                }
                if theirs.buffered.len() >= max {
                    return Change::Keep(Buffer::Full);
                }
                let mut record = record.clone();
                if let Some(theirs) = record.call.as_mut() {
                    theirs.buffered.push(candidate.clone());
                }
                Change::Put(record, Buffer::Buffered)
            })
            .await?;
        Ok(match outcome {
            Buffer::Gone => None,
            Buffer::Buffered => Some(Told::Held),
            Buffer::Told(told) => {
                if let Told::Live(to) = told {
                    out.send(to, Event::Candidate(candidate));
                }
                Some(told)
            }
            Buffer::Full => {
                let message = format!("more than {max} candidates before the call was answered");
                out.refuse(from, Request::Candidate, Reason::TooManyCandidates, message);
                Some(Told::Held)
            }
        })
    }

    async fn stop(&self, out: &mut Out, from: SessionKey, user: Option<&Name>) -> Result<()> {
        let leg = match user {
            Some(me) => {
                self.directory
                    .update(me, |current| match current {
                        Some(record) if record.held_by(from) && record.call.is_some() => {
                            let mut record = record.clone();
                            let leg = record.call.take();
                            Change::Put(record, leg)
                        }
                        _ => Change::Keep(None),
                    })
                    .await?
            }
            None => None,
        };
        match (user, leg) {
            (Some(me), Some(leg)) => {
                self.end_peer_leg(out, me, &leg, Reason::HangUp, HUNG_UP)
                    .await
            }
            _ => {
                out.refuse(from, Request::Stop, Reason::NotInCall, "not in a call");
                Ok(())
            }
        }
    }

    async fn closed(
        &self,
        out: &mut Out,
        now: Timestamp,
        from: SessionKey,
        user: Option<&Name>,
    ) -> Result<()> {
        let Some(me) = user else {
            return Ok(());
        };
        let gone = self
            .directory
            .update(me, |current| match current {
                Some(record) if record.held_by(from) => {
                    let mut record = record.clone();
                    let epoch = record.go_away(now + self.limits.resume_grace);
                    let leg = record.call.take();
                    Change::Put(record, Some((epoch, leg)))
                }
                _ => Change::Keep(None),
            })
            .await?;
        if let Some((epoch, leg)) = gone {
            self.directory.track(from.gateway, me, false).await?;
            self.left(out, now, me, epoch, leg).await?;
        }
        Ok(())
    }

    // === timers ===

    async fn ring_timeout(&self, out: &mut Out, callee: &Name, id: CallId) -> Result<()> {
        let event = stop_event(Reason::Timeout, "the call was not answered in time", id);
        let rung = self
            .directory
            .update(callee, |current| {
                let Some((record, leg)) = current
                    .and_then(|r| Some((r, r.leg(id)?)))
                    .filter(|(_, leg)| leg.ringing())
                else {
                    return Change::Keep(None);
                };
                let caller = (leg.peer.clone(), leg.trace.clone());
                let mut record = record.clone();
                record.call = None;
                let told = record.reach(|| event.clone());
                Change::Put(record, Some((told, caller)))
            })
            .await?;
        let Some((told, (caller, trace))) = rung else {
            return Ok(());
        };
        out.trace = trace;
        let message = format!("User {callee} did not answer");
        let timeout = refused(Request::Call, Reason::Timeout, &message);
        self.tell(out, &caller, id, LegChange::End, timeout).await?;
        if let Told::Live(holder) = told {
            out.send(holder, event);
        }
        Ok(())
    }

    async fn grace_over(&self, out: &mut Out, name: &Name, epoch: u64) -> Result<()> {
        let freed = self
            .directory
            .update(name, |current| match current {
                Some(record) if record.holder.is_none() && record.epoch == epoch => {
                    Change::Delete(Some(record.call.clone()))
                }
                _ => Change::Keep(None),
            })
            .await?;
        if let Some(Some(leg)) = freed {
            self.end_peer_leg(out, name, &leg, Reason::PeerDisconnected, DISCONNECTED)
                .await?;
        }
        Ok(())
    }

    // === helpers ===

    /// `name` went away (disconnect `epoch`): its grace period starts and its call, if any,
    /// ends for the peer.
    async fn left(
        &self,
        out: &mut Out,
        now: Timestamp,
        name: &Name,
        epoch: u64,
        leg: Option<Leg>,
    ) -> Result<()> {
        let timer = Timer::Grace {
            name: name.clone(),
            epoch,
        };
        self.directory
            .schedule(now + self.limits.resume_grace, timer)
            .await?;
        if let Some(leg) = leg {
            self.end_peer_leg(out, name, &leg, Reason::PeerDisconnected, DISCONNECTED)
                .await?;
        }
        Ok(())
    }

    /// Ends the peer's side of `me`'s call `leg`, telling it why under the call's trace.
    async fn end_peer_leg(
        &self,
        out: &mut Out,
        me: &Name,
        leg: &Leg,
        reason: Reason,
        message: &str,
    ) -> Result<()> {
        let outer = std::mem::replace(&mut out.trace, leg.trace.clone());
        if leg.ringing() {
            let callee = if leg.role == Role::Callee {
                me
            } else {
                &leg.peer
            };
            let timer = Timer::Ring {
                callee: callee.clone(),
                call: leg.id,
            };
            self.directory.cancel(&timer).await?;
        }
        let event = stop_event(reason, message, leg.id);
        self.tell(out, &leg.peer, leg.id, LegChange::End, event)
            .await?;
        out.trace = outer;
        Ok(())
    }

    /// Applies `change` to `name`'s leg of call `id` and tells them `event`: at their live
    /// session, or kept for when they are back. `None` when they are no longer in that call.
    async fn tell(
        &self,
        out: &mut Out,
        name: &Name,
        id: CallId,
        change: LegChange,
        event: Event,
    ) -> Result<Option<Told>> {
        let told = self
            .directory
            .update(name, |current| match current {
                Some(record) if record.leg(id).is_some() => {
                    deliver_or_hold(record, change, id, || event.clone()).map(Some)
                }
                _ => Change::Keep(None),
            })
            .await?;
        if let Some(Told::Live(to)) = told {
            out.send(to, event);
        }
        Ok(told)
    }

    /// Takes `name` out of call `id`, if it is still in it.
    async fn drop_leg(&self, name: &Name, id: CallId) -> Result<()> {
        self.directory
            .update(name, |current| match current {
                Some(record) if record.leg(id).is_some() => {
                    let mut record = record.clone();
                    record.call = None;
                    Change::Put(record, ())
                }
                _ => Change::Keep(()),
            })
            .await
    }
}

/// What a claim on a name came to.
enum Claim {
    Granted {
        token: String,
        displaced: Option<SessionKey>,
        /// The call the name was in, ended by this claim.
        ended: Option<Leg>,
        /// Held for the name while it was away.
        pending: Vec<Event>,
        /// The disconnect this claim resumes.
        resumed_epoch: Option<u64>,
    },
    Taken,
}

impl Claim {
    fn fresh(token: &str) -> Self {
        Claim::Granted {
            token: token.to_owned(),
            displaced: None,
            ended: None,
            pending: Vec::new(),
            resumed_epoch: None,
        }
    }
}

/// What became of a caller's candidate.
enum Buffer {
    Gone,
    Buffered,
    Full,
    Told(Told),
}

impl<T> Change<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Change<U> {
        match self {
            Change::Keep(value) => Change::Keep(f(value)),
            Change::Put(record, value) => Change::Put(record, f(value)),
            Change::Delete(value) => Change::Delete(f(value)),
        }
    }
}

/// The record change that tells a user in call `id` something: `change` applied to its leg,
/// and the event held for it if it is away.
fn deliver_or_hold(
    record: &UserRecord,
    change: LegChange,
    id: CallId,
    event: impl FnOnce() -> Event,
) -> Change<Told> {
    if change == LegChange::Keep
        && let Some(holder) = record.holder
    {
        // The common case (a candidate during a call): nothing to write.
        return Change::Keep(Told::Live(holder));
    }
    let mut record = record.clone();
    match change {
        LegChange::Keep => {}
        LegChange::Up => {
            if let Some(leg) = record.call.as_mut().filter(|leg| leg.id == id) {
                leg.ringing_until = None;
            }
        }
        LegChange::End => record.call = None,
    }
    let told = record.reach(event);
    Change::Put(record, told)
}

/// Whether `record` is in a call at `now` (a caller's leg left ringing past its deadline by a
/// half-failed call is not).
fn in_call(record: &UserRecord, now: Timestamp) -> bool {
    record.call.as_ref().is_some_and(|leg| {
        leg.role == Role::Callee
            || leg
                .ringing_until
                .is_none_or(|until| now < until + STALE_RINGING)
    })
}

const DISCONNECTED: &str = "remote user disconnected";
const HUNG_UP: &str = "remote user hanged out";

fn refused(request: Request, reason: Reason, message: &str) -> Event {
    Event::Refused {
        request,
        reason,
        message: message.to_owned(),
    }
}

fn stop_event(reason: Reason, message: &str, call: CallId) -> Event {
    Event::StopCommunication {
        reason,
        message: message.to_owned(),
        call,
    }
}

#[cfg(test)]
mod tests;
