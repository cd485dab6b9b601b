//! A gateway stream's queue of deliveries, bounded in messages and in bytes: a gateway that
//! stops reading cannot hold more of this replica's memory than the bound.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::Stream;
use prost::Message as _;
use tokio::sync::{Semaphore, mpsc};

use super::Inbound;

/// The sending side. Cloned for each subscription of the stream.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Inbound>,
    /// One permit per byte of room left.
    room: Arc<Semaphore>,
}

/// Why a delivery was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The stream is too far behind (in messages or bytes).
    Full,
    /// The stream is gone.
    Closed,
}

/// A queue of up to `messages` deliveries and `bytes` bytes.
pub fn outbox(messages: usize, bytes: usize) -> (Outbox, Deliveries) {
    let (tx, rx) = mpsc::channel(messages);
    let room = Arc::new(Semaphore::new(bytes));
    (
        Outbox {
            tx,
            room: room.clone(),
        },
        Deliveries { rx, room },
    )
}

fn size(inbound: &Inbound) -> u32 {
    // A delivery is far below 4 GiB (signaling refuses gateway messages over 1 MiB).
    u32::try_from(inbound.message.encoded_len()).unwrap_or(u32::MAX)
}

impl Outbox {
    /// Queues `inbound` if the stream has room for it now.
    pub fn try_send(&self, inbound: Inbound) -> Result<(), Refused> {
        let bytes = size(&inbound);
        let Ok(permit) = self.room.try_acquire_many(bytes) else {
            return Err(Refused::Full);
        };
        match self.tx.try_send(inbound) {
            Ok(()) => {
                permit.forget();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(Refused::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Refused::Closed),
        }
    }

    /// Queues `inbound` once the stream has room for it; `Err` when the stream is gone.
    pub async fn send(&self, inbound: Inbound) -> Result<(), Refused> {
        let bytes = size(&inbound);
        let permit = self
            .room
            .acquire_many(bytes)
            .await
            .map_err(|_| Refused::Closed)?;
        self.tx.send(inbound).await.map_err(|_| Refused::Closed)?;
        permit.forget();
        Ok(())
    }

    pub fn same_channel(&self, other: &Outbox) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

/// The receiving side: each delivery taken gives its bytes back.
pub struct Deliveries {
    rx: mpsc::Receiver<Inbound>,
    room: Arc<Semaphore>,
}

impl Deliveries {
    /// The next delivery, once there is one; `None` when every sender is gone.
    pub async fn recv(&mut self) -> Option<Inbound> {
        futures_util::StreamExt::next(self).await
    }

    /// The next delivery, if one is queued.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        let inbound = self.rx.try_recv().ok()?;
        self.room.add_permits(size(&inbound) as usize);
        Some(inbound)
    }
}

impl Stream for Deliveries {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(inbound)) = &polled {
            self.room.add_permits(size(inbound) as usize);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use stunner_proto::signaling::v1::SessionMessage;

    use super::*;

    fn inbound(bytes: usize) -> Inbound {
        Inbound {
            position: None,
            message: SessionMessage {
                position: "x".repeat(bytes),
                ..Default::default()
            },
        }
    }

    #[tokio::test]
    async fn bounded_in_bytes_and_in_messages() {
        let (outbox, mut deliveries) = outbox(3, 1000);
        assert_eq!(outbox.try_send(inbound(600)), Ok(()));
        // 600 + 600 bytes do not fit in 1000.
        assert_eq!(outbox.try_send(inbound(600)), Err(Refused::Full));
        assert_eq!(outbox.try_send(inbound(100)), Ok(()));
        assert_eq!(outbox.try_send(inbound(100)), Ok(()));
        // Room in bytes, none in messages.
        assert_eq!(outbox.try_send(inbound(10)), Err(Refused::Full));
        // Taking one gives its bytes back.
        assert!(deliveries.next().await.is_some());
        assert_eq!(outbox.try_send(inbound(600)), Ok(()));
        drop(deliveries);
        assert_eq!(outbox.try_send(inbound(1)), Err(Refused::Closed));
    }
}
