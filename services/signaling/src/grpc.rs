//! The gRPC adapter: `signaling.v1.SignalingService/Attach` over the [`Hub`] (what its messages
//! mean is [`crate::wire`]). Each session's
//! commands are handled one after the other, in the order the gateway sent them; different
//! sessions' commands run concurrently (a store round trip for one does not hold the others).
//! (Over 300 lines: the stream reader, its per-session ordering and its acknowledgements are one
//! loop.)

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use futures_util::StreamExt as _;
use stunner_proto::signaling::v1::{
    self as pb,
    gateway_message::Body as In,
    signaling_service_server::{SignalingService, SignalingServiceServer},
};
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    directory::{Directory, Inbound, InboxSink, Outbox, outbox},
    hub::{Hub, SEEN_EVERY, StreamGuard},
    name::Name,
    vocabulary::{Command, GatewayId, SessionKey},
    wire,
};

/// Deliveries a gateway stream may fall behind by before it is cut (rather than growing memory
/// without bound or dropping messages silently); the gateway reconnects.
pub const GATEWAY_QUEUE: usize = 65_536;
/// The same bound in bytes.
pub const GATEWAY_BYTES: usize = 32 << 20;
/// Commands of one stream in progress at once; beyond it the stream is read no further until
/// some finish (backpressure to the gateway).
const IN_FLIGHT: usize = 1024;

pub struct SignalingGrpc<D> {
    hub: Arc<Hub<D>>,
    /// Owns the reader task of every attached stream.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl<D: Directory> SignalingGrpc<D> {
    pub fn new(hub: Arc<Hub<D>>, tasks: TaskTracker, stop: CancellationToken) -> Self {
        Self { hub, tasks, stop }
    }

    pub fn into_server(self) -> SignalingServiceServer<Self> {
        SignalingServiceServer::new(self).max_decoding_message_size(1 << 20)
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::SessionMessage, Status>> + Send>>;

#[tonic::async_trait]
impl<D: Directory> SignalingService for SignalingGrpc<D> {
    type AttachStream = SessionStream;

    async fn attach(
        &self,
        request: Request<Streaming<pb::GatewayMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        if self.hub.draining() {
            return Err(Status::unavailable(
                "this signaling replica is shutting down; attach to another",
            ));
        }
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let gateway = match inbound.message().await? {
            Some(pb::GatewayMessage {
                body: Some(In::Hello(hello)),
                ..
            }) => hello.gateway_id.parse::<GatewayId>().map_err(|_| {
                Status::invalid_argument(format!(
                    "hello.gateway_id: {:?} is not 16 hex digits",
                    hello.gateway_id
                ))
            })?,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a hello",
                ));
            }
        };
        let epoch = self.hub.epoch();
        tracing::info!(%gateway, ?peer, "gateway attached");
        let (deliveries_tx, deliveries) = outbox(GATEWAY_QUEUE, GATEWAY_BYTES);
        let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
        let cut = CancellationToken::new();
        // A fresh channel has room.
        let _ = control_tx.try_send(self.hub.welcome(&epoch.borrow()));
        self.hub.seen(gateway).await;
        self.hub.attach_local(gateway, control_tx.clone());
        let reader = Reader {
            _attached: self.hub.stream_attached(),
            hub: self.hub.clone(),
            gateway,
            stop: self.stop.clone(),
            cut: cut.clone(),
            deliveries: deliveries_tx,
            control: control_tx,
            epoch,
            subscription: None,
            acks: Acks::default(),
            jobs: self.tasks.clone(),
        };
        self.tasks.spawn(reader.run(inbound));
        let deliveries = deliveries.map(|inbound: Inbound| {
            let mut message = inbound.message;
            message.position = inbound.position.unwrap_or_default();
            message
        });
        let outbound = futures_util::stream::select(deliveries, ReceiverStream::new(control))
            .map(Ok)
            .take_until(cut.cancelled_owned());
        Ok(Response::new(Box::pin(outbound)))
    }
}

