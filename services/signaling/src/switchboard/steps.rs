//! The steps commands are made of: leaving, telling a peer (at its session, or held for it),
//! ending a peer's leg, handing deliveries over early, and the leg cache of candidates.

use super::*;

impl<D: Directory> Switchboard<D> {
    pub(super) fn cached_leg(&self, session: SessionKey) -> Option<Leg> {
        lock(&self.legs).get(&session).cloned()
    }

    pub(super) fn cache_leg(&self, session: SessionKey, leg: &Leg) {
        let mut leg = leg.clone();
        leg.buffered = Vec::new();
        let mut legs = lock(&self.legs);
        // Sessions that moved to another replica leave their entry here; bounded all the same.
        if legs.len() >= MAX_CACHED_LEGS {
            legs.clear();
        }
        legs.insert(session, leg);
    }

    pub(super) fn forget_leg(&self, session: SessionKey) {
        lock(&self.legs).remove(&session);
    }

    /// Hands what is collected so far to the directory, now.
    pub(super) async fn flush(&self, out: &mut Out) -> Result<()> {
        let pending = &out.deliveries[out.sent..];
        self.directory.deliver(pending).await?;
        out.sent = out.deliveries.len();
        Ok(())
    }

    /// `name`'s session leaves, if `is_holder` says it holds the name: its grace period starts
    /// and its call, if any, ends for the peer. Returns whether it left.
    pub(super) async fn leave(
        &self,
        out: &mut Out,
        now: Timestamp,
        name: &Name,
        how: Leaving,
        is_holder: impl Fn(SessionKey) -> bool + Send + Sync,
    ) -> Result<bool> {
        let until = now + self.limits.resume_grace;
        let gone = self
            .directory
            .update(name, |current| match current {
                Some(record) if record.holder.is_some_and(&is_holder) => {
                    let mut record = record.clone();
                    let left = match how {
                        Leaving::EndingTheCall => record.leave(until),
                        Leaving::KeepingTheCall => (record.go_away(until), None),
                    };
                    Change::Put(record, Some(left))
                }
                _ => Change::Keep(None),
            })
            .await?;
        let Some((epoch, leg)) = gone else {
            return Ok(false);
        };
        self.left(out, now, name, epoch, leg).await?;
        Ok(true)
    }

    /// `name` went away (disconnect `epoch`): its grace period starts and its call, if any,
    /// ends for the peer.
    pub(super) async fn left(
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
    pub(super) async fn end_peer_leg(
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
    pub(super) async fn tell(
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
    pub(super) async fn drop_leg(&self, name: &Name, id: CallId) -> Result<()> {
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

impl<T> Change<T> {
    pub(super) fn map<U>(self, f: impl FnOnce(T) -> U) -> Change<U> {
        match self {
            Change::Keep(value) => Change::Keep(f(value)),
            Change::Put(record, value) => Change::Put(record, f(value)),
            Change::Delete(value) => Change::Delete(f(value)),
        }
    }
}

/// The record change that tells a user in call `id` something: `change` applied to its leg,
/// and the event held for it if it is away.
pub(super) fn deliver_or_hold(
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
pub(super) fn in_call(record: &UserRecord, now: Timestamp) -> bool {
    record.call.as_ref().is_some_and(|leg| {
        leg.role == Role::Callee
            || leg
                .ringing_until
                .is_none_or(|until| now < until + STALE_RINGING)
    })
}
