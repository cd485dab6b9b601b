//! Writing to the browser's socket: every write under a deadline, and the closing handshake.
//!
//! Each of these futures is boxed inside: a session's task is as large as the largest future
//! it may ever wait on, for as long as the session lives, and writes are brief. Boxed, an idle
//! session holds a pointer where it would hold the whole write.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};

use super::{Close, NO_PONG, TOO_SLOW};
use crate::{
    metrics::Metrics,
    protocol::{Dialect, ServerMessage},
    reason::GatewayReason,
};

/// How long the server waits for a browser to finish the closing handshake.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(5);
/// How long one write to a browser may take before the browser is taken for stuck.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// What a read error says about the browser: a frame over the size limit (1009), text that is
/// not UTF-8 (1007), a violation of the protocol (1002), each with the close to send; `None`
/// when the connection itself is gone.
pub fn violation(error: axum::Error) -> Option<(u16, &'static str, GatewayReason)> {
    use tokio_tungstenite::tungstenite::{Error, error::CapacityError};
    match error.into_inner().downcast::<Error>().map(|e| *e) {
        Ok(Error::Capacity(CapacityError::MessageTooLong { .. })) => {
            Some((close_code::SIZE, "message too big", GatewayReason::TooBig))
        }
        Ok(Error::Utf8(_)) => Some((
            close_code::INVALID,
            "text is not valid UTF-8",
            GatewayReason::InvalidMessage,
        )),
        Ok(Error::Protocol(_) | Error::Capacity(_)) => Some((
            close_code::PROTOCOL,
            "protocol violation",
            GatewayReason::InvalidMessage,
        )),
        _ => None,
    }
}

/// Answers the browser's own close: the reply the WebSocket queued goes out before the
/// connection ends (bounded, like every write).
pub async fn answer_close(socket: &mut WebSocket) {
    use futures_util::SinkExt;
    let _ = Box::pin(tokio::time::timeout(CLOSE_HANDSHAKE, socket.flush())).await;
}

/// Writes the replies the page understands (all are counted); `Err` with how to close when
/// the socket is gone or stuck.
pub async fn send(
    socket: &mut WebSocket,
    metrics: &Metrics,
    dialect: Dialect,
    replies: Vec<ServerMessage>,
) -> Result<(), Close> {
    if replies.is_empty() {
        return Ok(());
    }
    Box::pin(async move {
        for reply in replies {
            metrics.reply(&reply);
            if dialect.understands(&reply) {
                write(socket, Message::Text(reply.encode().into())).await?;
            }
        }
        Ok(())
    })
    .await
}

/// One write, under the write deadline: a browser that does not take it in time is closed as
/// too slow (and its name enters the grace period as for any disconnect).
pub async fn write(socket: &mut WebSocket, message: Message) -> Result<(), Close> {
    match Box::pin(tokio::time::timeout(WRITE_DEADLINE, socket.send(message))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None),
        Err(_) => Err(Some((close_code::POLICY, TOO_SLOW))),
    }
}

/// Sends the close, then reads until the browser's own close, so unread input does not turn
/// the close into a TCP reset that loses the frame. Bounded: a browser that never reads must
/// not hold the task. A browser that stopped answering pings is gone: nobody will answer.
pub async fn closing_handshake(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let gone = code == close_code::POLICY && reason == NO_PONG;
    let handshake = async {
        socket.send(Message::Close(Some(frame))).await.ok()?;
        while !gone && let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        Some(())
    };
    let _ = Box::pin(tokio::time::timeout(CLOSE_HANDSHAKE, handshake)).await;
}
