//! Names: registration and resume, disconnects and their grace period.

use super::*;

impl<D: Directory> Switchboard<D> {
    pub(super) async fn register(
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
        if self.leave(out, now, me, |holder| holder == from).await? {
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
