//! The boot service's HTTP/1.1 transport (hyper): boot scripts, kernels and initrds with range
//! requests, install configs and callbacks, answered by a [`Handler`].
//!
//! Bounded: at most [`Limits::connections`] connections at once and
//! [`Limits::per_client`] from one address (further ones are closed at once), request headers
//! must arrive within [`Limits::header_timeout`] and a body within [`Limits::body_timeout`],
//! bodies are read up to [`Limits::body`] bytes into a buffer of their own (however the
//! client frames them), a connection on which neither side makes progress for
//! [`Limits::idle`] is closed (a client that never reads its response included), and only
//! GET, HEAD and POST are answered. The server is one future that drives every connection
//! itself — no task is spawned.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, RANGE,
};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::tftp::Source;

/// A request, as the handler sees it.
#[derive(Debug)]
pub struct Request {
    /// GET, HEAD or POST.
    pub method: Method,
    /// The path, percent-decoding not applied (boot paths are plain).
    pub path: String,
    /// The client.
    pub peer: SocketAddr,
    /// The body of a POST (at most [`Limits::body`] bytes).
    pub body: Bytes,
}

/// What to answer.
#[derive(Debug)]
pub enum Reply {
    /// A small text with its status and content type.
    Text(StatusCode, &'static str, String),
    /// A file, honouring the request's range.
    File(Source),
}

impl Reply {
    /// 404 with a reason.
    pub fn not_found(why: impl Into<String>) -> Reply {
        Reply::Text(StatusCode::NOT_FOUND, "text/plain", why.into() + "\n")
    }

    /// 403 with a reason.
    pub fn forbidden(why: impl Into<String>) -> Reply {
        Reply::Text(StatusCode::FORBIDDEN, "text/plain", why.into() + "\n")
    }

    /// 200 with a text.
    pub fn ok(content_type: &'static str, text: String) -> Reply {
        Reply::Text(StatusCode::OK, content_type, text)
    }
}

/// Answers requests.
pub trait Handler: Send + Sync + 'static {
    /// The reply to `req`.
    fn handle(&self, req: &Request) -> Reply;
}

/// The server's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections at once.
    pub connections: usize,
    /// Time for a request's headers to arrive.
    pub header_timeout: Duration,
    /// Largest request body read.
    pub body: usize,
    /// Connections at once from one client address.
    pub per_client: usize,
    /// Time for a request's body to arrive.
    pub body_timeout: Duration,
    /// Time a connection may go without the client sending or taking a byte while the server
    /// waits for it (an idle keep-alive connection included).
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 512,
            header_timeout: Duration::from_secs(10),
            body: 4096,
            per_client: 16,
            body_timeout: Duration::from_secs(10),
            idle: Duration::from_secs(20),
        }
    }
}

/// Refused connections are logged at most once per this long, with how many there were: a
/// flood of them must not become a flood of log lines.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts refusals and says when to log them.
#[derive(Default)]
struct Refusals {
    last: Option<tokio::time::Instant>,
    since: u64,
}

impl Refusals {
    fn refused(&mut self, peer: SocketAddr, why: &'static str) {
        self.since += 1;
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(%peer, refused = self.since, "http connections refused: {why}");
            self.last = Some(now);
            self.since = 0;
        }
    }
}

/// The read buffer of a connection (hyper's smallest): a request's head must fit in it.
const READ_BUFFER: usize = 8192;

