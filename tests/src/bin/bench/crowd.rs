//! A crowd of idle browsers on one gateway, in a process of its own: the bench starts several,
//! as a process may hold at most 20,000 sockets here. Each session connects from its own source
//! address in 127.<net>.0.0/16, so ephemeral ports never run out,
//! registers with the protocol's extensions, answers the gateway's pings, and waits for orders.
//!
//! Started as `bench crowd <ws-url> <sessions> <name-prefix> <net>`; orders come on stdin, one
//! per line, and each is answered with one line on stdout:
//!
//! - (at start) `registered <accepted> <refused> <connect-retries> <seconds>`;
//! - `ping`: every session pings the gateway: `alive <answered> <lost>`;
//! - `closed`: waits until every session's socket is gone: `closed <sessions>`;
//! - `resume`: every session connects again at once and registers with its resume token:
//!   `resumed <accepted> <refused> <connect-retries> <seconds>`;
//! - `quit`, or stdin closed: the crowd leaves.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::{TcpSocket, TcpStream},
    sync::{Semaphore, mpsc, watch},
};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

/// Sessions connecting and registering at once while the crowd first gathers (a storm is
/// `resume`, not this).
const GATHERING: usize = 256;
/// How long a registration may take before it counts as refused: under a storm it queues.
const REGISTRATION: Duration = Duration::from_secs(60);
/// How long a ping may wait for its pong.
const PONG: Duration = Duration::from_secs(30);
/// Attempts to connect before a session gives up (each failure waits 100-600 ms).
const ATTEMPTS: u32 = 100;
/// How long one attempt (TCP and the WebSocket handshake) may take.
const CONNECT: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<TcpStream>;

/// What every session is told to do; numbered, so the same order twice is two orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Hold,
    Ping,
    Resume,
}

/// What a session tells the crowd.
enum Report {
    /// Registered (or not), after this many failed connection attempts.
    Joined {
        accepted: bool,
        retries: u32,
    },
    Pong,
    /// Its ping went unanswered or it has no socket.
    Lost,
    /// Its socket is gone.
    Closed,
}

/// Where the sessions go and who they are.
#[derive(Clone)]
struct Target {
    url: String,
    addr: SocketAddr,
    prefix: String,
    net: u8,
}

impl Target {
    fn source(&self, index: usize) -> IpAddr {
        let (high, low) = (index / 250, index % 250 + 1);
        IpAddr::V4(Ipv4Addr::new(
            127,
            self.net,
            u8::try_from(high).expect("at most 64,000 sessions a crowd"),
            u8::try_from(low).expect("below 251"),
        ))
    }
}

pub async fn run(args: &[String]) {
    let [url, sessions, prefix, net] = args else {
        panic!("usage: bench crowd <ws-url> <sessions> <name-prefix> <net>");
    };
    let authority = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("a ws:// URL");
    let target = Target {
        url: url.clone(),
        addr: authority.parse().expect("an IP address and port"),
        prefix: prefix.clone(),
        net: net.parse().expect("a net number, 1-254"),
    };
    let sessions: usize = sessions.parse().expect("a number of sessions");

    let (orders, order) = watch::channel((0u64, Order::Hold));
    let (reports, mut report) = mpsc::unbounded_channel();
    let gathering = Arc::new(Semaphore::new(GATHERING));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..sessions {
        tasks.spawn(session(
            index,
            target.clone(),
            gathering.clone(),
            order.clone(),
            reports.clone(),
        ));
    }
    drop(reports);
    let joined = joins(&mut report, sessions).await;
    println!(
        "registered {} {} {} {:.2}",
        joined.accepted,
        joined.refused,
        joined.retries,
        started.elapsed().as_secs_f64()
    );

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut generation = 0;
    while let Ok(Some(line)) = stdin.next_line().await {
        generation += 1;
        let started = Instant::now();
        match line.trim() {
            "ping" => {
                let _ = orders.send((generation, Order::Ping));
                let (mut alive, mut lost) = (0, 0);
                while alive + lost < sessions {
                    match report.recv().await {
                        Some(Report::Pong) => alive += 1,
                        Some(Report::Lost) => lost += 1,
                        Some(_) => {}
                        None => break,
                    }
                }
                println!("alive {alive} {lost}");
            }
            "closed" => {
                let mut closed = 0;
                while closed < sessions {
                    match report.recv().await {
                        Some(Report::Closed) => closed += 1,
                        Some(_) => {}
                        None => break,
                    }
                }
                println!("closed {closed}");
            }
            "resume" => {
                let _ = orders.send((generation, Order::Resume));
                let joined = joins(&mut report, sessions).await;
                println!(
                    "resumed {} {} {} {:.2}",
                    joined.accepted,
                    joined.refused,
                    joined.retries,
                    started.elapsed().as_secs_f64()
                );
            }
            _ => break,
        }
    }
    tasks.abort_all();
}

#[derive(Default)]
struct Joined {
    accepted: usize,
    refused: usize,
    retries: u64,
}

/// Waits for every session's registration.
async fn joins(report: &mut mpsc::UnboundedReceiver<Report>, sessions: usize) -> Joined {
    let mut joined = Joined::default();
    while joined.accepted + joined.refused < sessions {
        match report.recv().await {
            Some(Report::Joined { accepted, retries }) => {
                if accepted {
                    joined.accepted += 1;
                } else {
                    joined.refused += 1;
                }
                joined.retries += u64::from(retries);
            }
            Some(_) => {}
            None => break,
        }
    }
    joined
}

