//! Names: registration and resume, disconnects and their grace period.
//! (Over 300 lines: the claim rule and its reassertion are one rule, kept together.)

use super::*;
use crate::vocabulary::CallState;

impl<D: Directory> Switchboard<D> {
    pub(super) async fn register(
        &self,
        out: &mut Out,
        now: Timestamp,
        from: SessionKey,
        user: Option<&Name>,
        request: Registration,
    ) -> Result<()> {
        // A gateway asserting a registration again knows the session by its name already.
        if let Some(current) =
            user.filter(|u| request.reassert.is_none() || u.as_str() != request.name)
        {
            let message = format!("already registered as {current}");
            out.refuse(from, Request::Register, Reason::AlreadyRegistered, message);
            return Ok(());
        }
        let name = match Name::parse(&request.name) {
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
        let fresh = svc_common::random_hex(16);
        let ring_timeout = self.limits.ring_timeout;
        let claim = self
            .directory
            .update(&name, |current| {
                claim(current, from, &request, &fresh, now, ring_timeout)
            })
            .await?;
        let Claim::Granted {
            token,
            displaced,
            previous,
            ended,
            rejoined,
            pending,
            resumed_epoch,
        } = claim
        else {
            let (reason, message) = if request.reassert.is_some() {
                // Asserted again after the store forgot it, but a stranger took it meanwhile:
                // the stranger keeps it, this session is told.
                let message = format!("{name} was taken by someone else while signaling was away");
                (Reason::Replaced, message)
            } else {
                (Reason::NameTaken, format!("the name {name} is taken"))
            };
            out.refuse(from, Request::Register, reason, message);
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
        if let Some(leg) = &rejoined {
            out.trace.clone_from(&leg.trace);
        }
        out.send(
            from,
            Event::Registered {
                name,
                resume_token: token,
                call: rejoined.as_ref().map(Leg::state),
            },
        );
        if rejoined.is_some()
            && let Some(previous) = previous.filter(|p| *p != from)
        {
            // What was sent to the previous session and its gateway may not have passed on (a
            // gateway lost with its socket) comes again, after the registration, before what
            // was held since.
            self.flush(out).await?;
            self.directory.redeliver(previous, from).await?;
        }
        for event in pending {
            out.send(from, event);
        }
        Ok(())
    }

    /// The session's socket went away without closing: its name and call are kept for the
    /// grace period, for a resume to rejoin.
    pub(super) async fn lost(
        &self,
        out: &mut Out,
        now: Timestamp,
        from: SessionKey,
        user: Option<&Name>,
    ) -> Result<()> {
        let Some(me) = user else {
            return Ok(());
        };
        if self
            .leave(out, now, me, Leaving::KeepingTheCall, |holder| {
                holder == from
            })
            .await?
        {
            self.directory.track(from.gateway, me, false).await?;
        }
        Ok(())
    }

    pub(super) async fn closed(
        &self,
        out: &mut Out,
        now: Timestamp,
        from: SessionKey,
        user: Option<&Name>,
    ) -> Result<()> {
        let Some(me) = user else {
            return Ok(());
        };
        if self
            .leave(out, now, me, Leaving::EndingTheCall, |holder| {
                holder == from
            })
            .await?
        {
            self.directory.track(from.gateway, me, false).await?;
        }
        Ok(())
    }

    pub(super) async fn grace_over(&self, out: &mut Out, name: &Name, epoch: u64) -> Result<()> {
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
}

/// A registration, as asked.
pub struct Registration {
    pub name: String,
    pub token: Option<String>,
    /// The call a resume rejoins.
    pub rejoin: Option<CallId>,
    /// Asserted again by the session's gateway after the store forgot it, with its call.
    pub reassert: Option<Option<CallState>>,
    /// The page speaks the protocol's extensions.
    pub extensions: bool,
}

/// What a claim on a name came to.
// Returned once per claim and consumed at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Claim {
    Granted {
        token: String,
        displaced: Option<SessionKey>,
        /// The session that held the name before this claim (live or gone).
        previous: Option<SessionKey>,
        /// The call the name was in, ended by this claim.
        ended: Option<Leg>,
        /// The call the name was in, rejoined by this claim.
        rejoined: Option<Leg>,
        /// To deliver after the registration.
        pending: Vec<Event>,
        /// The disconnect this claim resumes.
        resumed_epoch: Option<u64>,
    },
    Taken,
}

/// The rule for a claim on a name: a free name (or one whose grace period is over) is
/// granted; the holder asking again gets it again; the name's token takes it over (a resume,
/// a reload) and is replaced by a fresh one, rejoining the call it was in if the page asks for
/// that call; anything else finds it taken. A gateway asserting a registration the store forgot recreates it with the token
/// and call it had.
fn claim(
    current: Option<&UserRecord>,
    from: SessionKey,
    request: &Registration,
    fresh: &str,
    now: Timestamp,
    ring_timeout: std::time::Duration,
) -> Change<Claim> {
    let token = request.token.as_deref().filter(|t| !t.is_empty());
    let new_record = || {
        let mut record = UserRecord::new(from, fresh.to_owned());
        record.extensions = request.extensions;
        record
    };
    match current {
        None => Change::Put(new_record(), Claim::fresh(fresh)),
        Some(record) if record.expired(now) && request.reassert.is_none() => {
            Change::Put(new_record(), Claim::fresh(fresh))
        }
        // The same session asking again (its gateway re-sent the request, or asserts it).
        Some(record) if record.held_by(from) => Change::Keep(Claim::Granted {
            token: record.token.clone(),
            displaced: None,
            previous: None,
            ended: None,
            rejoined: record.call.clone(),
            pending: Vec::new(),
            resumed_epoch: None,
        }),
        Some(record) if token.is_some_and(|t| token_matches(t, &record.token)) => {
            let mut record = record.clone();
            // Every resume rotates the token: one seen on the wire is worthless after it.
            fresh.clone_into(&mut record.token);
            // The page that resumes may not be the one that left (a reload of another page).
            record.extensions = request.extensions;
            let resumed_epoch = Some(record.epoch);
            let previous = record.holder.or(record.last_holder);
            let displaced = record.take_over(from);
            let wanted = request
                .rejoin
                .or_else(|| request.reassert.clone().flatten().map(|c| c.id));
            let pending = std::mem::take(&mut record.pending);
            let (rejoined, ended, pending) = match record.call.take() {
                Some(leg) if Some(leg.id) == wanted => {
                    record.call = Some(leg.clone());
                    (Some(leg), None, pending)
                }
                // Not rejoining: the news of an old call only matters to a page that thinks it
                // is still in one (it asked to rejoin), and only how it ended.
                leg => (None, leg, endings(pending, wanted.is_some())),
            };
            let claim = Claim::Granted {
                token: record.token.clone(),
                displaced,
                previous,
                ended,
                rejoined,
                pending,
                resumed_epoch,
            };
            Change::Put(record, claim)
        }
        Some(_) => Change::Keep(Claim::Taken),
    }
    .or_reassert(current, from, request, fresh, now, ring_timeout)
}

impl Change<Claim> {
    /// A reassertion of a name the store no longer has (or whose grace is over) recreates it
    /// as it was: its token, its call.
    fn or_reassert(
        self,
        current: Option<&UserRecord>,
        from: SessionKey,
        request: &Registration,
        fresh: &str,
        now: Timestamp,
        ring_timeout: std::time::Duration,
    ) -> Change<Claim> {
        let Some(call) = &request.reassert else {
            return self;
        };
        if current.is_some_and(|record| !record.expired(now)) {
            return self;
        }
        let token = request
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| fresh.to_owned());
        let mut record = UserRecord::new(from, token.clone());
        record.extensions = request.extensions;
        record.call = call.as_ref().map(|call| Leg {
            id: call.id,
            peer: call.peer.clone(),
            role: call.role,
            ringing_until: (!call.up).then(|| now + ring_timeout),
            placed: now,
            buffered: Vec::new(),
            flushing: false,
            trace: None,
        });
        let claim = Claim::Granted {
            token,
            displaced: None,
            previous: None,
            ended: None,
            rejoined: record.call.clone(),
            pending: Vec::new(),
            resumed_epoch: None,
        };
        Change::Put(record, claim)
    }
}

/// Of what was held for a user, what tells of a call ending (when `wanted`), in order.
fn endings(pending: Vec<Event>, wanted: bool) -> Vec<Event> {
    if !wanted {
        return Vec::new();
    }
    pending
        .into_iter()
        .filter(|event| {
            matches!(
                event,
                Event::StopCommunication { .. }
                    | Event::Refused {
                        request: Request::Call,
                        ..
                    }
            )
        })
        .collect()
}

impl Claim {
    fn fresh(token: &str) -> Self {
        Claim::Granted {
            token: token.to_owned(),
            displaced: None,
            previous: None,
            ended: None,
            rejoined: None,
            pending: Vec::new(),
            resumed_epoch: None,
        }
    }
}