/// A connection that fails with `TimedOut` once it has waited [`Limits::idle`] for the
/// client without either direction making progress.
struct IdleTimeout<S> {
    io: S,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<S> IdleTimeout<S> {
    fn new(io: S, idle: Duration) -> Self {
        IdleTimeout {
            io,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progressed(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
    }

    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client made no progress",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.waiting(cx),
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if r.as_ref().is_ok_and(|n| *n > 0) {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.waiting(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if r.as_ref().is_ok_and(|n| *n > 0) {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.waiting(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => self.waiting(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => self.waiting(cx),
        }
    }
}

/// Why a request body was not read.
enum BodyError {
    TooLarge,
    TimedOut,
    Broken,
}

/// Reads a request body into a buffer of its own, at most `limit` bytes, within `time`.
/// Each frame is copied out and dropped at once: frames of one byte each would otherwise
/// each hold on to a read buffer of the connection.
async fn read_body(body: Incoming, limit: usize, time: Duration) -> Result<Bytes, BodyError> {
    let read = async {
        let mut body = body;
        let mut out: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Broken)?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                if out.capacity() == 0 {
                    out.reserve_exact(limit);
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(out))
    };
    match tokio::time::timeout(time, read).await {
        Ok(r) => r,
        Err(_) => Err(BodyError::TimedOut),
    }
}

/// A bound HTTP server.
pub struct HttpServer {
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    limits: Limits,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("listener", &self.listener)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The byte range a `Range` header asks for within `len` bytes: `Ok(None)` for the whole
/// file (no header, several ranges or a header that is not a byte range: RFC 9110 lets a
/// server ignore those), `Err(())` when unsatisfiable.
#[allow(clippy::result_unit_err)]
pub fn byte_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // The last `b` bytes.
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Ok(None);
        };
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e.min(len.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if start >= len {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

/// A file's bytes from `next` to `end` (inclusive), read in chunks as the client takes them.
struct FileBody {
    source: Arc<Source>,
    next: u64,
    end: u64,
}

const CHUNK: u64 = 128 * 1024;

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.next > self.end {
            return Poll::Ready(None);
        }
        let want = (self.end - self.next + 1).min(CHUNK);
        let mut buf = vec![0u8; usize::try_from(want).unwrap_or(0)];
        // Boot files are read from the page cache in 128 KiB steps; short enough to read
        // in place rather than on a blocking thread.
        let r = self.source.read_at(&mut buf, self.next);
        Poll::Ready(Some(match r {
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was served",
            )),
            Ok(n) => {
                buf.truncate(n);
                self.next += n as u64;
                Ok(Frame::data(Bytes::from(buf)))
            }
            Err(e) => Err(e),
        }))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.end.saturating_add(1).saturating_sub(self.next))
    }
}

type Boxed = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<Boxed> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn file(source: Source, range: Option<&str>, head: bool) -> Response<Boxed> {
    let len = source.len();
    let (status, start, end) = match byte_range(range, len) {
        Ok(None) => (StatusCode::OK, 0, len.saturating_sub(1)),
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Err(()) => {
            let mut r = text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "text/plain",
                "range not satisfiable\n".into(),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let body = if head || count == 0 {
        http_body_util::Empty::new()
            .map_err(|never: Infallible| match never {})
            .boxed_unsync()
    } else {
        FileBody {
            source: Arc::new(source),
            next: start,
            end,
        }
        .boxed_unsync()
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(CONTENT_RANGE, v);
    }
    r
}

async fn serve(
    handler: Arc<dyn Handler>,
    limits: Limits,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<Response<Boxed>, Infallible> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD && method != Method::POST {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET, HEAD and POST\n".into(),
        ));
    }
    let path = req.uri().path().to_string();
    let range = req
        .headers()
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = if method == Method::POST {
        match read_body(req.into_body(), limits.body, limits.body_timeout).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Ok(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain",
                    format!("bodies are at most {} bytes\n", limits.body),
                ));
            }
            Err(BodyError::TimedOut) => {
                return Ok(text(
                    StatusCode::REQUEST_TIMEOUT,
                    "text/plain",
                    "the body did not arrive in time\n".into(),
                ));
            }
            Err(BodyError::Broken) => {
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "the body was cut off\n".into(),
                ));
            }
        }
    } else {
        Bytes::new()
    };
    let head = method == Method::HEAD;
    let request = Request {
        method,
        path,
        peer,
        body,
    };
    Ok(match handler.handle(&request) {
        Reply::Text(status, ctype, body) => {
            let mut r = text(status, ctype, if head { String::new() } else { body });
            if head {
                r.headers_mut().remove(CONTENT_LENGTH);
            }
            r
        }
        Reply::File(source) => file(source, range.as_deref(), head),
    })
}

impl HttpServer {
    /// Serves on an already bound listener.
    pub fn from_listener(listener: TcpListener, handler: Arc<dyn Handler>, limits: Limits) -> Self {
        HttpServer {
            listener,
            handler,
            limits,
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes; open connections are dropped then.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        type Conn = Pin<Box<dyn Future<Output = std::net::IpAddr> + Send>>;
        let mut conns: FuturesUnordered<Conn> = FuturesUnordered::new();
        let mut per_client: std::collections::HashMap<std::net::IpAddr, usize> =
            std::collections::HashMap::new();
        let mut refusals = Refusals::default();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                Some(ip) = conns.next(), if !conns.is_empty() => {
                    if let Some(n) = per_client.get_mut(&ip) {
                        *n -= 1;
                        if *n == 0 {
                            per_client.remove(&ip);
                        }
                    }
                }
                r = self.listener.accept() => {
                    let (stream, peer) = match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "http accept failed");
                            continue;
                        }
                    };
                    if conns.len() >= self.limits.connections {
                        refusals.refused(peer, "too many at once");
                        drop(stream);
                        continue;
                    }
                    let mine = per_client.entry(peer.ip()).or_default();
                    if *mine >= self.limits.per_client {
                        refusals.refused(peer, "too many from one client");
                        drop(stream);
                        continue;
                    }
                    *mine += 1;
                    let (handler, limits) = (self.handler.clone(), self.limits);
                    let svc = hyper::service::service_fn(move |req| {
                        serve(handler.clone(), limits, peer, req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(self.limits.header_timeout)
                        .max_buf_size(READ_BUFFER)
                        .serve_connection(
                            TokioIo::new(IdleTimeout::new(stream, self.limits.idle)),
                            svc,
                        );
                    conns.push(Box::pin(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "http connection ended");
                        }
                        peer.ip()
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(byte_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=-1000"), 100), Ok(Some((0, 99))));
        assert_eq!(byte_range(Some("bytes=50-1000"), 100), Ok(Some((50, 99))));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=-0"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=9-1"), 100), Ok(None));
        assert_eq!(byte_range(Some("items=0-1"), 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=x-1"), 100), Ok(None));
    }
}