/// One browser: joins, then holds its socket and follows orders.
async fn session(
    index: usize,
    target: Target,
    gathering: Arc<Semaphore>,
    mut orders: watch::Receiver<(u64, Order)>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let name = format!("{}{index}", target.prefix);
    let source = target.source(index);
    let mut token = None;
    let mut socket = {
        let _turn = gathering.acquire().await;
        join(&target, source, &name, &mut token, &reports).await
    };
    let mut pinged: Option<tokio::time::Instant> = None;
    loop {
        let pong_due = pinged.map(|at| at + PONG);
        tokio::select! {
            frame = next(&mut socket) => match frame {
                Some(Message::Pong(_)) if pinged.take().is_some() => {
                    let _ = reports.send(Report::Pong);
                }
                Some(_) => {}
                None => {
                    socket = None;
                    if pinged.take().is_some() {
                        let _ = reports.send(Report::Lost);
                    }
                    let _ = reports.send(Report::Closed);
                }
            },
            () = sleep_until(pong_due) => {
                pinged = None;
                let _ = reports.send(Report::Lost);
            }
            changed = orders.changed() => {
                if changed.is_err() {
                    return;
                }
                let (_, order) = *orders.borrow_and_update();
                match order {
                    Order::Hold => {}
                    Order::Ping => {
                        let sent = match socket.as_mut() {
                            Some(ws) => ws.send(Message::Ping(Vec::new().into())).await.is_ok(),
                            None => false,
                        };
                        if sent {
                            pinged = Some(tokio::time::Instant::now());
                        } else {
                            let _ = reports.send(Report::Lost);
                        }
                    }
                    Order::Resume => {
                        socket = join(&target, source, &name, &mut token, &reports).await;
                    }
                }
            }
        }
    }
}

/// The next frame on the socket, if there is one; never completes without a socket.
async fn next(socket: &mut Option<Socket>) -> Option<Message> {
    match socket {
        Some(ws) => ws.next().await.and_then(Result::ok),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Connects (again, after a failed attempt) and registers, with the resume token if it has
/// one; reports the outcome. Keeps the new token.
async fn join(
    target: &Target,
    source: IpAddr,
    name: &str,
    token: &mut Option<String>,
    reports: &mpsc::UnboundedSender<Report>,
) -> Option<Socket> {
    let mut retries = 0;
    let mut ws = loop {
        let attempt = tokio::time::timeout(CONNECT, connect(target, source)).await;
        match attempt.unwrap_or_else(|_| Err("timed out".into())) {
            Ok(ws) => break ws,
            Err(_) if retries + 1 < ATTEMPTS => {
                retries += 1;
                // Spread over 100-600 ms, so the retries do not come back as one wave.
                let spread =
                    (u64::from(source_index(source)) * 7919 + u64::from(retries) * 104_729) % 500;
                tokio::time::sleep(Duration::from_millis(100 + spread)).await;
            }
            Err(e) => {
                if first_failures() {
                    eprintln!("{name}: cannot connect: {e}");
                }
                let _ = reports.send(Report::Joined {
                    accepted: false,
                    retries,
                });
                return None;
            }
        }
    };
    let mut register = json!({"id": "register", "name": name, "extensions": true});
    if let Some(token) = token.as_ref() {
        register["resumeToken"] = json!(token);
    }
    let reply = register_on(&mut ws, &register).await;
    let accepted = reply
        .as_ref()
        .is_some_and(|reply| reply["response"] == "accepted");
    if accepted {
        *token = reply
            .as_ref()
            .and_then(|r| r["resumeToken"].as_str())
            .map(str::to_owned);
    } else if first_failures() {
        eprintln!("{name}: not registered: {reply:?}");
    }
    let _ = reports.send(Report::Joined { accepted, retries });
    accepted.then_some(ws)
}

/// Whether a failure is among a crowd's first few, which are printed (the rest are counted).
fn first_failures() -> bool {
    static PRINTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    PRINTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3
}

/// A number that tells sources apart (their last two octets).
fn source_index(source: IpAddr) -> u16 {
    match source {
        IpAddr::V4(v4) => u16::from_be_bytes([v4.octets()[2], v4.octets()[3]]),
        IpAddr::V6(_) => 0,
    }
}

async fn connect(target: &Target, source: IpAddr) -> Result<Socket, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| e.to_string())?;
    let tcp = socket
        .connect(target.addr)
        .await
        .map_err(|e| e.to_string())?;
    // Small buffers, as the gateway's: the crowd's memory is not what is measured, but it
    // shares the machine.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = client_async_with_config(target.url.as_str(), tcp, Some(config))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Sends the registration and waits for its answer (other messages are skipped).
async fn register_on(ws: &mut Socket, register: &Value) -> Option<Value> {
    ws.send(Message::text(register.to_string())).await.ok()?;
    tokio::time::timeout(REGISTRATION, async {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(text) = frame
                && let Ok(message) = serde_json::from_str::<Value>(&text)
                && message["id"] == "registerResponse"
            {
                return Some(message);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}
