//! A session's queue of deliveries: filled by the routing table, emptied by the session's pump,
//! bounded in messages and in bytes (its own, and every session's together). Ended when the
//! browser does not keep up: what it had not read is dropped and its pump is told.
//!
//! One small allocation per session and nothing more while it is empty (a channel would hold a
//! block of slots and its own bookkeeping for every idle browser).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use prost::Message as _;
use stunner_proto::signaling::v1::SessionMessage;
use tokio::sync::Notify;

use super::{ALL_SESSIONS_BYTES, Ended, SESSION_BYTES, lock};

pub struct Mailbox {
    state: Mutex<State>,
    /// Woken on every message queued, and when the mailbox is ended. Only the session's pump
    /// waits on it, so a wake-up is never taken by anyone else.
    changed: Notify,
    /// Messages it may hold.
    capacity: usize,
    /// Bytes queued in every session's mailbox.
    all_queued: Arc<AtomicUsize>,
}

#[derive(Default)]
struct State {
    messages: VecDeque<Box<SessionMessage>>,
    bytes: usize,
    ended: Option<Ended>,
}

impl Mailbox {
    pub fn new(capacity: usize, all_queued: Arc<AtomicUsize>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            changed: Notify::new(),
            capacity,
            all_queued,
        })
    }

    /// Queues `message`; `false` when it does not fit, as the browser is not keeping up.
    pub fn push(&self, message: SessionMessage) -> bool {
        let bytes = message.encoded_len();
        let mut state = lock(&self.state);
        let fits = state.ended.is_none()
            && state.messages.len() < self.capacity
            && state.bytes + bytes <= SESSION_BYTES
            && self.all_queued.load(Ordering::Relaxed) + bytes <= ALL_SESSIONS_BYTES;
        if !fits {
            return false;
        }
        state.bytes += bytes;
        self.all_queued.fetch_add(bytes, Ordering::Relaxed);
        state.messages.push_back(Box::new(message));
        drop(state);
        self.changed.notify_one();
        true
    }

    /// Ends the session's deliveries: what it had not read is dropped, and its pump told.
    pub fn end(&self, reason: Ended) {
        let mut state = lock(&self.state);
        state.ended = Some(reason);
        let unread = std::mem::take(&mut state.messages);
        self.all_queued
            .fetch_sub(std::mem::take(&mut state.bytes), Ordering::Relaxed);
        drop(state);
        drop(unread);
        self.changed.notify_one();
    }

    /// Why the deliveries were ended, if they were.
    pub fn ended_for(&self) -> Option<Ended> {
        lock(&self.state).ended
    }

    /// The next message; `None` once ended.
    pub async fn recv(&self) -> Option<Box<SessionMessage>> {
        loop {
            {
                let mut state = lock(&self.state);
                if state.ended.is_some() {
                    return None;
                }
                if let Some(message) = state.messages.pop_front() {
                    let bytes = message.encoded_len();
                    state.bytes -= bytes;
                    self.all_queued.fetch_sub(bytes, Ordering::Relaxed);
                    return Some(message);
                }
            }
            // A wake-up sent after the check above is kept for this wait (`notify_one`).
            self.changed.notified().await;
        }
    }

    /// Completes once ended. Waits on the same wake-ups as [`Mailbox::recv`]: for use while
    /// the pump is not receiving (a write to the browser under way); the messages that wake it
    /// meanwhile stay queued for the next `recv`.
    pub async fn ended(&self) {
        while lock(&self.state).ended.is_none() {
            self.changed.notified().await;
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        // What was never read leaves the total with the session.
        let state = lock(&self.state);
        self.all_queued.fetch_sub(state.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u64) -> SessionMessage {
        SessionMessage {
            session_id: n,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn messages_come_out_in_order_and_are_counted_until_read() {
        let all = Arc::new(AtomicUsize::new(0));
        let mailbox = Mailbox::new(8, all.clone());
        assert!(mailbox.push(message(1)));
        assert!(mailbox.push(message(2)));
        assert!(all.load(Ordering::Relaxed) > 0);
        assert_eq!(mailbox.recv().await.map(|m| m.session_id), Some(1));
        assert_eq!(mailbox.recv().await.map(|m| m.session_id), Some(2));
        assert_eq!(all.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_full_mailbox_refuses_and_ending_it_drops_the_unread_and_wakes_the_pump() {
        let all = Arc::new(AtomicUsize::new(0));
        let mailbox = Mailbox::new(2, all.clone());
        assert!(mailbox.push(message(1)));
        assert!(mailbox.push(message(2)));
        assert!(!mailbox.push(message(3)), "beyond its capacity");
        let waiting = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.ended().await }
        });
        mailbox.end(Ended::TooSlow);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the pump is told")
            .expect("no panic");
        assert_eq!(mailbox.recv().await, None);
        assert_eq!(mailbox.ended_for(), Some(Ended::TooSlow));
        assert_eq!(all.load(Ordering::Relaxed), 0);
        assert!(!mailbox.push(message(4)), "nothing is queued once ended");
    }

    #[tokio::test]
    async fn a_message_queued_while_the_pump_is_not_waiting_wakes_its_next_wait() {
        let mailbox = Mailbox::new(8, Arc::default());
        let receiving = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.recv().await.map(|m| m.session_id) }
        });
        tokio::task::yield_now().await;
        assert!(mailbox.push(message(7)));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), receiving)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(got, Some(7));
    }
}
