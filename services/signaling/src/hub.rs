//! The switchboard at runtime: handles each session's commands (a store failure becomes a
//! refusal with reason `unavailable`), hands the deliveries to the directory, fires the
//! switchboard's deadlines, and notices gateways that went away.

use std::{collections::HashMap, sync::Arc, time::Duration};

use stunner_proto::signaling::v1 as pb;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    directory::{Counts, Directory, InboxSink},
    metrics::Metrics,
    name::Name,
    switchboard::{Handled, Switchboard},
    vocabulary::{Command, Delivery, Event, GatewayId, Limits, Reason, SessionKey, Timestamp},
    wire,
};

/// How often an attached gateway is marked alive.
pub const SEEN_EVERY: Duration = Duration::from_secs(1);
/// A gateway not seen for this long is gone, with its sessions.
pub const LOST_AFTER: Duration = Duration::from_secs(5);
/// After the store is found to have lost its data, how long new names wait for the gateways to
/// assert the live ones again.
const REASSERT_WINDOW: Duration = Duration::from_secs(3);
/// How often the timers are looked at when the store cannot say when the next one is due.
const TIMER_POLL: Duration = Duration::from_millis(100);

pub struct Hub<D> {
    board: Switchboard<D>,
    metrics: Metrics,
    /// Wakes the timer task when an earlier deadline may have appeared.
    deadline_changed: Notify,
    /// This replica, as gateways are told.
    replica: String,
    /// The store's epoch, as last read.
    epoch: watch::Sender<String>,
    /// Cancelled when this replica starts draining.
    draining: CancellationToken,
    /// Ends of sessions the store could not take, tried again (see `run_retries`).
    goodbyes: std::sync::Mutex<Vec<(SessionKey, Name, Command)>>,
    /// When the store was last found to have lost its data.
    epoch_changed: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// A stream of each gateway attached here, for deliveries the store cannot take.
    local: std::sync::Mutex<HashMap<GatewayId, mpsc::Sender<pb::SessionMessage>>>,
    /// Gateway streams attached here, and news of their leaving.
    streams: std::sync::atomic::AtomicUsize,
    stream_left: Notify,
}

impl<D: Directory> Hub<D> {
    pub fn new(directory: D, limits: Limits, metrics: Metrics) -> Arc<Self> {
        Self::with_draining(directory, limits, metrics, CancellationToken::new())
    }

