//! Records: read with their version, written by compare-and-set.

use super::*;

impl RedisDirectory {
    /// The record of `name` with its version (`""` when absent).
    pub(super) async fn load_versioned(&self, name: &Name) -> Result<(String, Option<UserRecord>)> {
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

    /// Writes `record` (or deletes it) if `name`'s record is still at `version` (`was`, as
    /// read there).
    pub(super) async fn compare_and_set(
        &self,
        name: &Name,
        version: &str,
        was: Option<&UserRecord>,
        record: Option<&UserRecord>,
    ) -> Result<bool> {
        let data = match record {
            Some(record) => serde_json::to_vec(record)
                .map_err(|error| StoreError::Unavailable(error.to_string()))?,
            None => Vec::new(),
        };
        // A live session's record is renewed by its gateway's reader, so one that stays live
        // keeps the lease it has (`""`: no PEXPIRE); an away user's record lives out its grace
        // period.
        let live = |r: &UserRecord| r.away_until.is_none();
        let ttl = match record.and_then(|r| r.away_until) {
            _ if was.is_some_and(live) && record.is_some_and(live) => String::new(),
            Some(until) => millis(
                until
                    .saturating_since(Timestamp::now())
                    .saturating_add(AWAY_SLACK),
            )
            .to_string(),
            None => millis(LEASE).to_string(),
        };
        let mut conn = self.conn();
        let written: i64 = self
            .run("EVALSHA cas", async {
                self.scripts
                    .cas
                    .key(record_key(name))
                    .arg(version)
                    .arg(data)
                    .arg(self.versions.next())
                    .arg(ttl)
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

    pub(super) async fn update_record<T, F>(&self, name: &Name, mut change: F) -> Result<T>
    where
        T: Send,
        F: FnMut(Option<&UserRecord>) -> Change<T> + Send,
    {
        for _ in 0..CAS_ATTEMPTS {
            let (version, current) = self.load_versioned(name).await?;
            let written = match change(current.as_ref()) {
                Change::Keep(value) => return Ok(value),
                Change::Put(record, value) => self
                    .compare_and_set(name, &version, current.as_ref(), Some(&record))
                    .await?
                    .then_some(value),
                Change::Delete(value) => self
                    .compare_and_set(name, &version, current.as_ref(), None)
                    .await?
                    .then_some(value),
            };
            if let Some(value) = written {
                return Ok(value);
            }
        }
        Err(StoreError::Contended(name.clone()))
    }

    pub(super) async fn route_of(&self, name: &Name) -> Result<Option<Route>> {
        let mut conn = self.conn();
        let route: Option<String> = self
            .run("HGET", async { conn.hget(record_key(name), "r").await })
            .await?;
        Ok(route.as_deref().and_then(Route::decode))
    }
}

/// Versions of records: never the same twice, across replicas and restarts (a random prefix
/// per replica, a count after it), without asking the OS for randomness on every write.
pub(super) struct Versions {
    prefix: String,
    written: std::sync::atomic::AtomicU64,
}

impl Versions {
    pub(super) fn new() -> Self {
        Self {
            prefix: svc_common::random_hex(8),
            written: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self
            .written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}{n:x}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Versions;

    #[test]
    fn versions_never_repeat_within_a_replica_or_across_two() {
        let (one, other) = (Versions::new(), Versions::new());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(one.next()));
            assert!(seen.insert(other.next()));
        }
    }
}
