//! The directory: where names, their calls and their sessions' whereabouts live, and how a
//! delivery reaches a session whichever replica its gateway is attached to. It is async and
//! fallible because the shared implementation is a network store (Redis); "the store is
//! unavailable" is an outcome every caller handles (the browser is refused with reason
//! `unavailable`, and nothing else changes).
//!
//! Every change goes through [`Directory::update`]: one record, changed atomically by a pure
//! function of its current value, retried by the store when another replica changed it first.
//! That is all the switchboard needs for races to be settled by the store, and it keeps every
//! atomic step inside one key (one hash slot, for Redis Cluster).

pub mod memory;
pub mod outbox;
pub mod redis;

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::{
    name::Name,
    record::{Route, UserRecord},
    vocabulary::{CallId, Delivery, GatewayId, SessionKey, Timestamp},
};

pub use memory::MemoryDirectory;
pub use outbox::{Outbox, Refused, outbox};
pub use redis::{RedisDirectory, StoreUrl};

/// What [`Directory::update`] does with the record, and the value it returns.
// Returned and consumed at once, never stored: boxing the record would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Change<T> {
    /// Leave the record as it is (no write).
    Keep(T),
    /// Store this record.
    Put(UserRecord, T),
    /// Remove the record: the name is free.
    Delete(T),
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("the presence store is unavailable: {0}")]
    Unavailable(String),
    #[error("the record of {0} kept changing while it was being updated")]
    Contended(Name),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A deadline the switchboard acts on, kept by the store so that any replica fires it (the one
/// that set it may be gone by then).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// The call `call` to `callee` has rung long enough.
    Ring { callee: Name, call: CallId },
    /// `name`'s grace period after disconnect number `epoch` is over.
    Grace { name: Name, epoch: u64 },
}

/// What a subscribed gateway stream is sent: deliveries, as they go on the wire, each with its
/// position in the gateway's inbox where the store has one (Redis), so a gateway that moves to
/// another replica carries on from where it was.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    pub position: Option<String>,
    pub message: stunner_proto::signaling::v1::SessionMessage,
}

/// Where a gateway's deliveries go on this replica, until `cut` (the gateway's inbox is read
/// elsewhere now). A gateway that falls too far behind has its stream ended (`overflow`): it
/// reconnects, and its sessions carry on.
#[derive(Clone)]
pub struct InboxSink {
    pub sink: Outbox,
    pub cut: CancellationToken,
    pub overflow: CancellationToken,
}

/// Names, sessions and calls at `now`, for metrics (approximate where the store is shared).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub names: usize,
    pub sessions: usize,
    pub calls: usize,
}

/// The directory's operations. Implementations: [`MemoryDirectory`] (one replica, the default)
/// and the Redis one (several replicas).
pub trait Directory: Send + Sync + 'static {
    /// The record of `name`, if it is registered (or held for a resume).
    fn load(&self, name: &Name) -> impl Future<Output = Result<Option<UserRecord>>> + Send;

    /// Changes the record of `name` atomically: `change` sees the current record and says what
    /// to do; it may be called again if another replica changed the record meanwhile, so it
    /// must be a pure function of its argument.
    fn update<T, F>(&self, name: &Name, change: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send,
        F: FnMut(Option<&UserRecord>) -> Change<T> + Send;

    /// Where `name` can be reached for its call, if the call is up and the user is here
    /// (see [`UserRecord::route`]): a cheap read for relaying candidates.
    fn route(&self, name: &Name) -> impl Future<Output = Result<Option<Route>>> + Send;

    /// Hands deliveries to their sessions' gateways, keeping their order per gateway.
    fn deliver(&self, deliveries: &[Delivery]) -> impl Future<Output = Result<()>> + Send;

    /// Sends `gateway`'s deliveries to `sink` from now on (from `from`, a position in its
    /// inbox, where the store keeps one), instead of wherever they went before.
    fn subscribe(
        &self,
        gateway: GatewayId,
        from: Option<String>,
        sink: InboxSink,
    ) -> impl Future<Output = Result<()>> + Send;

    /// `gateway` has received its inbox up to `position`: what is older may go.
    fn received(
        &self,
        gateway: GatewayId,
        position: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Delivers to `to` again what a call in progress sent `from` (candidates, its end) that its
    /// gateway may never have passed on (after the position it last said it received);
    /// returns how many. For a session rejoining its call elsewhere after its gateway was lost.
    fn redeliver(
        &self,
        from: SessionKey,
        to: SessionKey,
    ) -> impl Future<Output = Result<usize>> + Send;

    /// Sets `timer` for `at`.
    fn schedule(&self, at: Timestamp, timer: Timer) -> impl Future<Output = Result<()>> + Send;

    /// Drops `timer`, if set.
    fn cancel(&self, timer: &Timer) -> impl Future<Output = Result<()>> + Send;

    /// Takes the timers due at `now`: each is handed to exactly one caller, across replicas.
    fn due(&self, now: Timestamp) -> impl Future<Output = Result<Vec<Timer>>> + Send;

    /// The earliest timer set, where the store can tell cheaply (see
    /// [`Directory::knows_deadlines`]).
    fn next_deadline(&self) -> Option<Timestamp>;

    /// Whether [`Directory::next_deadline`] knows every timer; if not (timers set by other
    /// replicas), the timers are polled.
    fn knows_deadlines(&self) -> bool;

    /// Records that `gateway` holds a session registered as `name` (or no longer does), so the
    /// sessions of a gateway that vanishes can be found.
    fn track(
        &self,
        gateway: GatewayId,
        name: &Name,
        held: bool,
    ) -> impl Future<Output = Result<()>> + Send;

    /// `gateway` is attached and alive at `now`.
    fn seen(&self, gateway: GatewayId, now: Timestamp) -> impl Future<Output = Result<()>> + Send;

    /// Takes the gateways last seen before `before`: each is handed to exactly one caller,
    /// across replicas.
    fn lost_gateways(
        &self,
        before: Timestamp,
    ) -> impl Future<Output = Result<Vec<GatewayId>>> + Send;

    /// Takes the names `gateway`'s sessions held (see [`Directory::track`]).
    fn tracked(&self, gateway: GatewayId) -> impl Future<Output = Result<Vec<Name>>> + Send;

    /// Names, sessions and calls, for metrics.
    fn counts(&self) -> Counts;

    /// The store's identity: it changes when the store loses everything (a restarted
    /// in-memory replica, a Redis that came back empty), so gateways assert their sessions
    /// again.
    fn epoch(&self) -> impl Future<Output = Result<String>> + Send;

    /// Renews the leases of `gateway`'s keys, where the store has leases.
    fn renew(&self, gateway: GatewayId) -> impl Future<Output = Result<()>> + Send;

    /// Whether the state is shared with other replicas (a drain can hand sessions over).
    fn shared(&self) -> bool;

    /// Why the store cannot be used right now, if it cannot (for readiness).
    fn problem(&self) -> Option<String>;
}