    /// A hub that starts draining with `draining`.
    pub fn with_draining(
        directory: D,
        limits: Limits,
        metrics: Metrics,
        draining: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            board: Switchboard::new(directory, limits),
            metrics,
            deadline_changed: Notify::new(),
            replica: svc_common::random_hex(4),
            epoch: watch::channel(String::new()).0,
            draining,
            goodbyes: Default::default(),
            epoch_changed: Default::default(),
            local: Default::default(),
            streams: Default::default(),
            stream_left: Notify::new(),
        })
    }

    /// A gateway stream attached; the guard counts it until it is dropped.
    pub fn stream_attached(self: &Arc<Self>) -> StreamGuard<D> {
        self.streams
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    /// Completes once no gateway stream is attached here.
    pub async fn streams_gone(&self) {
        loop {
            let left = self.stream_left.notified();
            if self.streams.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                return;
            }
            left.await;
        }
    }

    /// Whether this replica is draining (it takes no new streams).
    pub fn draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    pub fn draining_token(&self) -> CancellationToken {
        self.draining.clone()
    }

    /// The store's epoch, and its changes.
    pub fn epoch(&self) -> watch::Receiver<String> {
        self.epoch.subscribe()
    }

    /// The first message of a stream, and the one after the store's epoch changes.
    pub fn welcome(&self, epoch: &str) -> pb::SessionMessage {
        pb::SessionMessage {
            body: Some(pb::session_message::Body::Welcome(pb::Welcome {
                replica_id: self.replica.clone(),
                store_epoch: epoch.to_owned(),
            })),
            ..Default::default()
        }
    }

    pub fn directory(&self) -> &D {
        self.board.directory()
    }

    /// One session's command, whose gateway knows it as registered under `user`.
    pub async fn handle(&self, from: SessionKey, user: Option<Name>, command: Command) {
        let (request, requests) = (command.request(), command.requests());
        let goodbye = matches!(command, Command::Closed | Command::Lost).then(|| command.clone());
        if self.reasserting()
            && matches!(
                &command,
                Command::Register {
                    resume_token: None,
                    reassert: None,
                    ..
                }
            )
        {
            // The store just came back empty: the names of live sessions are being asserted
            // again by their gateways; new claims wait a moment so they do not take them.
            let refusal = Delivery {
                to: from,
                event: Event::Refused {
                    request: crate::vocabulary::Request::Register,
                    reason: Reason::Unavailable,
                    message: "the service is recovering; try again shortly".into(),
                },
                trace: None,
            };
            self.dispatch(Handled {
                deliveries: vec![refusal],
                delivered: 0,
            })
            .await;
            return;
        }
        let before = self.board.next_deadline();
        let handled = match self
            .board
            .handle(Timestamp::now(), from, user.as_ref(), command)
            .await
        {
            Ok(handled) => handled,
            Err(error) => {
                if let (Some(goodbye), Some(user)) = (goodbye, user) {
                    // Nobody to answer, and it must not be lost: the name would stay held by a
                    // session that is gone. Tried again until the store is back.
                    tracing::warn!(%error, session = from.session, "store unavailable; the session's end is kept to try again");
                    lock(&self.goodbyes).push((from, user, goodbye));
                    return;
                }
                tracing::warn!(%error, session = from.session, gateway = %from.gateway, "store unavailable; request refused");
                // One refusal per request (each of the candidates relayed together).
                let deliveries = request
                    .into_iter()
                    .flat_map(|request| std::iter::repeat_n(request, requests))
                    .map(|request| Delivery {
                        to: from,
                        event: Event::Refused {
                            request,
                            reason: Reason::Unavailable,
                            message: "the presence store is unavailable; try again shortly".into(),
                        },
                        trace: None,
                    })
                    .collect();
                Handled {
                    deliveries,
                    delivered: 0,
                }
            }
        };
        self.dispatch(handled).await;
        if self.board.next_deadline() != before {
            self.deadline_changed.notify_one();
        }
    }

    /// Whether the store lost its data so recently that gateways may still be asserting their
    /// sessions again.
    fn reasserting(&self) -> bool {
        lock(&self.epoch_changed).is_some_and(|at| at.elapsed() < REASSERT_WINDOW)
    }

    /// Sends `gateway`'s deliveries to `sink`.
    pub async fn subscribe(&self, gateway: GatewayId, from: Option<String>, sink: InboxSink) {
        if let Err(error) = self.directory().subscribe(gateway, from, sink).await {
            tracing::warn!(%error, %gateway, "cannot subscribe the gateway's inbox");
        }
    }

    /// `gateway` is attached here and alive.
    pub async fn seen(&self, gateway: GatewayId) {
        if let Err(error) = self.directory().seen(gateway, Timestamp::now()).await {
            tracing::warn!(%error, %gateway, "cannot mark the gateway alive");
        }
    }

    pub fn counts(&self) -> Counts {
        self.directory().counts()
    }

    /// Counts what was handled and delivers what is not delivered yet.
    async fn dispatch(&self, handled: Handled) {
        let Handled {
            mut deliveries,
            delivered,
        } = handled;
        self.metrics.observe(&deliveries);
        let rest = deliveries.split_off(delivered.min(deliveries.len()));
        if rest.is_empty() {
            return;
        }
        if let Err(error) = self.directory().deliver(&rest).await {
            // The store is away: what can reach its session over a stream attached here
            // does (the refusal of the request at hand, above all); the rest is lost.
            let local = lock(&self.local);
            let mut lost = 0;
            for delivery in &rest {
                let sent = local
                    .get(&delivery.to.gateway)
                    .is_some_and(|stream| stream.try_send(wire::session_message(delivery)).is_ok());
                if !sent {
                    lost += 1;
                }
            }
            if lost > 0 {
                tracing::warn!(%error, lost, "deliveries lost: the store is unavailable");
            }
        }
    }

    /// A stream of `gateway` attached here: deliveries may go straight to it when the store
    /// cannot take them.
    pub fn attach_local(&self, gateway: GatewayId, stream: mpsc::Sender<pb::SessionMessage>) {
        lock(&self.local).insert(gateway, stream);
    }

    pub fn detach_local(&self, gateway: GatewayId, stream: &mpsc::Sender<pb::SessionMessage>) {
        let mut local = lock(&self.local);
        if local.get(&gateway).is_some_and(|s| s.same_channel(stream)) {
            local.remove(&gateway);
        }
    }
}

/// Counts one attached stream while it lives.
pub struct StreamGuard<D: Directory>(Arc<Hub<D>>);

impl<D: Directory> Drop for StreamGuard<D> {
    fn drop(&mut self) {
        self.0
            .streams
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.0.stream_left.notify_waiters();
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn sleep(wait: Duration) {
    if wait == Duration::MAX {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(wait).await;
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

mod background;
#[cfg(test)]
mod tests;
