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

    /// Reads the store's epoch now, then every `every` until `stop` (a store that can lose
    /// its data while this replica runs: Redis).
    pub async fn follow_epoch(self: Arc<Self>, every: Option<Duration>, stop: CancellationToken) {
        loop {
            match self.directory().epoch().await {
                Ok(epoch) => {
                    self.epoch.send_if_modified(|current| {
                        if *current == epoch {
                            return false;
                        }
                        if !current.is_empty() {
                            tracing::warn!(old = %current, new = %epoch, "the store lost its data; gateways assert their sessions again");
                            *lock(&self.epoch_changed) = Some(tokio::time::Instant::now());
                        }
                        *current = epoch;
                        true
                    });
                }
                Err(error) => tracing::warn!(%error, "cannot read the store's epoch"),
            }
            let Some(every) = every else { return };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    pub fn directory(&self) -> &D {
        self.board.directory()
    }

    /// One session's command, whose gateway knows it as registered under `user`.
    pub async fn handle(&self, from: SessionKey, user: Option<Name>, command: Command) {
        let request = command.request();
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
                let deliveries = request
                    .map(|request| Delivery {
                        to: from,
                        event: Event::Refused {
                            request,
                            reason: Reason::Unavailable,
                            message: "the presence store is unavailable; try again shortly".into(),
                        },
                        trace: None,
                    })
                    .into_iter()
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

    /// Fires deadlines (ring timeouts, resume grace) until `stop`.
    pub async fn run_timers(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let wait = match self.board.next_deadline() {
                Some(at) => at.saturating_since(Timestamp::now()),
                None if self.polls_timers() => TIMER_POLL,
                None => Duration::MAX,
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.deadline_changed.notified() => continue,
                () = sleep(wait) => {}
            }
            match self.board.expire(Timestamp::now()).await {
                Ok(handled) => self.dispatch(handled).await,
                Err(error) => tracing::warn!(%error, "cannot fire timers"),
            }
        }
    }

    /// Tries again, every second until `stop`, the ends of sessions the store could not take.
    pub async fn run_retries(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SEEN_EVERY) => {}
            }
            let goodbyes = std::mem::take(&mut *lock(&self.goodbyes));
            for (from, user, command) in goodbyes {
                // A failure puts it back.
                self.handle(from, Some(user), command).await;
            }
        }
    }

    /// Ends the sessions of gateways that stopped being seen, until `stop`. A gateway is only
    /// taken for gone when the store has been reachable for as long as it takes to be missed:
    /// after an outage, every gateway looks unseen until the replicas attached to it say
    /// otherwise.
    pub async fn run_sweeper(self: Arc<Self>, stop: CancellationToken) {
        let mut reachable_since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SEEN_EVERY) => {}
            }
            if self.directory().problem().is_some() {
                reachable_since = tokio::time::Instant::now();
                continue;
            }
            if reachable_since.elapsed() < LOST_AFTER + SEEN_EVERY {
                continue;
            }
            let now = Timestamp::now();
            let lost = match self
                .directory()
                .lost_gateways(Timestamp(now.0.saturating_sub(millis(LOST_AFTER))))
                .await
            {
                Ok(lost) => lost,
                Err(error) => {
                    tracing::warn!(%error, "cannot look for lost gateways");
                    reachable_since = tokio::time::Instant::now();
                    continue;
                }
            };
            for gateway in lost {
                tracing::info!(%gateway, "gateway gone; ending its sessions");
                match self.board.gateway_gone(now, gateway).await {
                    Ok(handled) => self.dispatch(handled).await,
                    Err(error) => {
                        tracing::warn!(%error, %gateway, "cannot end a lost gateway's sessions")
                    }
                }
            }
        }
    }

    /// Whether the store's timers must be polled (it cannot say when the next is due).
    fn polls_timers(&self) -> bool {
        // The in-memory store always knows; a shared one is told of timers set elsewhere.
        !self.directory().knows_deadlines()
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::mpsc;

    use super::*;
    use crate::{
        directory::{Change, MemoryDirectory, Result, StoreError, Timer},
        record::UserRecord,
    };

    /// The in-memory directory, but unreachable while `down` is set (names and timers only:
    /// deliveries still arrive, as they would through a replica's own stream).
    #[derive(Default)]
    struct Flaky {
        inner: MemoryDirectory,
        down: AtomicBool,
    }

    impl Flaky {
        fn check(&self) -> Result<()> {
            if self.down.load(Ordering::Relaxed) {
                Err(StoreError::Unavailable("connection refused".into()))
            } else {
                Ok(())
            }
        }
    }

    impl Directory for Flaky {
        async fn load(&self, name: &Name) -> Result<Option<UserRecord>> {
            self.check()?;
            self.inner.load(name).await
        }
        async fn update<T, F>(&self, name: &Name, change: F) -> Result<T>
        where
            T: Send,
            F: FnMut(Option<&UserRecord>) -> Change<T> + Send,
        {
            self.check()?;
            self.inner.update(name, change).await
        }
        async fn route(&self, name: &Name) -> Result<Option<crate::record::Route>> {
            self.check()?;
            self.inner.route(name).await
        }
        async fn deliver(&self, deliveries: &[Delivery]) -> Result<()> {
            self.inner.deliver(deliveries).await
        }
        async fn subscribe(
            &self,
            g: GatewayId,
            from: Option<String>,
            sink: InboxSink,
        ) -> Result<()> {
            self.inner.subscribe(g, from, sink).await
        }
        async fn received(&self, g: GatewayId, position: &str) -> Result<()> {
            self.inner.received(g, position).await
        }
        async fn redeliver(&self, from: SessionKey, to: SessionKey) -> Result<usize> {
            self.inner.redeliver(from, to).await
        }
        async fn schedule(&self, at: Timestamp, timer: Timer) -> Result<()> {
            self.check()?;
            self.inner.schedule(at, timer).await
        }
        async fn cancel(&self, timer: &Timer) -> Result<()> {
            self.check()?;
            self.inner.cancel(timer).await
        }
        async fn due(&self, now: Timestamp) -> Result<Vec<Timer>> {
            self.check()?;
            self.inner.due(now).await
        }
        fn next_deadline(&self) -> Option<Timestamp> {
            self.inner.next_deadline()
        }
        fn knows_deadlines(&self) -> bool {
            true
        }
        async fn track(&self, g: GatewayId, name: &Name, held: bool) -> Result<()> {
            self.check()?;
            self.inner.track(g, name, held).await
        }
        async fn seen(&self, g: GatewayId, now: Timestamp) -> Result<()> {
            self.inner.seen(g, now).await
        }
        async fn lost_gateways(&self, before: Timestamp) -> Result<Vec<GatewayId>> {
            self.inner.lost_gateways(before).await
        }
        async fn tracked(&self, g: GatewayId) -> Result<Vec<Name>> {
            self.inner.tracked(g).await
        }
        fn counts(&self) -> Counts {
            self.inner.counts()
        }
        async fn epoch(&self) -> Result<String> {
            self.inner.epoch().await
        }
        async fn renew(&self, g: GatewayId) -> Result<()> {
            self.inner.renew(g).await
        }
        fn shared(&self) -> bool {
            false
        }
        fn problem(&self) -> Option<String> {
            None
        }
    }

    #[tokio::test]
    async fn an_unreachable_store_is_a_clear_refusal_that_changes_nothing() {
        let hub = Hub::new(Flaky::default(), Limits::default(), Metrics::default());
        let gateway = GatewayId(7);
        let (sink, mut inbox) = mpsc::channel(16);
        let cut = CancellationToken::new();
        let overflow = CancellationToken::new();
        hub.subscribe(
            gateway,
            None,
            InboxSink {
                sink,
                cut,
                overflow,
            },
        )
        .await;
        let alice = SessionKey {
            gateway,
            session: 1,
        };
        let register = || Command::Register {
            name: "alice".into(),
            resume_token: None,
            rejoin: None,
            reassert: None,
        };

        hub.directory().down.store(true, Ordering::Relaxed);
        hub.handle(alice, None, register()).await;
        let refusal = inbox.recv().await.expect("an answer").message;
        assert_eq!(refusal.session_id, alice.session);
        assert!(
            matches!(
                &refusal.body,
                Some(pb::session_message::Body::Refused(pb::Refused { request, reason, message }))
                    if *request == pb::Request::Register as i32
                        && *reason == pb::Reason::Unavailable as i32
                        && message.contains("unavailable")
            ),
            "{refusal:?}"
        );
        assert_eq!(hub.counts(), Counts::default(), "nothing was registered");
        // A socket closing while the store is away is not answered (nobody to answer).
        hub.handle(alice, None, Command::Closed).await;
        assert!(inbox.try_recv().is_err());

        hub.directory().down.store(false, Ordering::Relaxed);
        hub.handle(alice, None, register()).await;
        let registered = inbox.recv().await.expect("an answer").message;
        assert!(
            matches!(
                registered.body,
                Some(pb::session_message::Body::Registered(_))
            ),
            "{registered:?}"
        );
    }
}
