//! The gateway's one stream to signaling (`Attach`), multiplexing every browser session on this
//! gateway, and the table that routes what comes back to each session's bounded queue.
//!
//! If the stream breaks, every session is ended with a clear reason (signaling forgot them when
//! the stream ended; the browsers reconnect and resume their names), and the link reconnects
//! with backoff.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use stunner_proto::signaling::v1::{
    GatewayMessage, Hello, SessionMessage, gateway_message::Body,
    signaling_service_client::SignalingServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

/// Messages from all sessions waiting to go to signaling.
const UPSTREAM_QUEUE: usize = 65_536;

/// Why the server ended a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The browser did not read its messages fast enough.
    TooSlow,
    /// The stream to signaling broke.
    SignalingLost,
}

/// A session's end of the table: its queue, and how it learns it was ended.
pub struct SessionHandle {
    pub inbox: mpsc::Receiver<Box<SessionMessage>>,
    pub ended: CancellationToken,
    reason: Arc<Mutex<Option<Ended>>>,
}

impl SessionHandle {
    pub fn reason(&self) -> Option<Ended> {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Entry {
    // Boxed: the channel allocates slots in blocks of 32, so an idle session that has received
    // anything would otherwise hold 32 whole messages' worth of memory.
    inbox: mpsc::Sender<Box<SessionMessage>>,
    ended: CancellationToken,
    reason: Arc<Mutex<Option<Ended>>>,
}

pub struct Link {
    /// This gateway instance, as signaling knows it (random per start).
    id: String,
    upstream: mpsc::Sender<GatewayMessage>,
    sessions: Mutex<HashMap<u64, Entry>>,
    connected: AtomicBool,
    session_queue: usize,
}

impl Link {
    /// The link and the receiver its [`Link::run`] task drains.
    pub fn new(session_queue: usize) -> (Arc<Self>, mpsc::Receiver<GatewayMessage>) {
        let (upstream, rx) = mpsc::channel(UPSTREAM_QUEUE);
        let link = Arc::new(Self {
            id: svc_common::random_hex(8),
            upstream,
            sessions: Mutex::default(),
            connected: AtomicBool::new(false),
            session_queue,
        });
        (link, rx)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn sessions(&self) -> usize {
        self.table().len()
    }

    /// Adds a session to the routing table.
    pub fn open(&self, session: u64) -> SessionHandle {
        let (inbox, rx) = mpsc::channel(self.session_queue);
        let ended = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        self.table().insert(
            session,
            Entry {
                inbox,
                ended: ended.clone(),
                reason: reason.clone(),
            },
        );
        SessionHandle {
            inbox: rx,
            ended,
            reason,
        }
    }

    pub fn close(&self, session: u64) {
        self.table().remove(&session);
    }

    /// Queues a message for signaling; `false` if the link is down or overloaded.
    pub fn send(&self, message: GatewayMessage) -> bool {
        self.is_connected() && self.upstream.try_send(message).is_ok()
    }

    /// Keeps the stream to signaling up until `stop`.
    pub async fn run(
        self: Arc<Self>,
        endpoint: Endpoint,
        mut upstream: mpsc::Receiver<GatewayMessage>,
        stop: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.attach(&endpoint, &mut upstream, &stop).await {
                Ok(()) => return,
                Err(error) => {
                    if self.connected.swap(false, Ordering::Relaxed) {
                        tracing::error!(%error, "lost the stream to signaling; ending its sessions");
                    } else {
                        tracing::warn!(%error, retry_in = ?backoff, "cannot reach signaling");
                    }
                    self.end_all(Ended::SignalingLost);
                    // Whatever sessions queued for the old stream is moot now.
                    while upstream.try_recv().is_ok() {}
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One stream's lifetime: `Ok` on shutdown, `Err` when it breaks.
    async fn attach(
        &self,
        endpoint: &Endpoint,
        upstream: &mut mpsc::Receiver<GatewayMessage>,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        let mut client = SignalingServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(1024);
        let hello = GatewayMessage {
            body: Some(Body::Hello(Hello {
                gateway_id: self.id.clone(),
            })),
            ..Default::default()
        };
        tx.send(hello)
            .await
            .map_err(|_| "the stream to signaling closed".to_owned())?;
        let mut inbound = client
            .attach(ReceiverStream::new(rx))
            .await
            .map_err(|status| status.to_string())?
            .into_inner();
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!("attached to signaling");
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                message = upstream.recv() => {
                    let Some(message) = message else { return Ok(()) };
                    tx.send(message).await.map_err(|_| "the stream to signaling closed".to_owned())?;
                }
                message = inbound.message() => match message {
                    Ok(Some(message)) => self.deliver(message),
                    Ok(None) => return Err("signaling ended the stream".into()),
                    Err(status) => return Err(status.to_string()),
                },
            }
        }
    }

    fn deliver(&self, message: SessionMessage) {
        let mut table = self.table();
        let session = message.session_id;
        let Some(entry) = table.get(&session) else {
            return;
        };
        if entry.inbox.try_send(Box::new(message)).is_err() {
            let entry = table.remove(&session);
            drop(table);
            if let Some(entry) = entry {
                tracing::warn!(session, "browser too slow to read its messages; closing");
                end(&entry, Ended::TooSlow);
            }
        }
    }

    fn end_all(&self, why: Ended) {
        let entries: Vec<Entry> = self.table().drain().map(|(_, entry)| entry).collect();
        for entry in &entries {
            end(entry, why);
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn end(entry: &Entry, why: Ended) {
    *entry.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    entry.ended.cancel();
}
