//! One stream per signaling replica, for every endpoint SIGNALING_URL stands for: attached,
//! re-attached with backoff when it breaks, dropped when its endpoint goes away; and what the
//! link does when a replica comes, drains or goes.
//! (Over 300 lines: the stream task and the state changes it causes are read together.)

use std::{collections::HashMap, sync::Arc, time::Duration};

use stunner_proto::signaling::v1::{
    self as pb, GatewayMessage, SessionMessage, gateway_message::Body as Up,
    session_message::Body as Down, signaling_service_client::SignalingServiceClient,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::Endpoint;

use super::{Link, Replica, State};
use crate::resolve::Endpoints;

/// Messages from sessions waiting to go to one replica.
const UPSTREAM_QUEUE: usize = 16_384;
/// How often the reader's stream is told how far the inbox was received.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts to reach a replica.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("signaling did not start the stream with a welcome")]
    NoWelcome,
    #[error("signaling ended the stream")]
    Ended,
}

/// Keeps one stream to every endpoint in `endpoints` until `stop`.
pub async fn run(
    link: Arc<Link>,
    mut endpoints: watch::Receiver<Endpoints>,
    configure: impl Fn(Endpoint) -> Endpoint,
    stop: CancellationToken,
) {
    let tasks = TaskTracker::new();
    let mut running: HashMap<String, CancellationToken> = HashMap::new();
    let mut next_key = 1;
    loop {
        let current = endpoints.borrow_and_update().clone();
        running.retain(|endpoint, cancel| {
            let keep = current.contains(endpoint);
            if !keep {
                tracing::info!(%endpoint, "signaling replica gone from SIGNALING_URL");
                cancel.cancel();
            }
            keep
        });
        for endpoint in current {
            if running.contains_key(&endpoint) {
                continue;
            }
            let target = match Endpoint::from_shared(endpoint.clone()) {
                Ok(target) => configure(target),
                Err(error) => {
                    tracing::warn!(%endpoint, %error, "unusable signaling endpoint");
                    continue;
                }
            };
            let cancel = stop.child_token();
            running.insert(endpoint.clone(), cancel.clone());
            tasks.spawn(replica(link.clone(), next_key, endpoint, target, cancel));
            next_key += 1;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            changed = endpoints.changed() => if changed.is_err() { break },
        }
    }
    tasks.close();
    tasks.wait().await;
}

/// One replica's stream, re-attached until `stop`.
async fn replica(
    link: Arc<Link>,
    key: u64,
    endpoint: String,
    target: Endpoint,
    stop: CancellationToken,
) {
    link.state().replicas.insert(
        key,
        Replica {
            endpoint: endpoint.clone(),
            upstream: None,
            draining: false,
            seq: 0,
            acked: 0,
            unacked: Default::default(),
            in_flight: Default::default(),
            in_flight_bytes: 0,
        },
    );
    // Doubling, capped, reset once attached. (A retry crate wraps one future to be retried;
    // this is a long-lived stream whose backoff resets on success: two lines say it plainer.)
    let mut backoff = Duration::from_millis(100);
    loop {
        let attached_at = tokio::time::Instant::now();
        let outcome = attach(&link, key, &target, &stop).await;
        let was_attached = link.detached(key);
        if stop.is_cancelled() {
            break;
        }
        match outcome {
            Err(error) if was_attached => {
                tracing::warn!(%endpoint, %error, "lost the stream to a signaling replica; its sessions carry on elsewhere");
            }
            Err(error) => {
                tracing::debug!(%endpoint, %error, retry_in = ?backoff, "cannot reach a signaling replica");
            }
            Ok(()) => {}
        }
        if attached_at.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    link.state().replicas.remove(&key);
}

/// One stream's lifetime: `Ok` on shutdown, `Err` when it breaks or never starts.
async fn attach(
    link: &Link,
    key: u64,
    target: &Endpoint,
    stop: &CancellationToken,
) -> Result<(), LinkError> {
    let channel = target.connect().await?;
    let mut client = SignalingServiceClient::with_interceptor(channel, link.bearer.clone());
    let (tx, rx) = mpsc::channel(UPSTREAM_QUEUE);
    let hello = GatewayMessage {
        body: Some(Up::Hello(pb::Hello {
            gateway_id: link.id.clone(),
        })),
        ..Default::default()
    };
    // A fresh channel has room.
    let _ = tx.try_send(hello);
    let mut inbound = client.attach(ReceiverStream::new(rx)).await?.into_inner();
    let welcome = match inbound.message().await? {
        Some(SessionMessage {
            body: Some(Down::Welcome(welcome)),
            ..
        }) => welcome,
        _ => return Err(LinkError::NoWelcome),
    };
    // From here the link holds the only sender: dropping it closes the stream.
    link.attached(key, tx, welcome);
    let mut report = tokio::time::interval(REPORT_EVERY);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = report.tick() => link.state().report_received(key),
            message = inbound.message() => match message {
                Ok(Some(message)) => link.received(key, message),
                Ok(None) => return Err(LinkError::Ended),
                Err(status) => return Err(status.into()),
            },
        }
    }
}

// === impl Link ===

