//! Calls: placing, answering, candidates, hanging up, and ringing too long.

use super::*;

impl<D: Directory> Switchboard<D> {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call(
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
            flushing: false,
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
        // The caller's candidates follow at once: they find its leg here rather than in the
        // store (a cache, checked against the peer's record as ever).
        self.cache_leg(from, &leg(&callee, Role::Caller));
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
                self.forget_leg(from);
                let _ = self.drop_leg(me, id).await;
                return Err(error);
            }
        };
        // Answered here, without disturbing the callee.
        self.forget_leg(from);
        self.drop_leg(me, id).await?;
        out.refuse(from, Request::Call, refusal.0, refusal.1);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn answer(
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
                if accept {
                    // Up, but the caller's candidates keep being buffered until everything
                    // buffered so far is on its way, after `startCommunication`.
                    leg.ringing_until = None;
                    leg.flushing = true;
                }
                // The leg as written (when accepted), for the candidates that follow.
                let answered = (leg.clone(), buffered, record.extensions);
                if accept {
                    record.call = Some(leg);
                }
                Change::Put(record, Some(answered))
            })
            .await?;
        let Some((leg, buffered, extensions)) = answered else {
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
        // Renegotiation (an ICE restart) needs both pages to speak it.
        let negotiation = extensions
            && self
                .directory
                .load(&leg.peer)
                .await?
                .is_some_and(|caller| caller.extensions);
        let accepted = Event::CallAccepted {
            sdp_answer,
            call: leg.id,
            rang_for: now.saturating_since(leg.placed),
            negotiation,
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
        self.cache_leg(from, &leg);
        let start = Event::StartCommunication {
            call: leg.id,
            negotiation,
        };
        out.send(from, start);
        for candidate in buffered {
            out.send(from, Event::Candidate(candidate));
        }
        self.finish_flushing(out, from, me, leg.id).await
    }

    /// Delivers what is buffered in `me`'s leg of call `id` until nothing is, then lets the
    /// caller's candidates go straight through. Each round is handed to the store before the
    /// leg stops buffering, so a candidate that goes straight through (possibly from another
    /// replica) can never overtake `startCommunication` or a buffered candidate.
    async fn finish_flushing(
        &self,
        out: &mut Out,
        from: SessionKey,
        me: &Name,
        id: CallId,
    ) -> Result<()> {
        loop {
            self.flush(out).await?;
            let more = self
                .directory
                .update(me, |current| {
                    let Some(record) = current.filter(|r| r.leg(id).is_some_and(|l| l.flushing))
                    else {
                        return Change::Keep(Vec::new());
                    };
                    let mut record = record.clone();
                    let Some(leg) = record.call.as_mut() else {
                        return Change::Keep(Vec::new());
                    };
                    let buffered = std::mem::take(&mut leg.buffered);
                    leg.flushing = !buffered.is_empty();
                    Change::Put(record, buffered)
                })
                .await?;
            if more.is_empty() {
                return Ok(());
            }
            for candidate in more {
                out.send(from, Event::Candidate(candidate));
            }
        }
    }

    pub(super) async fn stop(
        &self,
        out: &mut Out,
        from: SessionKey,
        user: Option<&Name>,
    ) -> Result<()> {
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

    pub(super) async fn ring_timeout(
        &self,
        out: &mut Out,
        callee: &Name,
        id: CallId,
    ) -> Result<()> {
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
}
