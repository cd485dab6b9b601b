//! What a replica does in the background: fire timers, notice lost gateways, retry the ends of
//! sessions the store could not take, and follow the store's epoch.

use super::*;

impl<D: Directory> Hub<D> {
    /// Reads the store's epoch now, then every `every` until `stop` (a store that can lose
    /// its data while this replica runs: Redis).
    pub async fn follow_epoch(self: Arc<Self>, every: Option<Duration>, stop: CancellationToken) {
        loop {
            match self.directory().epoch().await {
                Ok(epoch) => {
                    self.epoch.send_if_modified(|current| {
                        if *current == epoch {
                            return false;
                        }
                        if !current.is_empty() {
                            tracing::warn!(old = %current, new = %epoch, "the store lost its data; gateways assert their sessions again");
                            *lock(&self.epoch_changed) = Some(tokio::time::Instant::now());
                        }
                        *current = epoch;
                        true
                    });
                }
                Err(error) => tracing::warn!(%error, "cannot read the store's epoch"),
            }
            let Some(every) = every else { return };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Fires deadlines (ring timeouts, resume grace) until `stop`.
    pub async fn run_timers(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let wait = match self.board.next_deadline() {
                Some(at) => at.saturating_since(Timestamp::now()),
                None if self.polls_timers() => TIMER_POLL,
                None => Duration::MAX,
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.deadline_changed.notified() => continue,
                () = sleep(wait) => {}
            }
            match self.board.expire(Timestamp::now()).await {
                Ok(handled) => self.dispatch(handled).await,
                Err(error) => tracing::warn!(%error, "cannot fire timers"),
            }
        }
    }

    /// Tries again, every second until `stop`, the ends of sessions the store could not take.
    pub async fn run_retries(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SEEN_EVERY) => {}
            }
            let goodbyes = std::mem::take(&mut *lock(&self.goodbyes));
            for (from, user, command) in goodbyes {
                // A failure puts it back.
                self.handle(from, Some(user), command).await;
            }
        }
    }

    /// Ends the sessions of gateways that stopped being seen, until `stop`. A gateway is only
    /// taken for gone when the store has been reachable for as long as it takes to be missed:
    /// after an outage, every gateway looks unseen until the replicas attached to it say
    /// otherwise.
    pub async fn run_sweeper(self: Arc<Self>, stop: CancellationToken) {
        let mut reachable_since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SEEN_EVERY) => {}
            }
            if self.directory().problem().is_some() {
                reachable_since = tokio::time::Instant::now();
                continue;
            }
            if reachable_since.elapsed() < LOST_AFTER + SEEN_EVERY {
                continue;
            }
            let now = Timestamp::now();
            let lost = match self
                .directory()
                .lost_gateways(Timestamp(now.0.saturating_sub(millis(LOST_AFTER))))
                .await
            {
                Ok(lost) => lost,
                Err(error) => {
                    tracing::warn!(%error, "cannot look for lost gateways");
                    reachable_since = tokio::time::Instant::now();
                    continue;
                }
            };
            for gateway in lost {
                tracing::info!(%gateway, "gateway gone; ending its sessions");
                match self.board.gateway_gone(now, gateway).await {
                    Ok(handled) => self.dispatch(handled).await,
                    Err(error) => {
                        tracing::warn!(%error, %gateway, "cannot end a lost gateway's sessions")
                    }
                }
            }
        }
    }

    /// Whether the store's timers must be polled (it cannot say when the next is due).
    fn polls_timers(&self) -> bool {
        // The in-memory store always knows; a shared one is told of timers set elsewhere.
        !self.directory().knows_deadlines()
    }
}
