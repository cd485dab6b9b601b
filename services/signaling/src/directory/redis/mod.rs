//! The directory in Redis, shared by every signaling replica. (This module holds the
//! connection and the `Directory` impl, which only delegates: records are `records`,
//! inboxes `inbox`, timers, liveness, leases and the epoch `housekeeping`; commands go to
//! Redis in batches, `batch`, over a `socket` whose replies `resp` reads: modules private to
//! this one.)
//!
//! **Records** (`sig:u:{<name>}`, a hash of `v` and `d`): each change is an optimistic
//! compare-and-set. The record is read with its version, the switchboard's pure rule computes
//! the new record, and a Lua script writes it only if the version is still the one read;
//! otherwise the rule runs again on what another replica wrote. The rule stays in Rust (tested
//! without Redis) and Redis settles who was first, atomically, on one key. The version is
//! unique per write (the writer's random prefix and its count) rather than a counter kept in the
//! record, so a record deleted and re-created in between can never be mistaken for the one
//! read. MULTI/WATCH would do the same but needs a connection per transaction; a script runs on
//! the shared batching connection.
//!
//! **Deliveries** go to a Redis Stream per gateway instance (`sig:gw:{<gateway>}:inbox`), read
//! by the one replica the gateway chose as its reader and forwarded on its stream, each with
//! its stream id. A gateway that moves to another replica carries on from the last id it
//! received, so a message written to the stream is delivered even if the replica that was
//! reading it dies; the stream is the per-gateway order of deliveries, hence per call. (Plain
//! pub/sub would lose what is published while nobody listens; a stream per *replica* would
//! strand what a dead replica had not forwarded. Socket.IO's streams adapter and Centrifugo's
//! history make the same choice.) Streams are capped (`MAXLEN ~`), expire with their gateway
//! and are deleted when it is found gone.
//!
//! **Timers** (`sig:{~}:timers`) and **gateway liveness** (`sig:{~}:gateways`) are sorted sets
//! popped atomically by a script, so each due timer and each lost gateway is handled by exactly
//! one replica. The sessions of a gateway are a set per gateway (`sig:gw:{<gateway>}:names`).
//!
//! Every key has a TTL or is renewed by a lease (records of live sessions, their gateway's
//! sets and streams: [`LEASE`]); records of users who are away expire with their grace period.
//! Keys of one user, and keys of one gateway, share a hash tag: every atomic step touches one
//! hash slot, so Redis Cluster works.
//! (Over 300 lines: the key layout, the connection and the `Directory` implementation that uses them are read together; records, inboxes and housekeeping have modules of their own.)

mod batch;
mod connection;
mod housekeeping;
mod inbox;
mod records;
mod resp;
mod socket;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prost::Message as _;
use redis::{AsyncCommands, RedisResult, Script};
use stunner_proto::signaling::v1::{SessionMessage, session_message::Body as Out};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use super::{Change, Counts, Directory, Inbound, InboxSink, Result, StoreError, Timer};
use crate::{
    metrics::Metrics,
    name::Name,
    record::{Route, UserRecord},
    vocabulary::{CallId, Delivery, GatewayId, SessionKey, Timestamp},
};
use connection::{Backend, Conn};
pub use connection::{StoreUrl, UrlError};

/// How long records of live sessions, and their gateway's keys, live without being renewed.
pub const LEASE: Duration = Duration::from_secs(3600);
/// A record kept for a user who is away outlives its grace period by this much (its timer
/// normally deletes it first).
const AWAY_SLACK: Duration = Duration::from_secs(60);
/// How many deliveries a gateway's inbox keeps (approximately) for a reader that moves.
const INBOX_LENGTH: usize = 10_000;
/// How long one blocking inbox read waits for news.
const INBOX_BLOCK: Duration = Duration::from_secs(1);
/// Deliveries read at once.
const INBOX_BATCH: usize = 256;
/// How long a read that found deliveries waits before the next one (tokio's timer rounds it
/// up to its millisecond).
const INBOX_LINGER: Duration = Duration::from_micros(500);
/// How often a compare-and-set may lose before the change gives up.
const CAS_ATTEMPTS: usize = 32;
/// Commands under way at once on the shared connection. A burst (a gateway's browsers all
/// registering again at once) queues here rather than in the connection, where each command's
/// response timeout is already running: under a storm, commands wait their turn instead of
/// failing as `unavailable`.
const IN_FLIGHT: usize = 256;

const TIMERS: &str = "sig:{~}:timers";
const EPOCH: &str = "sig:{~}:epoch";
const GATEWAYS: &str = "sig:{~}:gateways";

fn record_key(name: &Name) -> String {
    format!("sig:u:{{{}}}", name.as_str())
}

fn inbox_key(gateway: GatewayId) -> String {
    format!("sig:gw:{{{gateway}}}:inbox")
}

fn names_key(gateway: GatewayId) -> String {
    format!("sig:gw:{{{gateway}}}:names")
}

