//! Inboxes: a stream per gateway, written by any replica, read by the one the gateway chose.

use super::*;

impl RedisDirectory {
    pub(super) async fn deliver_all(&self, deliveries: &[Delivery]) -> Result<()> {
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
            append(&mut pipes[at].1, gateway, data);
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

    pub(super) async fn subscribe_reader(
        self: &Arc<Self>,
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

    /// Reads `gateway`'s inbox from `from` into `sink` until cut.
    pub(super) async fn read_inbox(
        self: Arc<Self>,
        gateway: GatewayId,
        from: String,
        inbox: InboxSink,
    ) {
        let key = inbox_key(gateway);
        let mut position = from;
        let mut conn: Option<Conn> = None;
        let mut delay = Duration::from_millis(100);
        // The first delivery creates the stream, without a time to live: it gets the lease
        // once it is seen to exist (then renewed with the gateway's other keys), so an inbox
        // never outlives everything that knew its gateway.
        let mut leased = false;
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
                read = reader.xread_options::<_, _, redis::Value>(&keys, &ids, &options) => read,
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
            let mut read = 0;
            for (id, data) in entries(first_stream(reply)) {
                read += 1;
                position.clone_from(&id);
                let Some(data) = data else {
                    continue;
                };
                let Ok(message) = SessionMessage::decode(data.as_slice()) else {
                    tracing::warn!(%gateway, %id, "unreadable delivery in the inbox; skipped");
                    continue;
                };
                let inbound = Inbound {
                    position: Some(id),
                    message,
                };
                tokio::select! {
                    () = inbox.cut.cancelled() => return,
                    sent = inbox.sink.send(inbound) => if sent.is_err() { return },
                }
            }
            if read > 0 && !leased {
                leased = self.lease(&key).await.is_ok();
            }
            // What arrives right after a delivery waits a moment to go with the next ones: one
            // read (and one wakeup of Redis, this replica and the gateway) for a burst rather
            // than one each. A delivery after a quiet spell goes at once, to the read blocked
            // for it; a full batch means more are waiting already.
            if read > 0 && read < INBOX_BATCH {
                tokio::select! {
                    () = inbox.cut.cancelled() => return,
                    () = self.stop.cancelled() => return,
                    () = tokio::time::sleep(INBOX_LINGER) => {}
                }
            }
        }
    }

    /// Gives `key` (an inbox) the lease of its gateway's keys.
    async fn lease(&self, key: &str) -> Result<()> {
        let mut conn = self.conn();
        self.run("PEXPIRE", async {
            conn.pexpire::<_, ()>(key, millis(LEASE) as i64).await
        })
        .await
    }

    pub(super) async fn pause(&self, cut: &CancellationToken, delay: &mut Duration) {
        tokio::select! {
            () = cut.cancelled() => {}
            () = tokio::time::sleep(*delay) => {}
        }
        *delay = (*delay * 2).min(Duration::from_secs(2));
    }

    pub(super) async fn note_received(&self, gateway: GatewayId, position: &str) -> Result<()> {
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

    pub(super) async fn redeliver_to(&self, from: SessionKey, to: SessionKey) -> Result<usize> {
        let mut conn = self.conn();
        let inbox = inbox_key(from.gateway);
        let received: Option<String> = self
            .run("GET received", async {
                conn.get(received_key(from.gateway)).await
            })
            .await?;
        // Exclusive of what the gateway said it received.
        let start = received.map_or_else(|| "-".to_owned(), |p| format!("({p}"));
        let reply: redis::Value = self
            .run("XRANGE", async {
                conn.xrange_count(&inbox, &start, "+", INBOX_LENGTH).await
            })
            .await?;
        let mut again = Vec::new();
        for (_, data) in entries(reply) {
            let Some(Ok(mut message)) = data.map(|d| SessionMessage::decode(d.as_slice())) else {
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
            append(&mut pipe, to.gateway, data);
        }
        self.run("XADD", async { pipe.query_async::<()>(&mut conn).await })
            .await?;
        Ok(count)
    }
}

/// Appends one encoded delivery to `gateway`'s inbox stream (capped, roughly, at its length).
fn append(pipe: &mut redis::Pipeline, gateway: GatewayId, data: Vec<u8>) {
    pipe.cmd("XADD")
        .arg(inbox_key(gateway))
        .arg("MAXLEN")
        .arg("~")
        .arg(INBOX_LENGTH)
        .arg("*")
        .arg("d")
        .arg(data)
        .ignore();
}

/// One stream's part of an XREAD reply (nil when the wait ran out): its entries.
fn first_stream(reply: redis::Value) -> redis::Value {
    use redis::Value;
    match reply {
        // RESP2: [[key, entries]]
        Value::Array(streams) => streams
            .into_iter()
            .next()
            .and_then(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .unwrap_or(Value::Nil),
        // RESP3: {key: entries}
        Value::Map(streams) => streams
            .into_iter()
            .next()
            .map_or(Value::Nil, |(_, entries)| entries),
        _ => Value::Nil,
    }
}

/// The entries of one stream, as XRANGE answers them: each one's id and delivery (`None` when
/// it carries none). Read straight from the reply: the inbox is the hot path of every relayed
/// message, and a map per entry was most of the cost of reading it.
fn entries(reply: redis::Value) -> Vec<(String, Option<Vec<u8>>)> {
    use redis::Value;
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    let text = |value: Value| match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(entry) = entry else {
                return None;
            };
            let mut entry = entry.into_iter();
            let id = text(entry.next()?)?;
            let fields: Vec<(Value, Value)> = match entry.next() {
                Some(Value::Array(flat)) => {
                    let mut flat = flat.into_iter();
                    std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
                }
                Some(Value::Map(pairs)) => pairs,
                _ => Vec::new(),
            };
            let data = fields
                .into_iter()
                .find_map(|(name, value)| match (name, value) {
                    (Value::BulkString(name), Value::BulkString(data)) if name == b"d" => {
                        Some(data)
                    }
                    _ => None,
                });
            Some((id, data))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::{entries, first_stream};

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn an_xread_reply_gives_its_entries_in_order_with_their_deliveries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("sig:gw:{00000000000000ab}:inbox"),
            Value::Array(vec![
                entry("1-0", &["d", "first"]),
                entry("1-1", &["other", "x"]),
                entry("2-0", &["other", "x", "d", "third"]),
            ]),
        ])]);
        assert_eq!(
            entries(first_stream(reply)),
            vec![
                ("1-0".to_owned(), Some(b"first".to_vec())),
                ("1-1".to_owned(), None),
                ("2-0".to_owned(), Some(b"third".to_vec())),
            ]
        );
    }

    #[test]
    fn a_resp3_reply_reads_the_same() {
        let reply = Value::Map(vec![(
            bulk("inbox"),
            Value::Array(vec![Value::Array(vec![
                bulk("5-0"),
                Value::Map(vec![(bulk("d"), bulk("data"))]),
            ])]),
        )]);
        assert_eq!(
            entries(first_stream(reply)),
            vec![("5-0".to_owned(), Some(b"data".to_vec()))]
        );
    }

    #[test]
    fn a_wait_that_ran_out_has_no_entries() {
        assert!(entries(first_stream(Value::Nil)).is_empty());
        assert!(entries(Value::Nil).is_empty());
    }
}
