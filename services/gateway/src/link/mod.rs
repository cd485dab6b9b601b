//! The gateway's streams to signaling: one `Attach` stream per signaling replica
//! ([`replica`]), each carrying the sessions homed on that replica, and the table that routes
//! what comes back to each session's bounded queue.
//!
//! Sessions are spread over the replicas (round robin) and keep their home until it goes away
//! or drains; then their next message goes to another replica, with nothing lost on the way:
//! the session's state is in the store, not in the replica. One replica at a time reads this
//! gateway's inbox (deliveries addressed to its sessions) and forwards it on its stream; when
//! it goes away another carries on from the last position received (duplicates are dropped).
//!
//! A browser never learns that a replica went away: its socket stays open. Messages a lost
//! replica had not acknowledged are re-sent when they must not be lost (a socket closing, a
//! registration) and otherwise answered with `unavailable`. When the store itself forgets
//! (a restarted in-memory replica, a Redis that came back empty), every session's name and
//! call are asserted again from what this gateway knows of them ([`view`]).
//! (Over 300 lines: the routing table and what happens to unacknowledged messages belong
//! together.)

mod replica;
mod view;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use stunner_proto::signaling::v1::{
    self as pb, GatewayMessage, SessionMessage, gateway_message::Body as Up,
    session_message::Body as Down,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use view::{Position, View};

pub use replica::run;

/// Why the server ended a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The browser did not read its messages fast enough.
    TooSlow,
}

/// A session's end of the table: its queue, and how it learns it was ended.
pub struct SessionHandle {
    pub inbox: mpsc::Receiver<Box<SessionMessage>>,
    pub ended: CancellationToken,
    reason: Arc<Mutex<Option<Ended>>>,
}

impl SessionHandle {
    pub fn reason(&self) -> Option<Ended> {
        *lock(&self.reason)
    }
}

struct Entry {
    // Boxed: the channel allocates slots in blocks of 32, so an idle session that has received
    // anything would otherwise hold 32 whole messages' worth of memory.
    inbox: mpsc::Sender<Box<SessionMessage>>,
    ended: CancellationToken,
    reason: Arc<Mutex<Option<Ended>>>,
    /// The replica this session's messages go to.
    home: Option<u64>,
    /// The last message sent to its home (a stream's sequence number).
    last_seq: u64,
    view: View,
}

/// A signaling replica, as this gateway sees it.
struct Replica {
    endpoint: String,
    /// While attached: where messages for it go.
    upstream: Option<mpsc::Sender<GatewayMessage>>,
    draining: bool,
    /// The last sequence number sent, and the last one it acknowledged.
    seq: u64,
    acked: u64,
    /// Sent and not acknowledged yet: sequence number, session, and the message itself when it
    /// must be re-sent if the replica is lost.
    unacked: VecDeque<(u64, u64, Unacked)>,
}

/// What to do with a message a lost replica never acknowledged.
enum Unacked {
    /// Send it again elsewhere: its effect must not be lost, and doing it twice does no harm.
    Resend(Box<GatewayMessage>),
    /// Tell the browser it may not have been delivered.
    Tell(pb::Request),
}

#[derive(Default)]
struct State {
    sessions: HashMap<u64, Entry>,
    replicas: BTreeMap<u64, Replica>,
    /// Round robin over the replicas for new homes.
    turn: usize,
    /// The replica reading this gateway's inbox.
    reader: Option<u64>,
    /// The last inbox position delivered.
    position: Option<Position>,
    /// The last position told to the reader.
    reported: Option<Position>,
    /// The store's epoch, as the replicas last said.
    epoch: Option<String>,
    /// Messages that must not be lost, lost with a replica while no other was attached: sent
    /// as soon as one is.
    resend: Vec<(u64, GatewayMessage)>,
}

pub struct Link {
    /// This gateway instance, as signaling knows it (random per start).
    id: String,
    state: Mutex<State>,
    session_queue: usize,
}

impl Link {
    pub fn new(session_queue: usize) -> Arc<Self> {
        Arc::new(Self {
            id: svc_common::random_hex(8),
            state: Mutex::default(),
            session_queue,
        })
    }

    /// Attached to at least one replica that is not draining.
    pub fn is_connected(&self) -> bool {
        self.replicas_attached() > 0
    }

    /// The replicas attached that are not draining.
    pub fn replicas_attached(&self) -> usize {
        self.state()
            .replicas
            .values()
            .filter(|r| r.upstream.is_some() && !r.draining)
            .count()
    }

    pub fn sessions(&self) -> usize {
        self.state().sessions.len()
    }

    /// Adds a session to the routing table.
    pub fn open(&self, session: u64) -> SessionHandle {
        let (inbox, rx) = mpsc::channel(self.session_queue);
        let ended = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        self.state().sessions.insert(
            session,
            Entry {
                inbox,
                ended: ended.clone(),
                reason: reason.clone(),
                home: None,
                last_seq: 0,
                view: View::default(),
            },
        );
        SessionHandle {
            inbox: rx,
            ended,
            reason,
        }
    }

    pub fn close(&self, session: u64) {
        self.state().sessions.remove(&session);
    }

