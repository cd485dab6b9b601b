//! A scripted browser session: the tutorial's protocol over a real WebSocket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config,
    tungstenite::{Message, protocol::CloseFrame},
};

/// How long a reply may take before a test fails.
pub const REPLY: Duration = Duration::from_secs(5);

pub struct Browser {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Browser {
    pub async fn connect(url: &str) -> Browser {
        let (ws, _) = connect_async_with_config(url, None, true)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Browser { ws }
    }

    /// Connects with a small receive buffer, as a client that reads slowly or not at all.
    pub async fn connect_with_receive_buffer(url: &str, bytes: u32) -> Browser {
        let authority = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .expect("a ws:// URL");
        let addr: std::net::SocketAddr = authority.parse().expect("an IP address and port");
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let tcp = socket.connect(addr).await.expect("connect");
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(tcp), None)
                .await
                .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Browser { ws }
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Sends `text`; `false` when the connection is gone or the send did not complete within
    /// `within` (the server stopped reading).
    pub async fn try_send_text(&mut self, text: &str, within: Duration) -> bool {
        self.try_send_raw(Message::text(text), within).await
    }

    /// Sends `message`; `false` when the connection is gone or the send did not complete within
    /// `within`.
    pub async fn try_send_raw(&mut self, message: Message, within: Duration) -> bool {
        matches!(
            tokio::time::timeout(within, self.ws.send(message)).await,
            Ok(Ok(()))
        )
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next protocol message (pings are answered by the library and skipped).
    pub async fn recv(&mut self) -> Value {
        self.recv_within(REPLY).await
    }

    /// The next protocol message, which may take up to `within`.
    pub async fn recv_within(&mut self, within: Duration) -> Value {
        loop {
            let frame = tokio::time::timeout(within, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("a message within {within:?}"))
                .expect("the socket is open")
                .expect("a frame");
            match frame {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The next message, which must have this `id`.
    pub async fn expect(&mut self, id: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["id"], id, "{message}");
        message
    }

    /// Proves nothing else was queued for this session: answering a call from somebody who is
    /// not calling changes no state and is refused by signaling, after anything signaling sent
    /// this session before it.
    pub async fn expect_nothing_pending(&mut self) {
        self.send(
            json!({"id": "incomingCallResponse", "from": "~nobody", "callResponse": "reject"}),
        )
        .await;
        let reply = self.recv().await;
        assert_eq!(
            (reply["id"].as_str(), reply["reason"].as_str()),
            (Some("error"), Some("no_such_call")),
            "expected nothing pending, got {reply}"
        );
    }

    /// The message pending for this session, if any (at most one is expected): proven by
    /// asking something whose answer comes after anything signaling sent before it.
    pub async fn recv_or_none(&mut self) -> Option<Value> {
        self.send(
            json!({"id": "incomingCallResponse", "from": "~nobody", "callResponse": "reject"}),
        )
        .await;
        let first = self.recv().await;
        let probe_answer =
            |reply: &Value| reply["id"] == "error" && reply["reason"] == "no_such_call";
        if probe_answer(&first) {
            return None;
        }
        let after = self.recv().await;
        assert!(
            probe_answer(&after),
            "more than one message pending: {first} then {after}"
        );
        Some(first)
    }

    /// Like [`Browser::expect_nothing_pending`], but a `stopCommunication` that arrives first is
    /// returned instead (`None` when nothing was pending).
    pub async fn expect_nothing_pending_or_stop(&mut self) -> Option<Value> {
        self.send(
            json!({"id": "incomingCallResponse", "from": "~nobody", "callResponse": "reject"}),
        )
        .await;
        loop {
            let reply = self.recv().await;
            match reply["id"].as_str() {
                Some("stopCommunication") => return Some(reply),
                Some("error") if reply["reason"] == "no_such_call" => return None,
                _ => {}
            }
        }
    }

    /// Registers as our page does, declaring the protocol's extensions (errors, credential
    /// pushes, renegotiation); [`Browser::register_as_tutorial`] for the tutorial's page.
    pub async fn register(&mut self, name: &str) -> Value {
        self.send(json!({"id": "register", "name": name, "extensions": true}))
            .await;
        self.expect("registerResponse").await
    }

    /// Registers as the tutorial's page does: its exact message, no extensions.
    pub async fn register_as_tutorial(&mut self, name: &str) -> Value {
        self.send(json!({"id": "register", "name": name})).await;
        self.expect("registerResponse").await
    }

    /// Registers and checks it was accepted.
    pub async fn register_ok(&mut self, name: &str) -> Value {
        let reply = self.register(name).await;
        assert_eq!(reply["response"], "accepted", "{reply}");
        reply
    }

    /// Calls `callee` (registered as `callee_name`; this page as `caller_name`), who accepts:
    /// this page's `callResponse` and the callee's `startCommunication`.
    pub async fn call_answered(
        &mut self,
        caller_name: &str,
        callee: &mut Browser,
        callee_name: &str,
    ) -> (Value, Value) {
        self.send(json!({"id": "call", "to": callee_name, "sdpOffer": "o"}))
            .await;
        callee.expect("incomingCall").await;
        callee
            .send(json!({"id": "incomingCallResponse", "from": caller_name, "callResponse": "accept", "sdpAnswer": "a"}))
            .await;
        let accepted = self.expect("callResponse").await;
        let started = callee.expect("startCommunication").await;
        (accepted, started)
    }

    /// The close frame the server ends the socket with.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            let frame = tokio::time::timeout(REPLY, self.ws.next())
                .await
                .expect("closed within 5s");
            match frame {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Every protocol message received until the server closes the socket.
    pub async fn messages_until_closed(&mut self) -> Vec<Value> {
        let mut messages = Vec::new();
        loop {
            let frame = tokio::time::timeout(REPLY * 3, self.ws.next())
                .await
                .expect("closed within 15s");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    messages.push(serde_json::from_str(&text).expect("JSON"));
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return messages,
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
