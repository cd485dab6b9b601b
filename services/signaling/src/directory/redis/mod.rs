//! The directory in Redis, shared by every signaling replica.
//!
//! **Records** (`sig:u:{<name>}`, a hash of `v` and `d`): each change is an optimistic
//! compare-and-set. The record is read with its version, the switchboard's pure rule computes
//! the new record, and a Lua script writes it only if the version is still the one read;
//! otherwise the rule runs again on what another replica wrote. The rule stays in Rust (tested
//! without Redis) and Redis settles who was first, atomically, on one key. The version is a
//! random token per write rather than a counter, so a record deleted and re-created in between
//! can never be mistaken for the one read. MULTI/WATCH would do the same but needs a connection
//! per transaction; a script runs on the shared multiplexed connection.
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

mod connection;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prost::Message as _;
use redis::{AsyncCommands, RedisResult, Script, streams::StreamReadReply};
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
/// How often a compare-and-set may lose before the change gives up.
const CAS_ATTEMPTS: usize = 32;

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
/// record). `ARGV[2]` empty deletes it.
const CAS: &str = r#"
local current = redis.call('HGET', KEYS[1], 'v') or ''
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[3], 'd', ARGV[2], 'r', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
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
    scripts: Scripts,
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

/// The store's reachability, for readiness.
#[derive(Default)]
struct Health {
    /// The last failure, while no command has succeeded since.
    failing: Option<String>,
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
            scripts: Scripts {
                cas: Script::new(CAS),
                pop_due: Script::new(POP_DUE),
                take_set: Script::new(TAKE_SET),
            },
            metrics,
            health: Mutex::default(),
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