impl Link {
    /// Replica `key` welcomed a new stream.
    fn attached(&self, key: u64, upstream: mpsc::Sender<GatewayMessage>, welcome: pb::Welcome) {
        let mut state = self.state();
        let Some(replica) = state.replicas.get_mut(&key) else {
            return;
        };
        tracing::info!(endpoint = %replica.endpoint, replica = %welcome.replica_id, "attached to signaling");
        replica.upstream = Some(upstream);
        replica.draining = false;
        replica.seq = 0;
        replica.acked = 0;
        replica.in_flight.clear();
        replica.in_flight_bytes = 0;
        state.store_epoch(&welcome.store_epoch);
        // The inbox subscription goes first: an in-memory signaling drops deliveries for a
        // gateway it has no subscription from, such as the answers to what is re-sent next.
        if state.reader.is_none_or(|reader| {
            state
                .replicas
                .get(&reader)
                .is_none_or(|r| r.upstream.is_none())
        }) {
            state.move_reader();
        }
        state.resend_held();
    }

    /// A message on replica `key`'s stream.
    fn received(&self, key: u64, message: SessionMessage) {
        let mut state = self.state();
        match &message.body {
            Some(Down::Welcome(welcome)) => state.store_epoch(&welcome.store_epoch),
            Some(Down::Processed(processed)) => state.acknowledged(key, processed.seq),
            Some(Down::Draining(_)) => {
                if let Some(replica) = state.replicas.get_mut(&key) {
                    tracing::info!(endpoint = %replica.endpoint, "signaling replica draining; moving its sessions");
                    replica.draining = true;
                }
                if state.reader == Some(key) {
                    state.move_reader();
                }
                state.release(key);
            }
            _ => state.deliver(message),
        }
    }

    /// Replica `key`'s stream ended; returns whether it had been attached.
    fn detached(&self, key: u64) -> bool {
        let mut state = self.state();
        let Some(replica) = state.replicas.get_mut(&key) else {
            return false;
        };
        let was = replica.upstream.take().is_some();
        replica.draining = false;
        replica.in_flight.clear();
        replica.in_flight_bytes = 0;
        for entry in state.sessions.values_mut() {
            if entry.home == Some(key) {
                entry.home = None;
            }
        }
        if state.reader == Some(key) {
            state.move_reader();
        }
        state.unacknowledged(key);
        was
    }
}

// === impl State ===

impl State {
    /// The store's epoch, as a replica says it: a new one means the store forgot everything.
    fn store_epoch(&mut self, epoch: &str) {
        let known = self.epoch.replace(epoch.to_owned());
        if known.is_none_or(|known| known == epoch) {
            return;
        }
        // A new store: its inboxes start afresh.
        self.position = None;
        self.reported = None;
        self.move_reader();
        self.reassert();
    }

    /// Asks an attached replica that is not draining to read this gateway's inbox from the
    /// last position received.
    fn move_reader(&mut self) {
        let from = self.position.map(|p| p.to_string()).unwrap_or_default();
        let next = self
            .replicas
            .iter()
            .find(|(_, r)| r.upstream.is_some() && !r.draining)
            .map(|(key, _)| *key);
        self.reader = next;
        let Some(key) = next else {
            return;
        };
        let subscribe = GatewayMessage {
            body: Some(Up::Subscribe(pb::Subscribe { from })),
            ..Default::default()
        };
        if let Some(upstream) = self.replicas.get(&key).and_then(|r| r.upstream.as_ref()) {
            let _ = upstream.try_send(subscribe);
        }
    }

    /// Tells the reader how far this gateway has received its inbox, if it got further.
    fn report_received(&mut self, key: u64) {
        if self.reader != Some(key) || self.position == self.reported {
            return;
        }
        let Some(position) = self.position else {
            return;
        };
        let received = GatewayMessage {
            body: Some(Up::Received(pb::Received {
                position: position.to_string(),
            })),
            ..Default::default()
        };
        if let Some(upstream) = self.replicas.get(&key).and_then(|r| r.upstream.as_ref())
            && upstream.try_send(received).is_ok()
        {
            self.reported = Some(position);
        }
    }

    /// Replica `key` has handled everything up to `seq`.
    fn acknowledged(&mut self, key: u64, seq: u64) {
        let Some(replica) = self.replicas.get_mut(&key) else {
            return;
        };
        replica.acked = replica.acked.max(seq);
        while replica.unacked.front().is_some_and(|(s, _, _)| *s <= seq) {
            replica.unacked.pop_front();
        }
        while let Some(&(s, bytes)) = replica.in_flight.front()
            && s <= seq
        {
            replica.in_flight.pop_front();
            replica.in_flight_bytes -= bytes;
        }
        if replica.draining {
            self.release(key);
        }
    }

    /// A draining replica's sessions move once it has acknowledged what they sent it; once
    /// none is left and it no longer reads the inbox, its stream is closed.
    fn release(&mut self, key: u64) {
        let Some(acked) = self.replicas.get(&key).map(|r| r.acked) else {
            return;
        };
        let mut waiting = false;
        for entry in self.sessions.values_mut() {
            if entry.home == Some(key) {
                if entry.last_seq <= acked {
                    entry.home = None;
                } else {
                    waiting = true;
                }
            }
        }
        if !waiting
            && self.reader != Some(key)
            && let Some(replica) = self.replicas.get_mut(&key)
            && replica.upstream.take().is_some()
        {
            tracing::info!(endpoint = %replica.endpoint, "left the draining replica");
        }
    }
}
