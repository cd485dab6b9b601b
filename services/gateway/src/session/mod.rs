//! One browser WebSocket: the socket pump. Frames are decoded and translated
//! ([`translate`]) into requests for signaling, carried by the [`Link`]; what signaling and
//! ice-config answer is written back. Holds no call state: only the registration in progress,
//! the name signaling confirmed, when to refresh the credentials, and the call's trace
//! ([`calltrace`]). Flood control is [`ratelimit`].
//!
//! Nothing the pump waits on may hold the others: an ICE configuration fetch (registration,
//! credential refresh) is a future the loop selects on, so a slow ice-config delays neither the
//! browser's deliveries nor the ping check; every write has a deadline.

pub mod calltrace;
pub mod ratelimit;
mod socket;
mod state;
pub mod translate;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use axum::extract::ws::{Message, WebSocket, close_code};
use stunner_proto::signaling::v1::{self as pb, gateway_message::Body as Up};
use svc_common::telemetry::TRACEPARENT;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    ice::{IceClient, IceError, Issued},
    link::{Ended, Link, SessionHandle},
    metrics::Metrics,
    protocol::{ClientMessage, Dialect, IceConfiguration, ServerMessage},
    reason::GatewayReason,
    upstream::IceConfigHealth,
};
use calltrace::CallTrace;
use ratelimit::TokenBucket;
use socket::{answer_close, closing_handshake, send, violation, write};
use state::{Fetch, Purpose, Registration, Session};
use translate::up;

/// The close reason for a browser that stopped answering pings.
const NO_PONG: &str = "no pong";
/// The close reason for a browser that does not read what it is sent.
const TOO_SLOW: &str = "too slow reading messages";
/// The close reason for a browser flooding pings.
const TOO_MANY_CONTROL_FRAMES: &str = "too many control frames";

/// Renegotiations a page may send: one a second on average, ten at once (an ICE restart is an
/// offer and perhaps an answer to the peer's; a glare doubles it).
const NEGOTIATION_RATE: u32 = 1;
const NEGOTIATION_BURST: u32 = 10;

/// When a credential refresh fails, the next try.
const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// What every session of this gateway shares.
pub struct Shared {
    pub link: Arc<Link>,
    pub metrics: Metrics,
    pub ice: IceClient,
    /// Whether ice-config answers (for readiness).
    pub ice_health: IceConfigHealth,
    pub limits: SessionLimits,
    /// Cancelled when the gateway starts draining: every session closes with 1001.
    pub stop: CancellationToken,
    /// Owns every session task, so the drain waits for their closing handshakes.
    pub sessions: TaskTracker,
}

#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// Messages per second a browser may send, on average.
    pub rate: u32,
    /// How many messages a browser may send at once above the rate.
    pub burst: u32,
    /// How often the server pings; a browser silent for two intervals is gone.
    pub ping_interval: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            rate: 50,
            burst: 200,
            ping_interval: Duration::from_secs(20),
        }
    }
}

/// Why the pump stopped: a close frame to send, or none (the socket is gone).
type Close = Option<(u16, &'static str)>;

/// How a session ended, for signaling: the browser closed it (its call ends now), or the
/// socket went away otherwise (its call is kept for the browser to rejoin when it reconnects).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goodbye {
    Closed,
    Lost,
}

