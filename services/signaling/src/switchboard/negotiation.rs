//! Renegotiation: a new session description (an ICE restart with fresh TURN credentials, after
//! a network change or a lost TURN server) relayed to the other party of a call that is up,
//! when both pages can renegotiate. Offers and answers take the same path; which side gives
//! way when both offer at once was settled when the call was set up (the callee is polite).

use super::*;
use crate::vocabulary::Description;

impl<D: Directory> Switchboard<D> {
    pub(super) async fn negotiate(
        &self,
        out: &mut Out,
        from: SessionKey,
        user: Option<&Name>,
        description: Description,
    ) -> Result<()> {
        let not_in_call = "not in a call that is up";
        let refuse = |out: &mut Out, reason, message: &str| {
            out.refuse(from, Request::Negotiate, reason, message.to_owned());
        };
        if description.sdp.is_empty() {
            refuse(
                out,
                Reason::NotSupported,
                "a description needs a type (offer or answer) and an sdp",
            );
            return Ok(());
        }
        let Some(me) = user else {
            refuse(out, Reason::NotInCall, not_in_call);
            return Ok(());
        };
        let leg = self
            .directory
            .load(me)
            .await?
            .filter(|r| r.held_by(from))
            .and_then(|r| r.call)
            .filter(|leg| !leg.ringing() && !leg.flushing);
        let Some(leg) = leg else {
            refuse(out, Reason::NotInCall, not_in_call);
            return Ok(());
        };
        out.trace.clone_from(&leg.trace);
        let peer = self.directory.load(&leg.peer).await?;
        let Some(peer) = peer.filter(|p| p.leg(leg.id).is_some()) else {
            refuse(out, Reason::NotInCall, not_in_call);
            return Ok(());
        };
        if !peer.extensions {
            let message = format!("{}'s page cannot renegotiate the call", leg.peer);
            refuse(out, Reason::NotSupported, &message);
            return Ok(());
        }
        match peer.route().filter(|route| route.call == leg.id) {
            Some(route) => out.send(
                route.holder,
                Event::Negotiate {
                    call: leg.id,
                    description,
                },
            ),
            // Away (reconnecting): a stale description is worse than none; the page tries
            // again once its media fails to come back.
            None => {
                let message = format!("{} is reconnecting; try again", leg.peer);
                refuse(out, Reason::Unavailable, &message);
            }
        }
        Ok(())
    }
}
