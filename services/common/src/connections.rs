//! Accepting connections safely. Every listener of a process shares one cap on open connections:
//! a connection over it waits in the kernel's backlog until another closes, instead of the
//! process running out of file descriptors (where accepting fails and every port stalls). HTTP
//! connections must send a request's headers in time, the first request's and every later one's
//! on a kept-alive connection: a client that connects and stays silent, or trickles its headers
//! (slowloris), is closed rather than holding a slot forever.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// File descriptors kept for everything that is not an accepted connection: outgoing
/// connections, files, the runtime's own.
const RESERVE: usize = 256;
/// How long accepting pauses after the process ran out of descriptors (or memory).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How many connections a process keeps open and how long HTTP clients have to speak.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once across every listener of the process.
    pub max_connections: usize,
    /// How long an HTTP client may take to send a request's headers (also how long an idle
    /// kept-alive connection stays open).
    pub header_timeout: Duration,
}

impl ConnectionLimits {
    /// `max_connections` 0 means as many as the process's file descriptors allow, less a
    /// reserve.
    pub fn new(max_connections: usize, header_timeout: Duration) -> Self {
        let max_connections = match max_connections {
            0 => raise_descriptor_limit().saturating_sub(RESERVE).max(16),
            n => n,
        };
        Self {
            max_connections,
            header_timeout,
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::new(0, Duration::from_secs(10))
    }
}

/// Raises the process's soft limit on open files to its hard limit (as Go's runtime does), and
/// returns it: the default soft limit (often 1024) is far below what a gateway holding
/// thousands of browsers needs.
pub fn raise_descriptor_limit() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// A listener whose connections count against a cap shared with the process's other listeners.
pub struct CappedListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
}

impl CappedListener {
    pub fn new(listener: TcpListener, permits: Arc<Semaphore>) -> Self {
        Self { listener, permits }
    }

    /// The next connection, once the cap leaves room for it. Nagle is off: small messages must
    /// not wait for delayed ACKs.
    pub async fn accept(&self) -> Connection {
        loop {
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .unwrap_or_else(|_| unreachable!("the semaphore is never closed"));
            match self.listener.accept().await {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    return Connection {
                        tcp,
                        _permit: permit,
                    };
                }
                Err(error) if is_per_connection(&error) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot accept connections; pausing");
                    drop(permit);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// Every connection, as the stream tonic's server takes.
    pub fn incoming(self) -> impl futures_util::Stream<Item = io::Result<Connection>> + Send {
        futures_util::stream::unfold(self, |listener| async move {
            let connection = listener.accept().await;
            Some((Ok(connection), listener))
        })
    }
}

/// Errors that concern one connection only (it was reset before being accepted).
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// An accepted connection, holding its place under the cap until dropped.
pub struct Connection {
    tcp: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp.connect_info()
    }
}

/// Serves `router` over HTTP/1.1 (with upgrades, for WebSockets) on every connection
/// `listener` accepts, after `handshake` (TLS, or none), until `stop`; then waits for the
/// connections open to finish their requests.
pub async fn serve_http<H, Fut, Io>(
    listener: CappedListener,
    router: axum::Router,
    header_timeout: Duration,
    stop: CancellationToken,
    handshake: H,
) where
    H: Fn(Connection) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<Io>> + Send + 'static,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connections = TaskTracker::new();
    loop {
        let connection = tokio::select! {
            () = stop.cancelled() => break,
            connection = listener.accept() => connection,
        };
        let (router, stop, handshake) = (router.clone(), stop.clone(), handshake.clone());
        connections.spawn(async move {
            let Some(io) = handshake(connection).await else {
                return;
            };
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
                .with_upgrades();
            let mut served = std::pin::pin!(served);
            tokio::select! {
                outcome = served.as_mut() => {
                    if let Err(error) = outcome {
                        tracing::debug!(%error, "HTTP connection ended with an error");
                    }
                    return;
                }
                () = stop.cancelled() => served.as_mut().graceful_shutdown(),
            }
            let _ = served.await;
        });
    }
    connections.close();
    connections.wait().await;
}

/// No handshake: plain HTTP.
pub async fn plain(connection: Connection) -> Option<Connection> {
    Some(connection)
}
