//! Candidates: relayed along a call that is up (by the peer's route alone), buffered in the
//! callee's leg while it rings, held for a peer who is away.

use super::*;

impl<D: Directory> Switchboard<D> {
    /// A session's candidates, in order. Several at once (they queued behind each other) take
    /// one route lookup while the call is up; otherwise each goes its own way.
    pub(super) async fn candidates(
        &self,
        out: &mut Out,
        from: SessionKey,
        user: Option<&Name>,
        candidates: Vec<String>,
    ) -> Result<()> {
        let Some(me) = user else {
            for _ in &candidates {
                out.refuse(from, Request::Candidate, Reason::NotInCall, "not in a call");
            }
            return Ok(());
        };
        if candidates.len() > 1
            && let Some(peer) = self.peer_on_call(out, from, me).await?
        {
            for candidate in candidates {
                out.send(peer, Event::Candidate(candidate));
            }
            return Ok(());
        }
        for candidate in candidates {
            self.candidate(out, from, me, candidate).await?;
        }
        Ok(())
    }

    /// Where the peer of `from`'s call is reached, if the call is up (by the leg as last read).
    async fn peer_on_call(
        &self,
        out: &mut Out,
        from: SessionKey,
        me: &Name,
    ) -> Result<Option<SessionKey>> {
        let leg = match self.cached_leg(from) {
            Some(leg) => leg,
            None => match self.read_leg(from, me).await? {
                Some(leg) => leg,
                None => return Ok(None),
            },
        };
        out.trace.clone_from(&leg.trace);
        let route = self.directory.route(&leg.peer).await?;
        Ok(route.filter(|r| r.call == leg.id).map(|r| r.holder))
    }

    /// `from`'s leg as the store has it (if `from` still holds `me`), kept for its next
    /// candidates.
    async fn read_leg(&self, from: SessionKey, me: &Name) -> Result<Option<Leg>> {
        let record = self.directory.load(me).await?;
        let leg = record.filter(|r| r.held_by(from)).and_then(|r| r.call);
        if let Some(leg) = &leg {
            self.cache_leg(from, leg);
        }
        Ok(leg)
    }

    async fn candidate(
        &self,
        out: &mut Out,
        from: SessionKey,
        me: &Name,
        candidate: String,
    ) -> Result<()> {
        // The sender's leg as last read, if it was: candidates are most of the traffic, and the
        // peer's record (read anyway) says whether the call is still on. A stale one is read
        // again once.
        let mut cached = self.cached_leg(from);
        let told = loop {
            let fresh = cached.is_none();
            let leg = match cached.take() {
                Some(leg) => leg,
                None => match self.read_leg(from, me).await? {
                    Some(leg) => leg,
                    None => break None,
                },
            };
            out.trace.clone_from(&leg.trace);
            // Most candidates are sent while the call is up: the peer's route is all they need.
            if let Some(route) = self.directory.route(&leg.peer).await?
                && route.call == leg.id
            {
                out.send(route.holder, Event::Candidate(candidate));
                return Ok(());
            }
            let told = if leg.role == Role::Caller {
                self.to_callee(out, from, &leg, candidate.clone()).await?
            } else {
                let event = Event::Candidate(candidate.clone());
                self.tell(out, &leg.peer, leg.id, LegChange::Keep, event)
                    .await?
            };
            if told.is_some() || fresh {
                break told.map(|told| (told, leg.peer));
            }
            self.forget_leg(from);
        };
        match told {
            Some((Told::Live(_) | Told::Held, _)) => {}
            Some((Told::Dropped, peer)) => {
                let message = format!("{peer} is away and cannot take more now");
                out.refuse(from, Request::Candidate, Reason::TooManyCandidates, message);
            }
            None => {
                self.forget_leg(from);
                out.refuse(from, Request::Candidate, Reason::NotInCall, "not in a call");
            }
        }
        Ok(())
    }

    /// A caller's candidate: buffered in the callee's leg while the call rings, delivered once
    /// it is up.
    pub(super) async fn to_callee(
        &self,
        out: &mut Out,
        from: SessionKey,
        leg: &Leg,
        candidate: String,
    ) -> Result<Option<Told>> {
        let (max, max_bytes) = (
            self.limits.max_buffered_candidates,
            self.limits.max_buffered_bytes,
        );
        let outcome = self
            .directory
            .update(&leg.peer, |current| {
                let Some((record, theirs)) = current.and_then(|r| Some((r, r.leg(leg.id)?))) else {
                    return Change::Keep(Buffer::Gone);
                };
                if !theirs.ringing() && !theirs.flushing {
                    return deliver_or_hold(record, LegChange::Keep, leg.id, || {
                        Event::Candidate(candidate.clone())
                    })
                    .map(Buffer::Told);
                }
                let bytes: usize = theirs.buffered.iter().map(String::len).sum();
                if theirs.buffered.len() >= max || bytes + candidate.len() > max_bytes {
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
                let message = format!(
                    "more than {max} candidates (or {max_bytes} bytes of them) before the call was answered"
                );
                out.refuse(from, Request::Candidate, Reason::TooManyCandidates, message);
                Some(Told::Held)
            }
        })
    }
}

/// What became of a caller's candidate.
enum Buffer {
    Gone,
    Buffered,
    Full,
    Told(Told),
}