fn received_key(gateway: GatewayId) -> String {
    format!("sig:gw:{{{gateway}}}:received")
}

/// Writes the record if its version is still the one read (`""`: absent), with its route (`r`:
/// where the user is reached for its call, for relaying candidates without decoding the
/// record), and its time to live unless `ARGV[4]` is empty (it keeps the one it has). `ARGV[2]`
/// empty deletes it.
const CAS: &str = r#"
local current = redis.call('HGET', KEYS[1], 'v') or ''
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[3], 'd', ARGV[2], 'r', ARGV[5])
  if ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
end
return 1
"#;

/// Takes the members of a sorted set scored at most `ARGV[1]`, at most `ARGV[2]` of them.
const POP_DUE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"#;

/// Takes a set's members and deletes it.
const TAKE_SET: &str = r#"
local members = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return members
"#;

pub struct RedisDirectory {
    backend: Backend,
    conn: Mutex<Conn>,
    in_flight: tokio::sync::Semaphore,
    scripts: Scripts,
    /// Versions of the records this replica writes.
    versions: records::Versions,
    metrics: Metrics,
    health: Mutex<Health>,
    /// The gateways whose inboxes this replica reads, and how to stop each.
    readers: Mutex<HashMap<GatewayId, CancellationToken>>,
    tasks: TaskTracker,
    /// Ends every reader.
    stop: CancellationToken,
}

struct Scripts {
    cas: Script,
    pop_due: Script,
    take_set: Script,
}

/// The store's reachability, for readiness, and when to replace the shared connection.
struct Health {
    /// The last failure, while no command has succeeded since.
    failing: Option<String>,
    /// When a command last succeeded.
    succeeded: Instant,
    /// When the shared connection was last replaced.
    replaced: Option<Instant>,
}

impl Health {
    fn new() -> Self {
        Self {
            failing: None,
            succeeded: Instant::now(),
            replaced: None,
        }
    }

    /// Whether to replace the shared connection after a failed command: one that has answered
    /// nothing for twice the response timeout. A connection can stay open and stop answering:
    /// seen under an overload, where every later command timed out long after Redis was idle
    /// again, on connections that reconnect only once theirs closes. (A batching connection
    /// drops a socket whose batch timed out; a Cluster's is replaced.) At most once per response
    /// timeout, however many commands fail meanwhile.
    fn replace_after(&mut self, error: &redis::RedisError) -> bool {
        let now = Instant::now();
        let recently = |at: Instant| now.duration_since(at) < connection::RESPONSE_TIMEOUT;
        if self.replaced.is_some_and(recently) {
            return false;
        }
        let silent = error.is_timeout()
            && now.duration_since(self.succeeded) >= connection::RESPONSE_TIMEOUT * 2;
        if silent {
            self.replaced = Some(now);
        }
        silent
    }
}

impl RedisDirectory {
    /// Connects to `url`; the first connection must succeed (later ones reconnect by
    /// themselves).
    pub async fn connect(url: &StoreUrl, metrics: Metrics) -> anyhow::Result<Arc<Self>> {
        let backend = Backend::new(url)?;
        let conn = backend.connect(None).await?;
        let directory = Arc::new(Self {
            backend,
            conn: Mutex::new(conn),
            in_flight: tokio::sync::Semaphore::new(IN_FLIGHT),
            scripts: Scripts {
                cas: Script::new(CAS),
                pop_due: Script::new(POP_DUE),
                take_set: Script::new(TAKE_SET),
            },
            versions: records::Versions::new(),
            metrics,
            health: Mutex::new(Health::new()),
            readers: Mutex::default(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        });
        directory.ping().await?;
        Ok(directory)
    }

    /// Why the store cannot be used right now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        lock(&self.health).failing.clone()
    }

    /// Checks the store is reachable, for readiness while nothing else is asked of it.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn();
        let _: String = self
            .run("PING", async {
                redis::cmd("PING").query_async(&mut conn).await
            })
            .await?;
        Ok(())
    }

    /// Stops every inbox reader.
    pub async fn close(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn conn(&self) -> Conn {
        lock(&self.conn).clone()
    }

    /// Runs one store operation: timed, counted, traced as a client span of the current trace
    /// when spans are exported, and its failure made an [`StoreError::Unavailable`].
    async fn run<T>(
        &self,
        operation: &'static str,
        command: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        let span = if svc_common::telemetry::exporting() {
            tracing::info_span!(
                "redis",
                otel.name = operation,
                otel.kind = "client",
                db.system.name = "redis",
                db.operation.name = operation,
            )
        } else {
            tracing::Span::none()
        };
        let _turn = self
            .in_flight
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"));
        let started = Instant::now();
        let outcome = command.instrument(span).await;
        let finished = Instant::now();
        self.metrics
            .store(operation, finished - started, outcome.is_ok());
        match outcome {
            Ok(value) => {
                let mut health = lock(&self.health);
                health.failing = None;
                health.succeeded = finished;
                Ok(value)
            }
            Err(error) => {
                let problem = error.to_string();
                let replace = {
                    let mut health = lock(&self.health);
                    health.failing = Some(problem.clone());
                    health.replace_after(&error)
                };
                if replace {
                    tracing::warn!(error = %problem, "replacing the connection to the store");
                    self.reconnect().await;
                }
                Err(StoreError::Unavailable(problem))
            }
        }
    }

    /// A new shared connection (Sentinel: to whichever server is master now).
    async fn reconnect(&self) {
        match self.backend.connect(None).await {
            Ok(conn) => *lock(&self.conn) = conn,
            Err(error) => tracing::warn!(%error, "cannot reconnect to the store"),
        }
    }
}

