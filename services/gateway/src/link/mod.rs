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
//! Every queue is bounded in bytes as well as in messages: a session's queue (and all of them
//! together) closes the session that overflows it as too slow; what is in flight to a replica
//! is bounded so a frozen one cannot hold the gateway's memory, and what cannot be sent then is
//! refused, or held for the next replica when it must not be lost (a socket closing, a
//! registration, a hang-up).
//! (Over 300 lines: the routing table and what happens to unacknowledged messages belong
//! together.)

mod mailbox;
mod replica;
mod view;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use prost::Message as _;

use stunner_proto::signaling::v1::{
    self as pb, GatewayMessage, SessionMessage, gateway_message::Body as Up,
    session_message::Body as Down,
};
use svc_common::auth::Bearer;
use tokio::sync::mpsc;

use mailbox::Mailbox;
use view::{Position, View};

pub use replica::run;

/// Bytes a session's queue may hold before the session is closed as too slow.
const SESSION_BYTES: usize = 1 << 20;
/// Bytes every session's queue may hold together.
const ALL_SESSIONS_BYTES: usize = 256 << 20;
/// Bytes sent to one replica and not acknowledged yet: beyond it the replica is not keeping
/// up (or is frozen), and messages are refused rather than queued.
const IN_FLIGHT_BYTES: usize = 8 << 20;
/// Bytes of must-not-lose messages held while no replica can take them.
const HELD_BYTES: usize = 16 << 20;

/// Why the server ended a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The browser did not read its messages fast enough.
    TooSlow,
}

/// A session's end of the table: its queue of deliveries, which tells it when it was ended.
pub struct SessionHandle {
    mailbox: Arc<Mailbox>,
}

impl SessionHandle {
    pub fn reason(&self) -> Option<Ended> {
        self.mailbox.ended_for()
    }

    /// The next message for the session; `None` once it was ended.
    pub async fn recv(&mut self) -> Option<Box<SessionMessage>> {
        self.mailbox.recv().await
    }

    /// Completes once the session was ended; for use while not receiving.
    pub async fn ended(&self) {
        self.mailbox.ended().await;
    }
}

struct Entry {
    mailbox: Arc<Mailbox>,
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
    /// Every message sent and not acknowledged yet, by sequence number and size.
    in_flight: VecDeque<(u64, usize)>,
    in_flight_bytes: usize,
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
    /// Messages that must not be lost, lost with a replica (or refused by every one) while no
    /// other could take them: sent as soon as one can.
    resend: Vec<(u64, GatewayMessage)>,
    resend_bytes: usize,
    /// Bytes in every session's queue.
    all_queued: Arc<AtomicUsize>,
    /// Bounds hit: sessions closed as too slow, messages refused by a replica not keeping up,
    /// held messages dropped.
    overflows: Arc<Overflows>,
}

/// How often each bound was hit.
#[derive(Default)]
pub struct Overflows {
    pub to_browsers: AtomicU64,
    pub to_signaling: AtomicU64,
    pub held: AtomicU64,
}

/// Bytes queued, for metrics.
pub struct Queued {
    pub to_browsers: usize,
    pub to_signaling: usize,
    pub held: usize,
}

pub struct Link {
    /// This gateway instance, as signaling knows it (random per start).
    id: String,
    state: Mutex<State>,
    session_queue: usize,
    /// The services' shared token, presented to every replica.
    bearer: Bearer,
}