/// Control messages (welcome, acknowledgements, draining) a stream may fall behind by.
const CONTROL_QUEUE: usize = 256;
/// How often the reader of a gateway's inbox renews its keys' leases (well within them).
const RENEW_EVERY: Duration = Duration::from_secs(15 * 60);
/// How often acknowledgements are sent while commands are in flight (at once when none is).
const ACK_EVERY: Duration = Duration::from_millis(20);

/// Reads one gateway stream until it ends.
struct Reader<D: Directory> {
    /// Counts this stream as attached while it is read.
    _attached: StreamGuard<D>,
    hub: Arc<Hub<D>>,
    gateway: GatewayId,
    stop: CancellationToken,
    /// Ends the outbound side too.
    cut: CancellationToken,
    /// Where this stream's deliveries go, once the gateway subscribes it.
    deliveries: Outbox,
    control: mpsc::Sender<pb::SessionMessage>,
    /// The store's epoch, told to the gateway whenever it changes.
    epoch: watch::Receiver<String>,
    /// Cut when the gateway's inbox is read elsewhere.
    subscription: Option<CancellationToken>,
    acks: Acks,
    /// Owns the commands under way: each runs as a task of its own, so it goes on while this
    /// loop waits on the store itself (a command waiting for this loop to poll it, while the
    /// loop waits for the store, held the store's connection slots in a storm: a deadlock).
    jobs: TaskTracker,
}

/// Which of a stream's numbered messages are handled, for cumulative acknowledgements.
#[derive(Default)]
struct Acks {
    /// Taken in and not finished yet.
    open: BTreeSet<u64>,
    /// The highest number taken in.
    seen: u64,
    /// The highest number acknowledged.
    sent: u64,
}

impl Acks {
    fn taken(&mut self, seq: u64) {
        if seq > 0 {
            self.open.insert(seq);
            self.seen = self.seen.max(seq);
        }
    }

    fn finished(&mut self, seq: u64) {
        self.open.remove(&seq);
    }

    /// Everything up to this is handled.
    fn upto(&self) -> u64 {
        self.open.first().map_or(self.seen, |first| first - 1)
    }

    /// The acknowledgement to send now, if any: every [`ACK_EVERY`] at most, one for
    /// everything handled since the last (they are cumulative).
    fn due(&self) -> Option<u64> {
        let upto = self.upto();
        (upto > self.sent).then_some(upto)
    }
}

/// Candidates relayed together at most, when they queued behind each other.
const MAX_MERGED: usize = 64;

/// One command, in its session's queue.
struct Job {
    seq: u64,
    /// The numbers of the candidates merged into this one's command, after its own.
    merged: Vec<u64>,
    user: Option<Name>,
    command: Command,
    span: tracing::Span,
}