impl Directory for Arc<RedisDirectory> {
    async fn update<T, F>(&self, name: &Name, change: F) -> Result<T>
    where
        T: Send,
        F: FnMut(Option<&UserRecord>) -> Change<T> + Send,
    {
        self.update_record(name, change).await
    }

    async fn route(&self, name: &Name) -> Result<Option<Route>> {
        self.route_of(name).await
    }

    async fn deliver(&self, deliveries: &[Delivery]) -> Result<()> {
        self.deliver_all(deliveries).await
    }

    async fn subscribe(
        &self,
        gateway: GatewayId,
        from: Option<String>,
        sink: InboxSink,
    ) -> Result<()> {
        self.subscribe_reader(gateway, from, sink).await
    }

    async fn received(&self, gateway: GatewayId, position: &str) -> Result<()> {
        self.note_received(gateway, position).await
    }

    async fn redeliver(&self, from: SessionKey, to: SessionKey) -> Result<usize> {
        self.redeliver_to(from, to).await
    }

    async fn schedule(&self, at: Timestamp, timer: Timer) -> Result<()> {
        self.schedule_timer(at, timer).await
    }

    async fn cancel(&self, timer: &Timer) -> Result<()> {
        self.cancel_timer(timer).await
    }

    async fn due(&self, now: Timestamp) -> Result<Vec<Timer>> {
        self.take_due(now).await
    }

    async fn track(&self, gateway: GatewayId, name: &Name, held: bool) -> Result<()> {
        self.track_name(gateway, name, held).await
    }

    async fn seen(&self, gateway: GatewayId, now: Timestamp) -> Result<()> {
        self.mark_seen(gateway, now).await
    }

    async fn lost_gateways(&self, before: Timestamp) -> Result<Vec<GatewayId>> {
        self.take_lost(before).await
    }

    async fn tracked(&self, gateway: GatewayId) -> Result<Vec<Name>> {
        self.take_tracked(gateway).await
    }

    async fn epoch(&self) -> Result<String> {
        self.read_epoch().await
    }
    async fn load(&self, name: &Name) -> Result<Option<UserRecord>> {
        Ok(self.load_versioned(name).await?.1)
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }

    fn knows_deadlines(&self) -> bool {
        false
    }

    fn counts(&self) -> Counts {
        // Shared across replicas: Redis' own keyspace metrics count them.
        Counts::default()
    }

    async fn renew(&self, gateway: GatewayId) -> Result<()> {
        self.renew_leases(gateway).await
    }

    fn shared(&self) -> bool {
        true
    }

    fn problem(&self) -> Option<String> {
        RedisDirectory::problem(self).map(|problem| format!("redis unreachable: {problem}"))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_user_and_of_one_gateway_share_a_hash_tag() {
        let name = Name::parse("alice").expect("valid");
        assert_eq!(record_key(&name), "sig:u:{alice}");
        let gateway = GatewayId(0xab);
        assert_eq!(inbox_key(gateway), "sig:gw:{00000000000000ab}:inbox");
        assert_eq!(names_key(gateway), "sig:gw:{00000000000000ab}:names");
    }

    fn timed_out() -> redis::RedisError {
        std::io::Error::from(std::io::ErrorKind::TimedOut).into()
    }

    #[test]
    fn a_connection_that_has_answered_nothing_for_a_while_is_replaced_once_per_timeout() {
        let mut health = Health::new();
        assert!(
            !health.replace_after(&timed_out()),
            "a timeout right after a success is load, not a dead connection"
        );
        health.succeeded = Instant::now() - connection::RESPONSE_TIMEOUT * 2;
        assert!(health.replace_after(&timed_out()));
        assert!(
            !health.replace_after(&timed_out()),
            "the commands failing meanwhile do not replace it again"
        );
        health.replaced = Some(Instant::now() - connection::RESPONSE_TIMEOUT);
        assert!(health.replace_after(&timed_out()));
    }

    #[test]
    fn an_answer_even_an_error_never_replaces_the_connection() {
        let mut health = Health::new();
        health.succeeded = Instant::now() - connection::RESPONSE_TIMEOUT * 2;
        let refused: redis::RedisError = (
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "WRONGTYPE",
        )
            .into();
        assert!(!health.replace_after(&refused));
    }
}
