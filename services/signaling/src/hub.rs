//! The switchboard at runtime: behind a lock (held only for the synchronous transition, never
//! across an await), with one bounded delivery queue per attached gateway stream and a task
//! that fires the switchboard's deadlines.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::Metrics,
    switchboard::{Command, Delivery, Limits, SessionKey, Switchboard},
};

/// Deliveries a gateway may fall behind by before its stream is cut (rather than growing
/// memory without bound or dropping messages silently).
pub const GATEWAY_QUEUE: usize = 65_536;

pub struct Hub {
    state: Mutex<State>,
    /// Wakes the timer task when an earlier deadline appears.
    deadline_changed: Notify,
    next_gateway: AtomicU64,
    metrics: Metrics,
}

struct State {
    board: Switchboard,
    gateways: HashMap<u64, mpsc::Sender<Delivery>>,
}

impl Hub {
    pub fn new(limits: Limits, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                board: Switchboard::new(limits),
                gateways: HashMap::new(),
            }),
            deadline_changed: Notify::new(),
            next_gateway: AtomicU64::new(1),
            metrics,
        })
    }

    /// A new gateway stream: its id and the queue of what to deliver on it.
    pub fn attach(&self) -> (u64, mpsc::Receiver<Delivery>) {
        let id = self.next_gateway.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(GATEWAY_QUEUE);
        self.lock().gateways.insert(id, tx);
        (id, rx)
    }

    /// One session's command.
    pub fn handle(&self, gateway: u64, session: u64, command: Command) {
        let mut state = self.lock();
        let before = state.board.next_deadline();
        let deliveries =
            state
                .board
                .handle(Instant::now(), SessionKey { gateway, session }, command);
        let after = state.board.next_deadline();
        self.metrics.observe(&deliveries);
        state.dispatch(deliveries);
        drop(state);
        if after.is_some() && after != before {
            self.deadline_changed.notify_one();
        }
    }

    /// The gateway stream ended: all of its sessions end.
    pub fn detach(&self, gateway: u64) {
        let mut state = self.lock();
        state.gateways.remove(&gateway);
        let deliveries = state.board.gateway_closed(Instant::now(), gateway);
        self.metrics.observe(&deliveries);
        state.dispatch(deliveries);
        drop(state);
        self.deadline_changed.notify_one();
    }

    /// (names, sessions, calls), for health and metrics.
    pub fn counts(&self) -> (usize, usize, usize) {
        let state = self.lock();
        (
            state.board.names(),
            state.board.sessions(),
            state.board.calls(),
        )
    }

    /// Fires deadlines (ring timeouts, resume grace) until `stop`.
    pub async fn run_timers(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let next = self.lock().board.next_deadline();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.deadline_changed.notified() => {}
                    () = sleep => {
                        let mut state = self.lock();
                        let deliveries = state.board.expire(Instant::now());
                        self.metrics.observe(&deliveries);
            state.dispatch(deliveries);
                    }
                }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every transition completes under the lock before it is released, so a panic in one
        // cannot leave a half-applied state behind; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn dispatch(&mut self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            let gateway = delivery.to.gateway;
            let Some(queue) = self.gateways.get(&gateway) else {
                // Its gateway detached meanwhile; detach already ended the session.
                continue;
            };
            if let Err(error) = queue.try_send(delivery) {
                // Full: the gateway cannot keep up. Cut it off; it reconnects and its
                // browsers resume, instead of messages being dropped silently.
                tracing::error!(gateway, %error, "gateway stream too slow; detaching it");
                self.gateways.remove(&gateway);
            }
        }
    }
}