impl<D: Directory> Reader<D> {
    async fn run(mut self, mut inbound: Streaming<pb::GatewayMessage>) {
        let mut queues: HashMap<u64, VecDeque<Job>> = HashMap::new();
        // Commands under way, and where each says it is done: (session, seq, the seqs merged
        // into it).
        let mut running = 0usize;
        let (done_tx, mut done) = mpsc::unbounded_channel::<(u64, u64, Vec<u64>)>();
        let mut alive = tokio::time::interval(SEEN_EVERY);
        alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut acks = tokio::time::interval(ACK_EVERY);
        acks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let draining = self.hub.draining_token();
        let (mut told_draining, mut draining_sent) = (false, false);
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = self.cut.cancelled() => break,
                () = draining.cancelled(), if !told_draining => {
                    told_draining = true;
                    draining_sent = self.try_tell(pb::session_message::Body::Draining(pb::Draining {}));
                }
                changed = self.epoch.changed() => {
                    if changed.is_ok() {
                        let welcome = self.hub.welcome(&self.epoch.borrow_and_update());
                        if self.control.try_send(welcome).is_err() {
                            tracing::warn!(gateway = %self.gateway, "gateway not reading its stream; cutting it");
                            break;
                        }
                    }
                }
                _ = alive.tick() => self.hub.seen(self.gateway).await,
                _ = renew.tick(), if self.subscription.is_some() => {
                    // The reader of a gateway's inbox keeps its keys alive.
                    if let Err(error) = self.hub.directory().renew(self.gateway).await {
                        tracing::warn!(gateway = %self.gateway, %error, "cannot renew the gateway's leases");
                    }
                }
                _ = acks.tick() => {
                    // Cumulative: one that finds the stream full is made good by the next.
                    if let Some(upto) = self.acks.due()
                        && self.try_tell(pb::session_message::Body::Processed(pb::Processed { seq: upto }))
                    {
                        self.acks.sent = upto;
                    }
                    if told_draining && !draining_sent {
                        draining_sent = self.try_tell(pb::session_message::Body::Draining(pb::Draining {}));
                    }
                }
                Some((session, seq, merged)) = done.recv() => {
                    running -= 1;
                    self.acks.finished(seq);
                    for seq in merged {
                        self.acks.finished(seq);
                    }
                    // That session's command is done: start its next one, if any.
                    let next = queues.get_mut(&session).and_then(next_job);
                    match next {
                        Some(job) => {
                            running += 1;
                            self.start(session, job, &done_tx);
                        }
                        None => { queues.remove(&session); }
                    }
                }
                message = inbound.message(), if running < IN_FLIGHT => match message {
                    Ok(Some(message)) => {
                        let session = message.session_id;
                        match self.take(message).await {
                            Some(job) => {
                                self.acks.taken(job.seq);
                                match queues.get_mut(&session) {
                                    Some(queue) => queue.push_back(job),
                                    None => {
                                        queues.insert(session, VecDeque::new());
                                        running += 1;
                                        self.start(session, job, &done_tx);
                                    }
                                }
                            }
                            None => continue,
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::warn!(gateway = %self.gateway, %status, "gateway stream failed");
                        break;
                    }
                },
            }
        }
        // What was already taken in is finished, so no session's command is half done.
        let finish = async {
            while running > 0
                && let Some((session, _, _)) = done.recv().await
            {
                running -= 1;
                if let Some(job) = queues.get_mut(&session).and_then(next_job) {
                    running += 1;
                    self.start(session, job, &done_tx);
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), finish)
            .await
            .is_err()
        {
            tracing::warn!(gateway = %self.gateway, "commands still running after the stream ended");
        }
        if let Some(subscription) = self.subscription.take() {
            subscription.cancel();
        }
        self.hub.detach_local(self.gateway, &self.control);
        self.cut.cancel();
        tracing::info!(gateway = %self.gateway, "gateway detached");
    }

    /// A message from the gateway: a command for a session, or about the stream itself.
    async fn take(&mut self, message: pb::GatewayMessage) -> Option<Job> {
        match &message.body {
            Some(In::Subscribe(subscribe)) => {
                self.subscribe(&subscribe.from).await;
                None
            }
            Some(In::Received(received)) => {
                let directory = self.hub.directory();
                if let Err(error) = directory.received(self.gateway, &received.position).await {
                    tracing::warn!(gateway = %self.gateway, %error, "cannot note what the gateway received");
                }
                None
            }
            Some(In::Hello(_)) | None => {
                tracing::warn!(gateway = %self.gateway, session = message.session_id, "gateway message without a command");
                None
            }
            Some(_) => wire::command(message).map(|(seq, user, command, span)| Job {
                seq,
                merged: Vec::new(),
                user,
                command,
                span,
            }),
        }
    }

    /// This stream carries the gateway's deliveries from now on, from position `from`.
    async fn subscribe(&mut self, from: &str) {
        if let Some(old) = self.subscription.take() {
            old.cancel();
        }
        let subscription = self.cut.child_token();
        self.subscription = Some(subscription.clone());
        let inbox = InboxSink {
            sink: self.deliveries.clone(),
            cut: subscription,
            overflow: self.cut.clone(),
        };
        let from = (!from.is_empty()).then(|| from.to_owned());
        self.hub.subscribe(self.gateway, from, inbox).await;
    }