    /// Renews the lease of every key of `gateway`'s sessions: their records, their names
    /// set, their inbox. The reader of a gateway does this, so a gateway that vanishes with
    /// every replica it knew still has its keys reclaimed.
    pub async fn renew(&self, gateway: GatewayId) -> Result<()> {
        let mut conn = self.conn();
        let ttl = millis(LEASE);
        let names: Vec<String> = self
            .run("SMEMBERS", async {
                conn.smembers(names_key(gateway)).await
            })
            .await?;
        // One command per key, concurrently: the keys live in different hash slots, which a
        // Cluster pipeline cannot mix.
        let keys = names
            .iter()
            .map(|name| format!("sig:u:{{{name}}}"))
            .chain([names_key(gateway), inbox_key(gateway)]);
        self.run("PEXPIRE", async {
            let renewals = keys.map(|key| {
                let mut conn = conn.clone();
                async move { conn.pexpire::<_, ()>(key, ttl as i64).await }
            });
            futures_util::future::try_join_all(renewals).await.map(drop)
        })
        .await
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
        let started = Instant::now();
        let outcome = command.instrument(span).await;
        self.metrics
            .store(operation, started.elapsed(), outcome.is_ok());
        match outcome {
            Ok(value) => {
                lock(&self.health).failing = None;
                Ok(value)
            }
            Err(error) => {
                let problem = error.to_string();
                lock(&self.health).failing = Some(problem.clone());
                if !self.backend.self_healing() && (error.is_io_error() || error.is_timeout()) {
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

    /// The record of `name` with its version (`""` when absent).
    async fn load_versioned(&self, name: &Name) -> Result<(String, Option<UserRecord>)> {
        let mut conn = self.conn();
        let key = record_key(name);
        let (version, data): (Option<String>, Option<Vec<u8>>) = self
            .run("HMGET", async {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("v")
                    .arg("d")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let record = match data {
            Some(data) => Some(serde_json::from_slice(&data).map_err(|error| {
                StoreError::Unavailable(format!("the record of {name} is unreadable: {error}"))
            })?),
            None => None,
        };
        Ok((version.unwrap_or_default(), record))
    }

    /// Writes `record` (or deletes it) if `name`'s record is still at `version`.
    async fn compare_and_set(
        &self,
        name: &Name,
        version: &str,
        record: Option<&UserRecord>,
    ) -> Result<bool> {
        let data = match record {
            Some(record) => serde_json::to_vec(record)
                .map_err(|error| StoreError::Unavailable(error.to_string()))?,
            None => Vec::new(),
        };
        // A live session's record is renewed by its gateway's reader; an away user's record
        // lives out its grace period.
        let ttl = match record.and_then(|r| r.away_until) {
            Some(until) => until
                .saturating_since(Timestamp::now())
                .saturating_add(AWAY_SLACK),
            None => LEASE,
        };
        let mut conn = self.conn();
        let written: i64 = self
            .run("EVALSHA cas", async {
                self.scripts
                    .cas
                    .key(record_key(name))
                    .arg(version)
                    .arg(data)
                    .arg(svc_common::random_hex(8))
                    .arg(millis(ttl))
                    .arg(
                        record
                            .and_then(UserRecord::route)
                            .map(|r| r.encode())
                            .unwrap_or_default(),
                    )
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(written == 1)
    }

    /// Reads `gateway`'s inbox from `from` into `sink` until cut.
    async fn read_inbox(self: Arc<Self>, gateway: GatewayId, from: String, inbox: InboxSink) {
        let key = inbox_key(gateway);
        let mut position = from;
        let mut conn: Option<Conn> = None;
        let mut delay = Duration::from_millis(100);
        loop {
            if inbox.cut.is_cancelled() || self.stop.is_cancelled() {
                return;
            }
            let reader = match &mut conn {
                Some(conn) => conn,
                None => match self.backend.connect(Some(INBOX_BLOCK)).await {
                    Ok(new) => conn.insert(new),
                    Err(error) => {
                        tracing::warn!(%gateway, %error, "cannot connect to read the inbox");
                        self.pause(&inbox.cut, &mut delay).await;
                        continue;
                    }
                },
            };
            let options = redis::streams::StreamReadOptions::default()
                .block(millis(INBOX_BLOCK) as usize)
                .count(INBOX_BATCH);
            let (keys, ids) = ([&key], [&position]);
            let read = tokio::select! {
                () = inbox.cut.cancelled() => return,
                () = self.stop.cancelled() => return,
                read = reader.xread_options::<_, _, StreamReadReply>(&keys, &ids, &options) => read,
            };
            let reply = match read {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::warn!(%gateway, %error, "cannot read the inbox; retrying");
                    self.metrics.store("XREAD", Duration::ZERO, false);
                    conn = None;
                    self.pause(&inbox.cut, &mut delay).await;
                    continue;
                }
            };
            delay = Duration::from_millis(100);
            for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                position = entry.id.clone();
                let Some(redis::Value::BulkString(data)) = entry.map.get("d") else {
                    continue;
                };
                let Ok(message) = SessionMessage::decode(data.as_slice()) else {
                    tracing::warn!(%gateway, id = %entry.id, "unreadable delivery in the inbox; skipped");
                    continue;
                };
                let inbound = Inbound {
                    position: Some(entry.id),
                    message,
                };
                tokio::select! {
                    () = inbox.cut.cancelled() => return,
                    sent = inbox.sink.send(inbound) => if sent.is_err() { return },
                }
            }
        }
    }

    async fn pause(&self, cut: &CancellationToken, delay: &mut Duration) {
        tokio::select! {
            () = cut.cancelled() => {}
            () = tokio::time::sleep(*delay) => {}
        }
        *delay = (*delay * 2).min(Duration::from_secs(2));
    }
}

impl Directory for Arc<RedisDirectory> {
    async fn load(&self, name: &Name) -> Result<Option<UserRecord>> {
        Ok(self.load_versioned(name).await?.1)
    }

    async fn update<T, F>(&self, name: &Name, mut change: F) -> Result<T>
    where
        T: Send,
        F: FnMut(Option<&UserRecord>) -> Change<T> + Send,
    {
        for _ in 0..CAS_ATTEMPTS {
            let (version, current) = self.load_versioned(name).await?;
            let written = match change(current.as_ref()) {
                Change::Keep(value) => return Ok(value),
                Change::Put(record, value) => self
                    .compare_and_set(name, &version, Some(&record))
                    .await?
                    .then_some(value),
                Change::Delete(value) => self
                    .compare_and_set(name, &version, None)
                    .await?
                    .then_some(value),
            };
            if let Some(value) = written {
                return Ok(value);
            }
        }
        Err(StoreError::Contended(name.clone()))
    }

    async fn route(&self, name: &Name) -> Result<Option<Route>> {
        let mut conn = self.conn();
        let route: Option<String> = self
            .run("HGET", async { conn.hget(record_key(name), "r").await })
            .await?;
        Ok(route.as_deref().and_then(Route::decode))
    }

    async fn deliver(&self, deliveries: &[Delivery]) -> Result<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        // One pipeline per gateway, in order (a gateway's inbox is one key, one hash slot);
        // the gateways concurrently.
        let mut pipes: Vec<(GatewayId, redis::Pipeline)> = Vec::new();
        for delivery in deliveries {
            let gateway = delivery.to.gateway;
            // As it goes on the wire: the reader forwards it as it is.
            let data = crate::wire::session_message(delivery).encode_to_vec();
            let at = match pipes.iter().position(|(g, _)| *g == gateway) {
                Some(at) => at,
                None => {
                    pipes.push((gateway, redis::pipe()));
                    pipes.len() - 1
                }
            };
            pipes[at]
                .1
                .cmd("XADD")
                .arg(inbox_key(gateway))
                .arg("MAXLEN")
                .arg("~")
                .arg(INBOX_LENGTH)
                .arg("*")
                .arg("d")
                .arg(data)
                .ignore();
        }
        let conn = self.conn();
        self.run("XADD", async {
            let sends = pipes.into_iter().map(|(_, pipe)| {
                let mut conn = conn.clone();
                async move { pipe.query_async::<()>(&mut conn).await }
            });
            futures_util::future::try_join_all(sends).await.map(drop)
        })
        .await
    }

    async fn subscribe(
        &self,
        gateway: GatewayId,
        from: Option<String>,
        sink: InboxSink,
    ) -> Result<()> {
        let cut = sink.cut.clone();
        if let Some(old) = lock(&self.readers).insert(gateway, cut.clone()) {
            old.cancel();
        }
        let from = from
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "0-0".into());
        self.tasks
            .spawn(Arc::clone(self).read_inbox(gateway, from, sink));
        Ok(())
    }

    async fn received(&self, gateway: GatewayId, position: &str) -> Result<()> {
        let mut conn = self.conn();
        let (key, inbox) = (received_key(gateway), inbox_key(gateway));
        self.run("SET received", async {
            // Same hash slot (the gateway's tag): one pipeline.
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(&key)
                .arg(position)
                .arg("PX")
                .arg(millis(LEASE))
                .ignore();
            // What the gateway has is no longer needed for a resume elsewhere.
            pipe.cmd("XTRIM")
                .arg(&inbox)
                .arg("MINID")
                .arg("~")
                .arg(position)
                .ignore();
            pipe.query_async::<()>(&mut conn).await
        })
        .await
    }

    async fn redeliver(&self, from: SessionKey, to: SessionKey) -> Result<usize> {
        let mut conn = self.conn();
        let inbox = inbox_key(from.gateway);
        let received: Option<String> = self
            .run("GET received", async {
                conn.get(received_key(from.gateway)).await
            })
            .await?;
        // Exclusive of what the gateway said it received.
        let start = received.map_or_else(|| "-".to_owned(), |p| format!("({p}"));
        let entries: redis::streams::StreamRangeReply = self
            .run("XRANGE", async {
                conn.xrange_count(&inbox, &start, "+", INBOX_LENGTH).await
            })
            .await?;
        let mut again = Vec::new();
        for entry in entries.ids {
            let Some(redis::Value::BulkString(data)) = entry.map.get("d") else {
                continue;
            };
            let Ok(mut message) = SessionMessage::decode(data.as_slice()) else {
                continue;
            };
            // What a call in progress carries, which comes twice harmlessly (a candidate added
            // twice is added once; a call ends once): the gateway may have passed on some of
            // it after the last position it reported.
            let harmless = matches!(
                message.body,
                Some(Out::Candidate(_) | Out::StopCommunication(_))
            );
            if message.session_id == from.session && harmless {
                message.session_id = to.session;
                again.push(message.encode_to_vec());
            }
        }
        if again.is_empty() {
            return Ok(0);
        }
        let count = again.len();
        let mut pipe = redis::pipe();
        for data in again {
            pipe.cmd("XADD")
                .arg(inbox_key(to.gateway))
                .arg("MAXLEN")
                .arg("~")
                .arg(INBOX_LENGTH)
                .arg("*")
                .arg("d")
                .arg(data)
                .ignore();
        }
        self.run("XADD", async { pipe.query_async::<()>(&mut conn).await })
            .await?;
        Ok(count)
    }

    async fn schedule(&self, at: Timestamp, timer: Timer) -> Result<()> {
        let mut conn = self.conn();
        self.run("ZADD", async {
            conn.zadd::<_, _, _, ()>(TIMERS, timer_member(&timer), at.0)
                .await
        })
        .await
    }

    async fn cancel(&self, timer: &Timer) -> Result<()> {
        let mut conn = self.conn();
        self.run("ZREM", async {
            conn.zrem::<_, _, ()>(TIMERS, timer_member(timer)).await
        })
        .await
    }

    async fn due(&self, now: Timestamp) -> Result<Vec<Timer>> {
        let mut conn = self.conn();
        let members: Vec<String> = self
            .run("EVALSHA pop_due", async {
                self.scripts
                    .pop_due
                    .key(TIMERS)
                    .arg(now.0)
                    .arg(256)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(members.iter().filter_map(|m| parse_timer(m)).collect())
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }

    fn knows_deadlines(&self) -> bool {
        false
    }

    async fn track(&self, gateway: GatewayId, name: &Name, held: bool) -> Result<()> {
        let mut conn = self.conn();
        let key = names_key(gateway);
        self.run(if held { "SADD" } else { "SREM" }, async {
            if held {
                let mut pipe = redis::pipe();
                pipe.sadd(&key, name.as_str())
                    .ignore()
                    .pexpire(&key, millis(LEASE) as i64)
                    .ignore();
                pipe.query_async::<()>(&mut conn).await
            } else {
                conn.srem::<_, _, ()>(&key, name.as_str()).await
            }
        })
        .await
    }

    async fn seen(&self, gateway: GatewayId, now: Timestamp) -> Result<()> {
        let mut conn = self.conn();
        self.run("ZADD", async {
            conn.zadd::<_, _, _, ()>(GATEWAYS, gateway.to_string(), now.0)
                .await
        })
        .await
    }

    async fn lost_gateways(&self, before: Timestamp) -> Result<Vec<GatewayId>> {
        let mut conn = self.conn();
        let members: Vec<String> = self
            .run("EVALSHA pop_due", async {
                self.scripts
                    .pop_due
                    .key(GATEWAYS)
                    // Scored by when last seen: everything seen before `before`.
                    .arg(before.0.saturating_sub(1))
                    .arg(64)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(members.iter().filter_map(|m| m.parse().ok()).collect())
    }

    async fn tracked(&self, gateway: GatewayId) -> Result<Vec<Name>> {
        let mut conn = self.conn();
        let names: Vec<String> = self
            .run("EVALSHA take_set", async {
                self.scripts
                    .take_set
                    .key(names_key(gateway))
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        // Its inbox is nobody's now.
        let _: Result<()> = self
            .run("DEL", async { conn.del::<_, ()>(inbox_key(gateway)).await })
            .await;
        Ok(names.iter().filter_map(|n| Name::parse(n).ok()).collect())
    }

    fn counts(&self) -> Counts {
        // Shared across replicas: Redis' own keyspace metrics count them.
        Counts::default()
    }

    async fn epoch(&self) -> Result<String> {
        let mut conn = self.conn();
        // Set once by whichever replica finds it missing: a store that lost its data (a
        // restart without persistence, a failover to a stale replica) gets a new one.
        let candidate = svc_common::random_hex(8);
        let (_, epoch): ((), String) = self
            .run("SET NX", async {
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(EPOCH)
                    .arg(&candidate)
                    .arg("NX")
                    .ignore()
                    .cmd("GET")
                    .arg(EPOCH);
                pipe.query_async::<(String,)>(&mut conn)
                    .await
                    .map(|(epoch,)| ((), epoch))
            })
            .await?;
        Ok(epoch)
    }

    async fn renew(&self, gateway: GatewayId) -> Result<()> {
        RedisDirectory::renew(self, gateway).await
    }

    fn shared(&self) -> bool {
        true
    }

    fn problem(&self) -> Option<String> {
        RedisDirectory::problem(self).map(|problem| format!("redis unreachable: {problem}"))
    }
}

/// A timer as a sorted-set member: `r|<call>|<callee>` or `g|<epoch>|<name>`.
fn timer_member(timer: &Timer) -> String {
    match timer {
        Timer::Ring { callee, call } => format!("r|{call}|{callee}"),
        Timer::Grace { name, epoch } => format!("g|{epoch}|{name}"),
    }
}

fn parse_timer(member: &str) -> Option<Timer> {
    let mut parts = member.splitn(3, '|');
    let (kind, id, name) = (parts.next()?, parts.next()?, parts.next()?);
    let name = Name::parse(name).ok()?;
    match kind {
        "r" => Some(Timer::Ring {
            callee: name,
            call: id.parse::<CallId>().ok()?,
        }),
        "g" => Some(Timer::Grace {
            name,
            epoch: id.parse().ok()?,
        }),
        _ => None,
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
    fn timers_round_trip_as_members() {
        let name = Name::parse("a.b-c@d+e").expect("valid");
        for timer in [
            Timer::Ring {
                callee: name.clone(),
                call: CallId(0xdead_beef),
            },
            Timer::Grace { name, epoch: 7 },
        ] {
            assert_eq!(parse_timer(&timer_member(&timer)), Some(timer));
        }
        assert_eq!(parse_timer("x|1|a"), None);
    }

    #[test]
    fn keys_of_one_user_and_of_one_gateway_share_a_hash_tag() {
        let name = Name::parse("alice").expect("valid");
        assert_eq!(record_key(&name), "sig:u:{alice}");
        let gateway = GatewayId(0xab);
        assert_eq!(inbox_key(gateway), "sig:gw:{00000000000000ab}:inbox");
        assert_eq!(names_key(gateway), "sig:gw:{00000000000000ab}:names");
    }
}
