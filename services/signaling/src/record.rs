//! What the store keeps per registered name, and the pure rules that change it.
//!
//! A call lives in the records of its two parties, one [`Leg`] each, rather than in a record of
//! its own: every step of the state machine then changes **one** record atomically (one hash
//! slot in Redis Cluster), and a race on a name (two claims, two callers ringing one callee, a
//! resume racing an expiry) is settled by whichever atomic change lands first. The callee's leg
//! is authoritative while a call rings: it holds the ring deadline and the caller's buffered
//! candidates, and answering changes it first.

use serde::{Deserialize, Serialize};

use crate::{
    name::Name,
    vocabulary::{CallId, CallState, Event, SessionKey, Timestamp},
};

pub use crate::vocabulary::Role;

/// A registered name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The live session holding the name; `None` while it is away (within the grace period).
    pub holder: Option<SessionKey>,
    /// While away: the session that held it, whose undelivered messages a resume picks up.
    #[serde(default)]
    pub last_holder: Option<SessionKey>,
    /// Presented to take the name back after a disconnect.
    pub token: String,
    /// Counts the disconnects: a grace timer names the one it belongs to, so a timer left over
    /// from an earlier disconnect never frees a name resumed since.
    pub epoch: u64,
    /// While away: when the name is freed.
    pub away_until: Option<Timestamp>,
    /// The call this user is in, ringing or up.
    pub call: Option<Leg>,
    /// What arrived for this user while away, delivered in order when it resumes.
    pub pending: Vec<Event>,
    /// The page speaks the protocol's extensions (renegotiation).
    #[serde(default)]
    pub extensions: bool,
}

/// One party's side of a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub id: CallId,
    pub peer: Name,
    pub role: Role,
    /// `Some(deadline)` while ringing.
    pub ringing_until: Option<Timestamp>,
    /// When the call was placed.
    pub placed: Timestamp,
    /// Callee only, while ringing: the caller's candidates, in order.
    pub buffered: Vec<String>,
    /// Callee only, just answered: what was buffered is being delivered; the caller's
    /// candidates are still buffered until it is.
    #[serde(default)]
    pub flushing: bool,
    /// The W3C trace context of the call.
    pub trace: Option<String>,
}

/// How many events, and how many bytes of them, are kept for a user who is away.
pub const MAX_PENDING: usize = 64;
pub const MAX_PENDING_BYTES: usize = 256 * 1024;

impl UserRecord {
    /// A fresh claim by `holder`.
    pub fn new(holder: SessionKey, token: String) -> Self {
        Self {
            holder: Some(holder),
            last_holder: None,
            token,
            epoch: 0,
            away_until: None,
            call: None,
            pending: Vec::new(),
            extensions: false,
        }
    }

    /// Whether the name is free for anybody at `now`: its grace period is over.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.holder.is_none() && self.away_until.is_some_and(|until| until <= now)
    }

    /// Where this user can be reached for its call, while the call is up and the user is here.
    pub fn route(&self) -> Option<Route> {
        let leg = self.call.as_ref()?;
        (!leg.ringing() && !leg.flushing).then_some(Route {
            call: leg.id,
            holder: self.holder?,
        })
    }

    /// Whether `session` holds the name.
    pub fn held_by(&self, session: SessionKey) -> bool {
        self.holder == Some(session)
    }

    /// The leg of call `id`, if this user is in it.
    pub fn leg(&self, id: CallId) -> Option<&Leg> {
        self.call.as_ref().filter(|leg| leg.id == id)
    }

    /// The holder goes away until `until`: the name is kept for its token, the call is kept
    /// (the caller decides whether to end it). Returns the new epoch.
    pub fn go_away(&mut self, until: Timestamp) -> u64 {
        self.last_holder = self.holder.take().or(self.last_holder);
        self.away_until = Some(until);
        self.epoch += 1;
        self.epoch
    }

    /// The holder leaves with its call, until `until`: returns the disconnect's epoch and the
    /// call it was in, for the caller to end.
    pub fn leave(&mut self, until: Timestamp) -> (u64, Option<Leg>) {
        let epoch = self.go_away(until);
        (epoch, self.call.take())
    }

    /// `holder` takes the name (a resume, a reload); returns the live session it displaced.
    pub fn take_over(&mut self, holder: SessionKey) -> Option<SessionKey> {
        let displaced = self.holder.replace(holder).filter(|old| *old != holder);
        self.last_holder = None;
        self.away_until = None;
        // Invalidates the grace timer of the disconnect being resumed.
        self.epoch += 1;
        displaced
    }

    /// Where an event for this user goes: its live session, or (away) kept for its return.
    pub fn reach(&mut self, event: impl FnOnce() -> Event) -> Reach {
        if let Some(holder) = self.holder {
            Reach::Live(holder)
        } else if self.hold(event()) {
            Reach::Held
        } else {
            Reach::Dropped
        }
    }

    /// Keeps `event` for when the user is back; `false` (and nothing kept) when too much is
    /// held already.
    pub fn hold(&mut self, event: Event) -> bool {
        let bytes: usize = self.pending.iter().map(Event::weight).sum();
        if self.pending.len() >= MAX_PENDING || bytes + event.weight() > MAX_PENDING_BYTES {
            return false;
        }
        self.pending.push(event);
        true
    }
}