    /// Queues a control message; `false` when the stream is too far behind to take it now
    /// (the caller tries again later).
    fn try_tell(&self, body: pb::session_message::Body) -> bool {
        let message = pb::SessionMessage {
            body: Some(body),
            ..Default::default()
        };
        self.control.try_send(message).is_ok()
    }

    /// Runs `job` as a task of its own; says on `done` when it is finished.
    fn start(&self, session: u64, job: Job, done: &mpsc::UnboundedSender<(u64, u64, Vec<u64>)>) {
        let hub = self.hub.clone();
        let from = SessionKey {
            gateway: self.gateway,
            session,
        };
        let Job {
            seq,
            merged,
            user,
            command,
            span,
        } = job;
        let done = done.clone();
        self.jobs.spawn(async move {
            // Boxed: the task stays small, rather than moved whole as it is spawned and ends.
            let handled = Box::pin(hub.handle(from, user, command));
            tracing::Instrument::instrument(handled, span).await;
            let _ = done.send((session, seq, merged));
        });
    }
}

/// The next command of a session's queue. Candidates queued behind each other go as one
/// command: relayed together, in order, with one look at where the peer is.
fn next_job(queue: &mut VecDeque<Job>) -> Option<Job> {
    let mut job = queue.pop_front()?;
    let Command::Candidates(candidates) = &mut job.command else {
        return Some(job);
    };
    while candidates.len() < MAX_MERGED
        && let Some(next) = queue.front()
        && next.user == job.user
        && matches!(next.command, Command::Candidates(_))
    {
        let Some(next) = queue.pop_front() else { break };
        if let Command::Candidates(more) = next.command {
            candidates.extend(more);
        }
        job.merged.push(next.seq);
        job.merged.extend(next.merged);
    }
    Some(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seq: u64, user: &str, command: Command) -> Job {
        Job {
            seq,
            merged: Vec::new(),
            user: Name::parse(user).ok(),
            command,
            span: tracing::Span::none(),
        }
    }

    fn candidate(text: &str) -> Command {
        Command::Candidates(vec![text.to_owned()])
    }

    #[test]
    fn candidates_queued_behind_each_other_go_as_one_command_in_order() {
        let mut queue: VecDeque<Job> = [
            job(1, "alice", candidate("a")),
            job(2, "alice", candidate("b")),
            job(3, "alice", candidate("c")),
            job(4, "alice", Command::Stop),
            job(5, "alice", candidate("d")),
        ]
        .into();
        let first = next_job(&mut queue).expect("queued");
        assert_eq!(first.seq, 1);
        assert_eq!(
            first.merged,
            [2, 3],
            "each merged one is acknowledged with it"
        );
        assert_eq!(
            first.command,
            Command::Candidates(vec!["a".into(), "b".into(), "c".into()])
        );
        let stop = next_job(&mut queue).expect("queued");
        assert_eq!(
            (stop.seq, stop.command),
            (4, Command::Stop),
            "nothing jumps a stop"
        );
        let last = next_job(&mut queue).expect("queued");
        assert_eq!((last.seq, last.merged.len()), (5, 0));
        assert!(next_job(&mut queue).is_none());
    }

    #[test]
    fn a_change_of_name_or_of_command_ends_a_merge_and_so_does_its_bound() {
        let mut queue: VecDeque<Job> = [
            job(1, "alice", Command::Stop),
            job(2, "alice", candidate("a")),
        ]
        .into();
        assert!(next_job(&mut queue).expect("queued").merged.is_empty());
        let mut queue: VecDeque<Job> = [
            job(1, "alice", candidate("a")),
            job(2, "bob", candidate("b")),
        ]
        .into();
        assert!(next_job(&mut queue).expect("queued").merged.is_empty());
        let mut queue: VecDeque<Job> = (1..=100)
            .map(|n| job(n, "alice", candidate(&n.to_string())))
            .collect();
        let first = next_job(&mut queue).expect("queued");
        assert_eq!(first.merged.len() + 1, MAX_MERGED);
        assert_eq!(queue.front().map(|j| j.seq), Some(MAX_MERGED as u64 + 1));
    }
}
