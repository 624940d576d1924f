//! The accept loop, on hyper's HTTP/1.1 server with upgrades (TLS and HTTP/2 end at the
//! load balancer):
//!
//! - a header-read timeout: a request's whole header must arrive within
//!   `header_read_timeout_secs` of the moment the server waits for it, on a new connection
//!   and on a kept-alive one after its last response alike, so half-open, dripping
//!   (slowloris) and idle connections are closed;
//! - a cap on open TCP connections (`max_connections`), counted over every connection,
//!   WebSockets included (the count's place travels with the socket into the upgrade). A
//!   connection over the cap is answered `503 unavailable` and closed, so a browser or the
//!   WebSocket client sees a clear refusal before any upgrade;
//! - graceful shutdown: no new connections, idle ones closed, in-flight requests finish,
//!   WebSockets close with 1001 (their own tasks), all within [`DRAIN`].

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use xuanfang_hub::ErrorCode;

use crate::app::App;
use crate::http_error::ApiError;

/// How long shutdown waits for requests to finish and sockets to close.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Connections over the cap being answered 503 at once; beyond that they are closed
/// without an answer (each refusal holds a file descriptor for a moment).
const REFUSING_AT_ONCE: usize = 256;

/// The longest a connection over the cap may take to send its request header.
const REFUSAL_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `router` on `listener` until the app's shutdown token is cancelled.
pub async fn serve(app: Arc<App>, router: Router, listener: TcpListener) -> io::Result<()> {
    let shutdown = app.shutdown.clone();
    let tasks = TaskTracker::new();
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        match app.limits.tcp_connection() {
            Some(place) => {
                tasks.spawn(connection(app.clone(), router.clone(), stream, peer, place));
            }
            None => {
                app.metrics.tcp_refused.inc();
                if let Ok(turn) = refusing.clone().try_acquire_owned() {
                    tasks.spawn(refuse(stream, app.limits.header_read_timeout(), turn));
                }
            }
        }
    }
    drop(listener);
    tasks.close();
    let drained = tokio::time::timeout(DRAIN, async {
        tasks.wait().await;
        app.limits.all_closed().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = app.limits.tcp_open(),
            "shutdown: connections still open after {DRAIN:?}"
        );
    }
    Ok(())
}

/// Out of file descriptors (or another failure of the listener itself): wait a moment
/// rather than spin. A connection that failed before it was accepted is just skipped.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn connection(
    app: Arc<App>,
    router: Router,
    stream: TcpStream,
    peer: SocketAddr,
    place: OwnedSemaphorePermit,
) {
    if app.ws.send_buffer > 0 {
        // Before any byte is sent, so the kernel never autotunes this socket's buffer.
        if let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(app.ws.send_buffer) {
            tracing::debug!("cannot set the send buffer: {e}");
        }
    }
    let io = TokioIo::new(Counted {
        stream,
        _place: place,
    });
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.limits.header_read_timeout());
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = app.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// Answers whatever request comes first with 503 `unavailable`, and closes.
async fn refuse(stream: TcpStream, header_timeout: Duration, _turn: OwnedSemaphorePermit) {
    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(unavailable())
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout.min(REFUSAL_HEADER_TIMEOUT))
        .keep_alive(false);
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn unavailable() -> Response {
    let mut r = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
        .detail("too many connections")
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// A TCP stream holding its place under `max_connections` until it is dropped, also
/// after it became a WebSocket.
struct Counted {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
