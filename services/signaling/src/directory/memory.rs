//! The directory in this process's memory: for one signaling replica (the default, and the local
//! stack's). Every operation completes under one lock, never held across an await, so it is
//! atomic by construction and never unavailable.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Mutex, MutexGuard},
};

use super::{Change, Counts, Directory, Inbound, InboxSink, Refused, Result, Timer};
use crate::{
    name::Name,
    record::{Role, Route, UserRecord},
    vocabulary::{Delivery, GatewayId, SessionKey, Timestamp},
};

pub struct MemoryDirectory {
    state: Mutex<State>,
    /// Random per process: a restarted replica is a new store.
    epoch: String,
}

impl Default for MemoryDirectory {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            epoch: svc_common::random_hex(8),
        }
    }
}

#[derive(Default)]
struct State {
    users: HashMap<Name, UserRecord>,
    timers: BTreeSet<(Timestamp, Timer)>,
    timer_at: HashMap<Timer, Timestamp>,
    sinks: HashMap<GatewayId, InboxSink>,
    tracked: HashMap<GatewayId, HashSet<Name>>,
    seen: HashMap<GatewayId, Timestamp>,
}

impl MemoryDirectory {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every operation completes under the lock, so a panic in one cannot leave a
        // half-applied change behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Directory for MemoryDirectory {
    async fn load(&self, name: &Name) -> Result<Option<UserRecord>> {
        Ok(self.lock().users.get(name).cloned())
    }

    async fn update<T, F>(&self, name: &Name, mut change: F) -> Result<T>
    where
        T: Send,
        F: FnMut(Option<&UserRecord>) -> Change<T> + Send,
    {
        let mut state = self.lock();
        Ok(match change(state.users.get(name)) {
            Change::Keep(value) => value,
            Change::Put(record, value) => {
                state.users.insert(name.clone(), record);
                value
            }
            Change::Delete(value) => {
                state.users.remove(name);
                value
            }
        })
    }

    async fn route(&self, name: &Name) -> Result<Option<Route>> {
        Ok(self.lock().users.get(name).and_then(UserRecord::route))
    }

    async fn deliver(&self, deliveries: &[Delivery]) -> Result<()> {
        let mut state = self.lock();
        for delivery in deliveries {
            let gateway = delivery.to.gateway;
            let Some(inbox) = state.sinks.get(&gateway) else {
                tracing::debug!(%gateway, "delivery for a gateway with no stream here; dropped");
                continue;
            };
            let inbound = Inbound {
                position: None,
                message: crate::wire::session_message(delivery),
            };
            match inbox.sink.try_send(inbound) {
                Ok(()) => {}
                Err(Refused::Full) => {
                    // The gateway cannot keep up: cut its stream (it reconnects, and its
                    // sessions carry on) rather than grow without bound or drop silently.
                    tracing::error!(%gateway, "gateway stream too slow; cutting it off");
                    inbox.overflow.cancel();
                    state.sinks.remove(&gateway);
                }
                Err(Refused::Closed) => {
                    state.sinks.remove(&gateway);
                }
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        gateway: GatewayId,
        _from: Option<String>,
        sink: InboxSink,
    ) -> Result<()> {
        if let Some(old) = self.lock().sinks.insert(gateway, sink) {
            old.cut.cancel();
        }
        Ok(())
    }

    async fn received(&self, _gateway: GatewayId, _position: &str) -> Result<()> {
        Ok(())
    }

    /// Deliveries here go straight to a gateway's stream, with no inbox to read again.
    async fn redeliver(&self, _from: SessionKey, _to: SessionKey) -> Result<usize> {
        Ok(0)
    }

    async fn schedule(&self, at: Timestamp, timer: Timer) -> Result<()> {
        let mut state = self.lock();
        if let Some(old) = state.timer_at.insert(timer.clone(), at) {
            state.timers.remove(&(old, timer.clone()));
        }
        state.timers.insert((at, timer));
        Ok(())
    }

    async fn cancel(&self, timer: &Timer) -> Result<()> {
        let mut state = self.lock();
        if let Some(at) = state.timer_at.remove(timer) {
            state.timers.remove(&(at, timer.clone()));
        }
        Ok(())
    }

    async fn due(&self, now: Timestamp) -> Result<Vec<Timer>> {
        let mut state = self.lock();
        let mut due = Vec::new();
        while let Some((at, _)) = state.timers.first()
            && *at <= now
        {
            let Some((_, timer)) = state.timers.pop_first() else {
                break;
            };
            state.timer_at.remove(&timer);
            due.push(timer);
        }
        Ok(due)
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        self.lock().timers.first().map(|(at, _)| *at)
    }

    fn knows_deadlines(&self) -> bool {
        true
    }

    async fn track(&self, gateway: GatewayId, name: &Name, held: bool) -> Result<()> {
        let mut state = self.lock();
        let names = state.tracked.entry(gateway).or_default();
        if held {
            names.insert(name.clone());
        } else {
            names.remove(name);
            if names.is_empty() {
                state.tracked.remove(&gateway);
            }
        }
        Ok(())
    }

    async fn seen(&self, gateway: GatewayId, now: Timestamp) -> Result<()> {
        self.lock().seen.insert(gateway, now);
        Ok(())
    }

    async fn lost_gateways(&self, before: Timestamp) -> Result<Vec<GatewayId>> {
        let mut state = self.lock();
        let lost: Vec<GatewayId> = state
            .seen
            .iter()
            .filter(|(_, at)| **at < before)
            .map(|(gateway, _)| *gateway)
            .collect();
        for gateway in &lost {
            state.seen.remove(gateway);
        }
        Ok(lost)
    }

    async fn tracked(&self, gateway: GatewayId) -> Result<Vec<Name>> {
        let names = self.lock().tracked.remove(&gateway).unwrap_or_default();
        Ok(names.into_iter().collect())
    }

    async fn epoch(&self) -> Result<String> {
        Ok(self.epoch.clone())
    }

    async fn renew(&self, _gateway: GatewayId) -> Result<()> {
        Ok(())
    }

    fn shared(&self) -> bool {
        false
    }

    fn problem(&self) -> Option<String> {
        None
    }

    fn counts(&self) -> Counts {
        let state = self.lock();
        Counts {
            names: state.users.len(),
            sessions: state.users.values().filter(|u| u.holder.is_some()).count(),
            calls: state
                .users
                .values()
                .filter(|u| u.call.as_ref().is_some_and(|leg| leg.role == Role::Callee))
                .count(),
        }
    }
}