    /// Queues a message for signaling; `false` if no replica can take it.
    pub fn send(&self, mut message: GatewayMessage) -> bool {
        let mut state = self.state();
        let session = message.session_id;
        if let Some(entry) = state.sessions.get_mut(&session)
            && let Some(body) = &message.body
        {
            entry.view.sent(body);
        }
        let Some(home) = state.home(session) else {
            return false;
        };
        state.send_to(home, session, &mut message)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl State {
    /// Where `session`'s next message goes: its home while that is attached (and, when it
    /// drains, until the replica has acknowledged everything the session sent it, so its
    /// messages are handled in order); otherwise a new home.
    fn home(&mut self, session: u64) -> Option<u64> {
        let (home, last_seq) = self
            .sessions
            .get(&session)
            .map_or((None, 0), |e| (e.home, e.last_seq));
        if let Some(key) = home
            && let Some(replica) = self.replicas.get(&key)
            && replica.upstream.is_some()
            && (!replica.draining || replica.acked < last_seq)
        {
            return Some(key);
        }
        let attached = |draining: bool| -> Vec<u64> {
            self.replicas
                .iter()
                .filter(|(_, r)| r.upstream.is_some() && r.draining == draining)
                .map(|(key, _)| *key)
                .collect()
        };
        // A draining replica still works until it exits: when every replica drains (a rollout
        // faster than this gateway's reconnection), it is better than none.
        let mut candidates = attached(false);
        if candidates.is_empty() {
            candidates = attached(true);
        }
        if candidates.is_empty() {
            return None;
        }
        self.turn = self.turn.wrapping_add(1);
        let key = candidates[self.turn % candidates.len()];
        if let Some(entry) = self.sessions.get_mut(&session) {
            entry.home = Some(key);
        }
        Some(key)
    }

    /// Sends `message` on replica `key`'s stream, numbered, remembered until acknowledged.
    fn send_to(&mut self, key: u64, session: u64, message: &mut GatewayMessage) -> bool {
        let Some(replica) = self.replicas.get_mut(&key) else {
            return false;
        };
        let Some(upstream) = &replica.upstream else {
            return false;
        };
        message.seq = replica.seq + 1;
        let unacked = unacked(message);
        if upstream.try_send(message.clone()).is_err() {
            return false;
        }
        replica.seq += 1;
        if let Some(unacked) = unacked {
            replica.unacked.push_back((replica.seq, session, unacked));
        }
        if let Some(entry) = self.sessions.get_mut(&session) {
            entry.last_seq = replica.seq;
        }
        true
    }

    /// A delivery from replica `from`: to its session's queue, once (an inbox position seen
    /// before is a duplicate from a reader that was being replaced).
    fn deliver(&mut self, message: SessionMessage) {
        if let Some(position) = Position::parse(&message.position) {
            if self.position.is_some_and(|seen| position <= seen) {
                return;
            }
            self.position = Some(position);
        }
        let session = message.session_id;
        let Some(entry) = self.sessions.get_mut(&session) else {
            return;
        };
        if let Some(body) = &message.body {
            entry.view.received(body);
        }
        if entry.inbox.try_send(Box::new(message)).is_err()
            && let Some(entry) = self.sessions.remove(&session)
        {
            tracing::warn!(session, "browser too slow to read its messages; closing");
            *lock(&entry.reason) = Some(Ended::TooSlow);
            entry.ended.cancel();
        }
    }

    /// What could not be re-sent when its replica was lost, now that one is attached.
    fn resend_held(&mut self) {
        for (session, mut message) in std::mem::take(&mut self.resend) {
            let sent = self
                .home(session)
                .is_some_and(|home| self.send_to(home, session, &mut message));
            if !sent {
                self.resend.push((session, message));
            }
        }
    }

    /// Every registered session's name (and call) again, after the store forgot them.
    fn reassert(&mut self) {
        let claims: Vec<(u64, GatewayMessage)> = self
            .sessions
            .iter()
            .filter_map(|(session, entry)| Some((*session, entry.view.reassertion(*session)?)))
            .collect();
        tracing::info!(
            sessions = claims.len(),
            "the store was reset; asserting names and calls again"
        );
        for (session, mut claim) in claims {
            if let Some(home) = self.home(session) {
                self.send_to(home, session, &mut claim);
            }
        }
    }

    /// Messages replica `key` will never acknowledge: re-sent elsewhere, or their browser told.
    fn unacknowledged(&mut self, key: u64) {
        let Some(replica) = self.replicas.get_mut(&key) else {
            return;
        };
        let lost: Vec<(u64, u64, Unacked)> = replica.unacked.drain(..).collect();
        for (_, session, unacked) in lost {
            match unacked {
                Unacked::Resend(mut message) => {
                    let sent = self
                        .home(session)
                        .is_some_and(|home| self.send_to(home, session, &mut message));
                    if !sent {
                        tracing::warn!(
                            session,
                            "a message for signaling was lost with its replica and no other can take it"
                        );
                    }
                }
                Unacked::Tell(request) => {
                    let refusal = SessionMessage {
                        session_id: session,
                        body: Some(Down::Refused(pb::Refused {
                            request: request.into(),
                            reason: pb::Reason::Unavailable.into(),
                            message: "signaling restarted before handling this; it may not have been delivered".into(),
                        })),
                        ..Default::default()
                    };
                    self.deliver(refusal);
                }
            }
        }
    }
}

/// What to keep of a message until its replica acknowledges it.
fn unacked(message: &GatewayMessage) -> Option<Unacked> {
    let request = match message.body.as_ref()? {
        // Their effect must not be lost, and a second one does no harm (a candidate given
        // twice is added once).
        Up::Closed(_) | Up::Lost(_) | Up::Register(_) | Up::Stop(_) | Up::Candidate(_) => {
            return Some(Unacked::Resend(Box::new(message.clone())));
        }
        // A second one would be refused (already in a call, no such call): the browser is
        // told instead, and may try again.
        Up::Call(_) => pb::Request::Call,
        Up::Answer(_) => pb::Request::Answer,
        Up::Hello(_) | Up::Subscribe(_) | Up::Received(_) => return None,
    };
    Some(Unacked::Tell(request))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change completes under the lock; a panic cannot leave half of one behind.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
