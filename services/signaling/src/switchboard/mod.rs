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

use std::{collections::HashMap, time::Duration};

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
/// The most legs kept for candidates (a cache: emptied when full).
const MAX_CACHED_LEGS: usize = 200_000;

pub struct Switchboard<D> {
    directory: D,
    limits: Limits,
    /// Each session's leg as its last candidate found it (see `candidate`); dropped by any
    /// other command of the session.
    legs: std::sync::Mutex<HashMap<SessionKey, Leg>>,
}

/// Collects deliveries while one command is handled, under the trace of the call at hand.
#[derive(Default)]
struct Out {
    deliveries: Vec<Delivery>,
    trace: Option<String>,
    /// How many of `deliveries` (the first ones) were handed to the directory already.
    sent: usize,
}

/// What one command or timer produced: every delivery, in order, of which the first
/// `delivered` were handed to the directory already (the rest are the caller's to deliver).
#[derive(Debug, Default)]
pub struct Handled {
    pub deliveries: Vec<Delivery>,
    pub delivered: usize,
}

impl From<Out> for Handled {
    fn from(out: Out) -> Self {
        Handled {
            deliveries: out.deliveries,
            delivered: out.sent,
        }
    }
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

/// How a session leaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// Its socket closed: the call ends for the peer at once.
    EndingTheCall,
    /// Its socket dropped: the call goes on for the grace period, for a resume to rejoin.
    KeepingTheCall,
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
        Self {
            directory,
            limits,
            legs: Default::default(),
        }
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
    ) -> Result<Handled> {
        let mut out = Out::default();
        if !matches!(command, Command::Candidates(_)) {
            self.forget_leg(from);
        }
        match command {
            Command::Register {
                name,
                resume_token,
                rejoin,
                reassert,
                extensions,
            } => {
                let request = Registration {
                    name,
                    token: resume_token,
                    rejoin,
                    reassert,
                    extensions,
                };
                self.register(&mut out, now, from, user, request).await?;
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
            Command::Candidates(candidates) => {
                self.candidates(&mut out, from, user, candidates).await?;
            }
            Command::Negotiate(description) => {
                self.negotiate(&mut out, from, user, description).await?;
            }
            Command::Stop => self.stop(&mut out, from, user).await?,
            Command::Closed => self.closed(&mut out, now, from, user).await?,
            Command::Lost => self.lost(&mut out, now, from, user).await?,
        }
        Ok(out.into())
    }

    /// Fires every timer due at `now`.
    pub async fn expire(&self, now: Timestamp) -> Result<Handled> {
        let mut out = Out::default();
        for timer in self.directory.due(now).await? {
            out.trace = None;
            match timer {
                Timer::Ring { callee, call } => self.ring_timeout(&mut out, &callee, call).await?,
                Timer::Grace { name, epoch } => self.grace_over(&mut out, &name, epoch).await?,
            }
        }
        Ok(out.into())
    }

    /// The earliest timer, where the store can tell.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.directory.next_deadline()
    }

    /// `gateway` went away with its sessions: each of them is lost, as if its socket dropped
    /// (names and calls kept for the grace period: the browsers reconnect elsewhere, resume and
    /// rejoin).
    pub async fn gateway_gone(&self, now: Timestamp, gateway: GatewayId) -> Result<Handled> {
        let mut out = Out::default();
        for name in self.directory.tracked(gateway).await? {
            let holds = |holder: SessionKey| holder.gateway == gateway;
            self.leave(&mut out, now, &name, Leaving::KeepingTheCall, holds)
                .await?;
        }
        out.deliveries.retain(|d| d.to.gateway != gateway);
        lock(&self.legs).retain(|session, _| session.gateway != gateway);
        Ok(out.into())
    }
}

const DISCONNECTED: &str = "remote user disconnected";
const HUNG_UP: &str = "remote user hanged out";

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

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

mod calls;
mod candidates;
mod negotiation;
mod steps;

use steps::{deliver_or_hold, in_call};
mod presence;

use presence::Registration;

#[cfg(test)]
mod tests;
