//! Auto-pipelining: the short commands issued while one batch is on its way to Redis go
//! together as the next batch, in one write and one reply, as ioredis' `enableAutoPipelining`
//! does. Under load a candidate relayed costs Redis and this replica a share of one system call
//! rather than two of their own; when idle, a command goes at once, alone.
//!
//! Batches keep the order commands were issued in, and a command's reply is its own, errors
//! included (a failed command does not fail the others of its batch). The task that makes the
//! batches owns the socket: commands are packed by their issuers, written in one go and their
//! replies parsed where they land (`super::socket`), with no task or channel between. A socket
//! that fails is dropped, and the next batch opens another (through a Sentinel: to whichever
//! server is master then). Not for Redis Cluster, where one batch may span hash slots: its
//! connection routes each command itself.

use std::time::Duration;

use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value, aio::ConnectionLike};
use tokio::sync::{mpsc, oneshot};

use super::{connection::Connector, socket::Socket};

/// The most requests (commands or pipelines) in one batch.
const MAX_BATCH: usize = 512;
/// Requests waiting for the next batch before issuers wait too (the directory's own bound on
/// commands under way is well below it).
const QUEUE: usize = 4096;

/// A handle on a batching connection; its task ends when the last handle is dropped.
#[derive(Clone)]
pub struct Batched {
    requests: mpsc::Sender<Request>,
    db: i64,
}

/// One issuer's commands, packed, answered together.
struct Request {
    packed: Vec<u8>,
    count: usize,
    reply: oneshot::Sender<RedisResult<Vec<Value>>>,
}

impl Batched {
    /// Batches commands over `socket`, then over the sockets `connector` opens when one
    /// fails; each batch must be answered within `timeout`.
    pub fn new(connector: Connector, socket: Socket, timeout: Duration) -> Self {
        let (requests, receiver) = mpsc::channel(QUEUE);
        let db = connector.db();
        tokio::spawn(drive(connector, socket, timeout, receiver));
        Self { requests, db }
    }

    async fn send(&self, packed: Vec<u8>, count: usize) -> RedisResult<Vec<Value>> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            packed,
            count,
            reply,
        };
        self.requests.send(request).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Sends one batch at a time: what arrives meanwhile waits for the next.
async fn drive(
    connector: Connector,
    socket: Socket,
    timeout: Duration,
    mut requests: mpsc::Receiver<Request>,
) {
    let mut socket = Some(socket);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut packed = Vec::new();
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        packed.clear();
        let mut count = 0;
        for request in &batch {
            packed.extend_from_slice(&request.packed);
            count += request.count;
        }
        match exchange(&connector, &mut socket, &packed, count, timeout).await {
            Ok(values) => {
                let mut values = values.into_iter();
                for request in batch.drain(..) {
                    let replies: Vec<Value> = values.by_ref().take(request.count).collect();
                    let _ = request.reply.send(Ok(replies));
                }
            }
            Err(error) => {
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// One batch over the socket, opened first if there is none; a socket that fails is dropped.
async fn exchange(
    connector: &Connector,
    socket: &mut Option<Socket>,
    packed: &[u8],
    count: usize,
    timeout: Duration,
) -> RedisResult<Vec<Value>> {
    let live = match socket {
        Some(live) => live,
        None => socket.insert(connector.open().await?),
    };
    let replies = live.exchange(packed, count, timeout).await;
    if replies.is_err() {
        *socket = None;
    }
    replies
}

impl ConnectionLike for Batched {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut replies = self.send(cmd.get_packed_command(), 1).await?;
            replies.pop().ok_or_else(short)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if pipeline.is_transaction() {
                // Its replies are MULTI's and EXEC's, which a batch does not carry.
                return Err(RedisError::from((
                    redis::ErrorKind::Client,
                    "a transaction cannot be batched",
                )));
            }
            let replies = self
                .send(pipeline.get_packed_pipeline(), pipeline.len())
                .await?;
            Ok(replies.into_iter().skip(offset).take(count).collect())
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

fn gone() -> RedisError {
    RedisError::from((
        redis::ErrorKind::Io,
        "the batching connection to the store is gone",
    ))
}

fn short() -> RedisError {
    RedisError::from((
        redis::ErrorKind::Parse,
        "fewer replies than commands in a batch",
    ))
}

#[cfg(test)]
mod tests {
    use redis::AsyncCommands;
    use testkit::redis::Redis;

    use super::*;
    use crate::directory::redis::connection::{Backend, Conn, StoreUrl};

    async fn batched(redis: &Redis) -> Conn {
        let url: StoreUrl = redis.url().parse().expect("a redis url");
        let conn = Backend::new(&url)
            .expect("a client")
            .connect(None)
            .await
            .expect("connected");
        assert!(
            matches!(conn, Conn::Batched(_)),
            "one server's shared connection batches"
        );
        conn
    }

    #[tokio::test]
    async fn commands_issued_together_each_get_their_own_reply_errors_included() {
        let redis = Redis::start().await;
        let conn = batched(&redis).await;
        let issued = (0..500).map(|n| {
            let mut conn = conn.clone();
            async move {
                let key = format!("k{n}");
                if n % 7 == 0 {
                    // A command that fails fails alone.
                    let _: () = conn.set(&key, "not a number").await?;
                    let failed: RedisResult<i64> = conn.incr(&key, 1).await;
                    assert!(failed.is_err(), "INCR of a string is refused");
                    return Ok(-1);
                }
                let mut pipe = redis::pipe();
                pipe.set(&key, n).ignore().incr(&key, 1).get(&key);
                let (incremented, read): (i64, i64) = pipe.query_async(&mut conn).await?;
                assert_eq!(incremented, read);
                Ok::<i64, RedisError>(read)
            }
        });
        let replies = futures_util::future::try_join_all(issued)
            .await
            .expect("every command answered");
        for (n, reply) in replies.into_iter().enumerate() {
            let expected = if n % 7 == 0 { -1 } else { n as i64 + 1 };
            assert_eq!(reply, expected, "command {n} got its own reply");
        }
    }

    #[tokio::test]
    async fn a_store_that_goes_away_fails_the_commands_meanwhile_and_serves_them_again_after() {
        let mut redis = Redis::start().await;
        let mut conn = batched(&redis).await;
        let _: () = conn.set("before", 1).await.expect("served");
        redis.stop_keeping_data().await;
        let failed: RedisResult<i64> = conn.get("before").await;
        assert!(failed.is_err(), "no store, no reply");
        redis.restart().await;
        let served =
            testkit::eventually(std::time::Duration::from_secs(10), "the store back", || {
                let mut conn = conn.clone();
                async move { conn.get::<_, i64>("before").await.ok() }
            })
            .await;
        assert_eq!(
            served, 1,
            "the same handle serves again, with the data kept"
        );
    }

    #[tokio::test]
    async fn a_transaction_is_refused_rather_than_sent_half() {
        let redis = Redis::start().await;
        let mut conn = batched(&redis).await;
        let mut pipe = redis::pipe();
        pipe.atomic().set("t", 1).ignore();
        let refused: RedisResult<()> = pipe.query_async(&mut conn).await;
        assert!(refused.is_err());
        let absent: Option<i64> = conn.get("t").await.expect("served");
        assert_eq!(absent, None, "nothing of it was written");
    }
}