impl Link {
    pub fn new(session_queue: usize, bearer: Bearer) -> Arc<Self> {
        Arc::new(Self {
            id: svc_common::random_hex(8),
            state: Mutex::default(),
            session_queue,
            bearer,
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

    /// Bytes queued now.
    pub fn queued(&self) -> Queued {
        let state = self.state();
        Queued {
            to_browsers: state.all_queued.load(Ordering::Relaxed),
            to_signaling: state.replicas.values().map(|r| r.in_flight_bytes).sum(),
            held: state.resend_bytes,
        }
    }

    /// How often each bound was hit.
    pub fn overflows(&self) -> Arc<Overflows> {
        self.state().overflows.clone()
    }

    /// Adds a session to the routing table.
    pub fn open(&self, session: u64) -> SessionHandle {
        let mut state = self.state();
        let mailbox = Mailbox::new(self.session_queue, state.all_queued.clone());
        state.sessions.insert(
            session,
            Entry {
                mailbox: mailbox.clone(),
                home: None,
                last_seq: 0,
                view: View::default(),
            },
        );
        SessionHandle { mailbox }
    }

    pub fn close(&self, session: u64) {
        self.state().sessions.remove(&session);
    }

    /// Queues a message for signaling; `false` if no replica can take it now and it is not one
    /// to hold until one can.
    pub fn send(&self, mut message: GatewayMessage) -> bool {
        let mut state = self.state();
        let session = message.session_id;
        if let Some(entry) = state.sessions.get_mut(&session)
            && let Some(body) = &message.body
        {
            entry.view.sent(body);
        }
        let sent = state
            .home(session)
            .is_some_and(|home| state.send_to(home, session, &mut message));
        sent || state.hold(session, message)
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
        let bytes = message.encoded_len();
        if replica.in_flight_bytes + bytes > IN_FLIGHT_BYTES {
            self.overflows.to_signaling.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        message.seq = replica.seq + 1;
        let unacked = unacked(message);
        if upstream.try_send(message.clone()).is_err() {
            self.overflows.to_signaling.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        replica.seq += 1;
        replica.in_flight.push_back((replica.seq, bytes));
        replica.in_flight_bytes += bytes;
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
        if entry.mailbox.push(message) {
            return;
        }
        if let Some(entry) = self.sessions.remove(&session) {
            tracing::warn!(session, "browser too slow to read its messages; closing");
            self.overflows.to_browsers.fetch_add(1, Ordering::Relaxed);
            entry.mailbox.end(Ended::TooSlow);
        }
    }

    /// Keeps a message no replica could take, if it must not be lost, for the next one that
    /// can; `false` if it is not kept.
    fn hold(&mut self, session: u64, message: GatewayMessage) -> bool {
        if !must_not_be_lost(&message) {
            return false;
        }
        let bytes = message.encoded_len();
        if self.resend_bytes + bytes > HELD_BYTES {
            self.overflows.held.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                session,
                "a message for signaling was dropped: too many held while no replica could take them"
            );
            return false;
        }
        self.resend_bytes += bytes;
        self.resend.push((session, message));
        true
    }

    /// What could not be sent (or re-sent when its replica was lost), now that one is attached.
    fn resend_held(&mut self) {
        self.resend_bytes = 0;
        for (session, mut message) in std::mem::take(&mut self.resend) {
            let sent = self
                .home(session)
                .is_some_and(|home| self.send_to(home, session, &mut message));
            if !sent {
                self.resend_bytes += message.encoded_len();
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
                    if !sent && !self.hold(session, *message) {
                        tracing::warn!(
                            session,
                            "a candidate for signaling was lost with its replica and no other can take it"
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

/// Messages whose effect must not be lost (a name let go, a call ended, a name claimed): held
/// while no replica can take them. A candidate is not: a late one is worthless.
fn must_not_be_lost(message: &GatewayMessage) -> bool {
    matches!(
        message.body,
        Some(Up::Closed(_) | Up::Lost(_) | Up::Register(_) | Up::Stop(_))
    )
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
        // A description answered twice would confuse the pages' negotiation.
        Up::Negotiate(_) => pb::Request::Negotiate,
        Up::Hello(_) | Up::Subscribe(_) | Up::Received(_) => return None,
    };
    Some(Unacked::Tell(request))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change completes under the lock; a panic cannot leave half of one behind.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