impl Leg {
    pub fn ringing(&self) -> bool {
        self.ringing_until.is_some()
    }

    /// This leg, as its party sees it.
    pub fn state(&self) -> CallState {
        CallState {
            id: self.id,
            peer: self.peer.clone(),
            role: self.role,
            up: !self.ringing(),
        }
    }
}

/// Where a user in a call that is up can be reached: what relaying a candidate needs, kept
/// apart from the record so a shared store can answer it without reading the whole record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub call: CallId,
    pub holder: SessionKey,
}

impl Route {
    /// `<call>|<gateway>|<session>`.
    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}",
            self.call, self.holder.gateway, self.holder.session
        )
    }

    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('|');
        let route = Route {
            call: parts.next()?.parse().ok()?,
            holder: SessionKey {
                gateway: parts.next()?.parse().ok()?,
                session: parts.next()?.parse().ok()?,
            },
        };
        parts.next().is_none().then_some(route)
    }
}

/// Where an event for a user went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// To its live session.
    Live(SessionKey),
    /// Kept for when it is back.
    Held,
    /// It is away and too much is kept for it already.
    Dropped,
}

/// Constant-time comparison of a presented token with the record's.
pub fn token_matches(presented: &str, token: &str) -> bool {
    presented.len() == token.len()
        && presented
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::{CallId, GatewayId};

    const A: SessionKey = SessionKey {
        gateway: GatewayId(1),
        session: 1,
    };
    const B: SessionKey = SessionKey {
        gateway: GatewayId(2),
        session: 1,
    };

    #[test]
    fn away_resume_and_expiry() {
        let mut record = UserRecord::new(A, "t".into());
        assert!(record.held_by(A));
        let epoch = record.go_away(Timestamp(10_000));
        assert_eq!(epoch, 1);
        assert!(!record.expired(Timestamp(9_999)));
        assert!(record.expired(Timestamp(10_000)));
        assert_eq!(record.take_over(B), None, "nobody live was displaced");
        assert_eq!(record.epoch, 2, "the old grace timer no longer applies");
        assert!(
            !record.expired(Timestamp(20_000)),
            "a resumed name does not expire"
        );
        assert_eq!(record.take_over(A), Some(B), "a reload displaces");
    }

    #[test]
    fn held_events_are_bounded() {
        let mut record = UserRecord::new(A, "t".into());
        for n in 0..MAX_PENDING {
            assert!(record.hold(Event::Candidate(format!("c{n}"))));
        }
        assert!(!record.hold(Event::Candidate("one too many".into())));
        let mut record = UserRecord::new(A, "t".into());
        assert!(!record.hold(Event::Candidate("x".repeat(MAX_PENDING_BYTES))));
    }

    #[test]
    fn routes_round_trip() {
        let route = Route {
            call: CallId(0xabc),
            holder: B,
        };
        assert_eq!(Route::decode(&route.encode()), Some(route));
        assert_eq!(Route::decode(""), None);
        assert_eq!(Route::decode("1|2"), None);
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
    }
}
