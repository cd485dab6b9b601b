//! Who holds which name. The call logic reaches names only through [`Presence`], so a shared
//! store (for several signaling replicas) can replace the in-memory map without touching it.

use std::collections::HashMap;

use crate::{name::Name, switchboard::SessionKey};

/// The name registry.
pub trait Presence {
    /// Claims `name` for `holder`. A free name is granted; a name held by another session, or
    /// reserved for a disconnected one, is granted only against its resume `token`, in which
    /// case the previous live holder (if any) is returned as displaced.
    fn claim(
        &mut self,
        name: &Name,
        holder: SessionKey,
        token: Option<&str>,
    ) -> Result<Claim, Taken>;
    /// The live session holding `name`.
    fn resolve(&self, name: &Name) -> Option<SessionKey>;
    /// Frees `name` if `holder` holds it.
    fn release(&mut self, name: &Name, holder: SessionKey);
    /// `holder` went away: `name` stays reserved for its resume token until [`Presence::expire`].
    fn suspend(&mut self, name: &Name, holder: SessionKey);
    /// The grace period is over: frees `name` unless it was resumed meanwhile.
    fn expire(&mut self, name: &Name);
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A granted claim.
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    /// Presents this to reclaim the name after a disconnect.
    pub token: String,
    /// The live session that held the name before (a page reload that beat the old socket's close).
    pub displaced: Option<SessionKey>,
}

/// The name is held by somebody else.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken;

/// The default registry, for one signaling replica.
#[derive(Default)]
pub struct MemoryPresence {
    names: HashMap<Name, Entry>,
}

struct Entry {
    /// `None` while reserved for a disconnected session.
    holder: Option<SessionKey>,
    token: String,
}

impl Presence for MemoryPresence {
    fn claim(
        &mut self,
        name: &Name,
        holder: SessionKey,
        token: Option<&str>,
    ) -> Result<Claim, Taken> {
        match self.names.get_mut(name) {
            None => {
                let token = new_token();
                self.names.insert(
                    name.clone(),
                    Entry {
                        holder: Some(holder),
                        token: token.clone(),
                    },
                );
                Ok(Claim {
                    token,
                    displaced: None,
                })
            }
            Some(entry) if token.is_some_and(|t| constant_time_eq(t, &entry.token)) => {
                let displaced = entry.holder.replace(holder).filter(|old| *old != holder);
                Ok(Claim {
                    token: entry.token.clone(),
                    displaced,
                })
            }
            Some(_) => Err(Taken),
        }
    }

    fn resolve(&self, name: &Name) -> Option<SessionKey> {
        self.names.get(name)?.holder
    }

    fn release(&mut self, name: &Name, holder: SessionKey) {
        if self.resolve(name) == Some(holder) {
            self.names.remove(name);
        }
    }

    fn suspend(&mut self, name: &Name, holder: SessionKey) {
        if let Some(entry) = self.names.get_mut(name)
            && entry.holder == Some(holder)
        {
            entry.holder = None;
        }
    }

    fn expire(&mut self, name: &Name) {
        if self
            .names
            .get(name)
            .is_some_and(|entry| entry.holder.is_none())
        {
            self.names.remove(name);
        }
    }

    fn len(&self) -> usize {
        self.names.len()
    }
}

/// 128 random bits, hex: unguessable, so a name cannot be stolen by guessing its token.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not survivable for a service issuing secrets.
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("no OS randomness: {e}"));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SessionKey = SessionKey {
        gateway: 1,
        session: 1,
    };
    const B: SessionKey = SessionKey {
        gateway: 1,
        session: 2,
    };

    #[test]
    fn claim_resume_and_expire() {
        let mut presence = MemoryPresence::default();
        let alice = Name::parse("alice").expect("valid");
        let claim = presence.claim(&alice, A, None).expect("free");
        assert_eq!(claim.token.len(), 32);
        assert_eq!(presence.claim(&alice, B, None), Err(Taken));
        assert_eq!(presence.claim(&alice, B, Some("wrong")), Err(Taken));

        presence.suspend(&alice, A);
        assert_eq!(presence.resolve(&alice), None);
        assert_eq!(
            presence.claim(&alice, B, None),
            Err(Taken),
            "reserved during the grace"
        );
        let resumed = presence
            .claim(&alice, B, Some(&claim.token))
            .expect("resumed");
        assert_eq!(
            resumed,
            Claim {
                token: claim.token.clone(),
                displaced: None
            }
        );
        presence.expire(&alice);
        assert_eq!(
            presence.resolve(&alice),
            Some(B),
            "a resumed name does not expire"
        );

        // A live holder is displaced by its own token (a page reload).
        let again = presence
            .claim(&alice, A, Some(&claim.token))
            .expect("takeover");
        assert_eq!(again.displaced, Some(B));

        presence.suspend(&alice, A);
        presence.expire(&alice);
        assert!(presence.is_empty());
        assert!(presence.claim(&alice, B, None).is_ok(), "free again");
        presence.release(&alice, A);
        assert_eq!(
            presence.resolve(&alice),
            Some(B),
            "only the holder releases"
        );
        presence.release(&alice, B);
        assert!(presence.is_empty());
    }
}