/// Runs one session to its end.
pub async fn run(mut socket: WebSocket, id: u64, shared: Arc<Shared>) {
    let mut handle = shared.link.open(id);
    let mut session = Session {
        id,
        shared: shared.clone(),
        registration: Registration::None,
        name: None,
        refresh_at: None,
        fetch: None,
        trace: CallTrace::default(),
        bucket: TokenBucket::new(shared.limits.rate, shared.limits.burst),
        negotiations: TokenBucket::new(NEGOTIATION_RATE, NEGOTIATION_BURST),
        dialect: Dialect::default(),
    };
    let mut pings = interval(shared.limits.ping_interval);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    let mut goodbye = Goodbye::Lost;
    let close: Close = loop {
        // While a registration is under way the socket is not read, so what the browser sends
        // next is handled after it, in order.
        let reading = matches!(session.registration, Registration::None);
        let refresh_due = session.refresh_at.filter(|_| session.fetch.is_none());
        tokio::select! {
            frame = socket.recv(), if reading => {
                last_heard = Instant::now();
                let replies = match frame {
                    Some(Ok(Message::Text(text))) => session.on_text(&text),
                    Some(Ok(Message::Binary(_))) => vec![session.refuse_binary()],
                    // A ping costs the server a pong: pings count against the browser's rate
                    // like messages, and a flood of them ends the session. (Pongs answer the
                    // server's own pings and cost nothing.)
                    Some(Ok(Message::Ping(_))) => {
                        if !session.bucket.take() {
                            shared.metrics.rejected(GatewayReason::RateLimited);
                            break Some((close_code::POLICY, TOO_MANY_CONTROL_FRAMES));
                        }
                        Vec::new()
                    }
                    Some(Ok(Message::Pong(_))) => Vec::new(),
                    Some(Ok(Message::Close(_))) => {
                        goodbye = Goodbye::Closed;
                        answer_close(&mut socket).await;
                        break None;
                    }
                    None => break None,
                    Some(Err(error)) => match violation(error) {
                        Some((code, reason, counted)) => {
                            shared.metrics.rejected(counted);
                            break Some((code, reason));
                        }
                        None => break None,
                    },
                };
                if let Err(close) = send(&mut socket, &shared.metrics, session.dialect, replies).await {
                    break close;
                }
            }
            (purpose, issued) = fetching(&mut session.fetch) => {
                session.fetch = None;
                let replies = session.on_issued(purpose, issued);
                if let Err(close) = send(&mut socket, &shared.metrics, session.dialect, replies).await {
                    break close;
                }
            }
            message = handle.recv() => {
                // The routing table ended the session: it did not keep up.
                let Some(message) = message else { break Some(ended(&handle)) };
                let replies = session.on_signaling(*message).into_iter().collect();
                // A browser that stopped reading blocks this write; its queue overflowing
                // (`ended`) must still end the session.
                tokio::select! {
                    sent = send(&mut socket, &shared.metrics, session.dialect, replies) => if let Err(close) = sent { break close },
                    () = handle.ended() => break Some(ended(&handle)),
                }
            }
            () = until(refresh_due) => session.start_refresh(),
            _ = pings.tick() => {
                if last_heard.elapsed() > shared.limits.ping_interval * 2 {
                    break Some((close_code::POLICY, NO_PONG));
                }
                if let Err(close) = write(&mut socket, Message::Ping(Default::default())).await {
                    break close;
                }
            }
            () = shared.stop.cancelled() => {
                // Pages go elsewhere at once (resuming their names, rejoining their calls)
                // rather than after noticing the socket is gone.
                let reconnect = ServerMessage::Reconnect {
                    message: "this server is going away; reconnect".into(),
                };
                let _ = send(&mut socket, &shared.metrics, session.dialect, vec![reconnect]).await;
                break Some((close_code::AWAY, "server shutting down"));
            }
        }
    };

    // The session is over for signaling now (its peer is told at once), whatever the closing
    // handshake below takes.
    let body = match goodbye {
        Goodbye::Closed => Up::Closed(pb::Closed {}),
        Goodbye::Lost => Up::Lost(pb::Lost {}),
    };
    // Signaling handles a session's messages in order: a name still being claimed is claimed
    // before this lets it go.
    if let Some(name) = session.holding() {
        shared.link.send(up(id, Some(name), body));
    }
    shared.link.close(id);
    if let Some((code, reason)) = close {
        closing_handshake(socket, code, reason).await;
    }
}

/// The fetch in flight, if any (never completes without one).
async fn fetching(fetch: &mut Option<Fetch>) -> (Purpose, Result<Issued, IceError>) {
    match fetch {
        Some(fetch) => fetch.await,
        None => std::future::pending().await,
    }
}

/// Completes at `at`, or never. (The timer is boxed, as the writes are: see [`socket`].)
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => Box::pin(sleep_until(at)).await,
        None => std::future::pending().await,
    }
}

/// Why the server ended a session, as a close code and reason.
fn ended(handle: &SessionHandle) -> (u16, &'static str) {
    match handle.reason() {
        Some(Ended::TooSlow) | None => (close_code::POLICY, TOO_SLOW),
    }
}
