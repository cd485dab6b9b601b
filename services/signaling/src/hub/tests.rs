use std::sync::atomic::{AtomicBool, Ordering};

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
    async fn subscribe(&self, g: GatewayId, from: Option<String>, sink: InboxSink) -> Result<()> {
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
    let (sink, mut inbox) = crate::directory::outbox(16, 1 << 20);
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
        extensions: false,
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
    assert!(inbox.try_recv().is_none());

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
