//! Housekeeping: timers and gateway liveness popped atomically, the sessions of each gateway,
//! leases, and the store's epoch.

use super::*;

impl RedisDirectory {
    pub(super) async fn schedule_timer(&self, at: Timestamp, timer: Timer) -> Result<()> {
        let mut conn = self.conn();
        self.run("ZADD", async {
            conn.zadd::<_, _, _, ()>(TIMERS, timer_member(&timer), at.0)
                .await
        })
        .await
    }

    pub(super) async fn cancel_timer(&self, timer: &Timer) -> Result<()> {
        let mut conn = self.conn();
        self.run("ZREM", async {
            conn.zrem::<_, _, ()>(TIMERS, timer_member(timer)).await
        })
        .await
    }

    pub(super) async fn take_due(&self, now: Timestamp) -> Result<Vec<Timer>> {
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

    pub(super) async fn track_name(
        &self,
        gateway: GatewayId,
        name: &Name,
        held: bool,
    ) -> Result<()> {
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

    pub(super) async fn mark_seen(&self, gateway: GatewayId, now: Timestamp) -> Result<()> {
        let mut conn = self.conn();
        self.run("ZADD", async {
            conn.zadd::<_, _, _, ()>(GATEWAYS, gateway.to_string(), now.0)
                .await
        })
        .await
    }

    pub(super) async fn take_lost(&self, before: Timestamp) -> Result<Vec<GatewayId>> {
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

    pub(super) async fn take_tracked(&self, gateway: GatewayId) -> Result<Vec<Name>> {
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

    pub(super) async fn read_epoch(&self) -> Result<String> {
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

    /// Renews the lease of every key of `gateway`'s sessions: their records, their names
    /// set, their inbox. The reader of a gateway does this, so a gateway that vanishes with
    /// every replica it knew still has its keys reclaimed.
    pub(super) async fn renew_leases(&self, gateway: GatewayId) -> Result<()> {
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
}
