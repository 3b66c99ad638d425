//! The edge's HTTP server, with every limit a client on the internet can lean
//! on made explicit ([`HttpLimits`], each a flag of [`crate::config::EdgeFlags`]):
//! - **header timeout**: a connection that has not sent a whole request head
//!   within it is closed (a half-sent request, or a connection that sends
//!   nothing at all). hyper's own timer covers HTTP/1.1 requests after the
//!   first; the first is watched here, because the server reads it before it
//!   knows whether the client speaks HTTP/1.1 or HTTP/2;
//! - **body timeout**: a request body that has not arrived in full within it
//!   (counted from the request head, not reset by each trickled byte) fails
//!   the read, and the client gets 408;
//! - **idle timeout**: a connection with no request in flight and no byte
//!   either way for that long is closed (an HTTP/1.1 keep-alive connection
//!   waiting for its next request is already bounded by the header timeout);
//! - **connection cap**: past it, connections wait in the kernel's backlog
//!   until one closes, so the process never runs out of file descriptors;
//! - **HTTP/2**: concurrent streams per connection and the header list size
//!   (HTTP/1.1: at most 100 headers, hyper's default).
//!
//! HTTP/1.1 and HTTP/2 (prior knowledge, as a load balancer may speak it) are
//! both served.

use std::{
    error::Error as StdError,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo};
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore, watch},
    time::{Instant, Sleep},
};

/// The limits of the HTTP server; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client has to send a request's head.
    pub header_timeout: Duration,
    /// How long a client has to send a request's whole body.
    pub body_timeout: Duration,
    /// How long a connection may sit with nothing in flight.
    pub idle_timeout: Duration,
    /// How many connections may be open at once.
    pub max_connections: usize,
    /// How many requests one HTTP/2 connection may have in flight.
    pub h2_max_concurrent_streams: u32,
    /// The largest HTTP/2 header list, in bytes. (An HTTP/1.1 head is held
    /// to 100 headers within hyper's read buffer, about 400 KiB: a smaller
    /// buffer also stops hyper from draining an unread body, so that the
    /// connection could not be kept after a 413.)
    pub max_header_bytes: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            h2_max_concurrent_streams: 100,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `stop` turns true; then
/// stops accepting, asks every connection to finish what it is doing
/// (HTTP/1.1: close after the current response; HTTP/2: GOAWAY), and returns
/// once they all have.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, mut stop: watch::Receiver<bool>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes);
    let builder = Arc::new(builder);
    let cap = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX >> 4);
    let places = Arc::new(Semaphore::new(cap as usize));
    loop {
        let place = tokio::select! {
            place = places.clone().acquire_owned() => place.expect("never closed"),
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and the like: the connection cap should prevent them;
                // pausing keeps a failing accept from spinning the CPU.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(&builder, stream, remote, app, limits, stop).await;
            drop(place);
        });
    }
    // Every open connection holds a place until it ends: all of them back
    // means every connection has ended.
    let _ = places.acquire_many(cap).await;
}

/// What the watchdog knows of one connection.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last byte read or written.
    last_io_ms: AtomicU64,
    /// Whether a request has begun, and how many have not been answered yet.
    served: AtomicBool,
    in_flight: AtomicUsize,
    /// Woken when the last request in flight is answered: the idle timer
    /// starts again.
    settled: Notify,
}

impl Activity {
    fn touch(&self) {
        let elapsed = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io_ms.store(elapsed, Ordering::Relaxed);
    }

    /// When the connection is to be closed as things stand, if ever.
    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        if !self.served.load(Ordering::Acquire) {
            return Some(self.opened + limits.header_timeout);
        }
        (self.in_flight.load(Ordering::Acquire) == 0).then(|| {
            self.opened + Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed)) + limits.idle_timeout
        })
    }
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.served.store(true, Ordering::Release);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A permit is kept if the watchdog is not waiting yet.
            self.0.settled.notify_one();
        }
    }
}

async fn connection(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity {
        opened: Instant::now(),
        last_io_ms: AtomicU64::new(0),
        served: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        settled: Notify::new(),
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let in_flight = InFlight::begin(&requests);
        let mut request = request.map(|body| Body::new(DeadlineBody::new(body, limits.body_timeout)));
        request.extensions_mut().insert(ConnectInfo(remote));
        let answer = tower_service::Service::call(&mut app.clone(), request);
        async move {
            let answer = answer.await;
            drop(in_flight);
            answer
        }
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%remote, error = %error, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            () = until(deadline, &activity.settled) => {
                // Looked at again: a request may have begun, or a byte moved.
                if activity.deadline(&limits).is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!(%remote, "closing a connection that sent no request, or sat idle, too long");
                    return;
                }
            }
        }
    }
}

/// Until `deadline`, or, with none (a request in flight: its body is bounded
/// by the body timeout), until the requests in flight are answered.
async fn until(deadline: Option<Instant>, settled: &Notify) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => settled.notified().await,
    }
}

/// A socket that notes when a byte last moved.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The error a request body gives when it has not arrived within the body
/// timeout; [`crate::json`] answers it with 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

impl BodyTimedOut {
    /// Whether `error`, or anything it was caused by, is a body that timed out.
    #[must_use]
    pub fn caused(error: &(dyn StdError + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(error) = next {
            if error.is::<Self>() {
                return true;
            }
            next = error.source();
        }
        false
    }
}

/// A request body that fails once `timeout` has passed since the request
/// head, however the bytes trickle in.
struct DeadlineBody<B> {
    body: B,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<B> DeadlineBody<B> {
    fn new(body: B, timeout: Duration) -> Self {
        Self {
            body,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    //! Real sockets against a real server: what a slowloris client does.
    use std::time::Duration;

    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    const SHORT: Duration = Duration::from_millis(600);

    fn limits() -> HttpLimits {
        HttpLimits {
            header_timeout: SHORT,
            body_timeout: SHORT,
            idle_timeout: Duration::from_millis(900),
            max_connections: 64,
            ..HttpLimits::default()
        }
    }

    async fn server(limits: HttpLimits) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/ping", get(|| async { "pong" }))
            .route(
                "/echo",
                post(|body: axum::body::Bytes| async move { format!("{} bytes", body.len()) }),
            )
            .route(
                "/json",
                post(|crate::Json(value): crate::Json<serde_json::Value>| async move { value.to_string() }),
            );
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, app, limits, stopped));
        (address, stop, task)
    }

    /// Reads until the server closes the connection; what it sent.
    async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
        let mut answer = Vec::new();
        tokio::time::timeout(within, stream.read_to_end(&mut answer))
            .await
            .expect("the server should have closed the connection by now")
            .ok();
        String::from_utf8_lossy(&answer).into_owned()
    }

    async fn get_ping(address: SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        read_to_close(&mut stream, Duration::from_secs(5)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_sent_and_idle_connections_are_closed_on_time_while_others_are_served() {
        let (address, _stop, _task) = server(limits()).await;
        let started = Instant::now();
        // 20 that connect and send nothing, 20 that send half a head and
        // trickle more, 20 that finish one request and then sit idle.
        let mut silent = Vec::new();
        let mut trickling = Vec::new();
        let mut idle = Vec::new();
        for _ in 0..20 {
            silent.push(TcpStream::connect(address).await.unwrap());
            let mut half = TcpStream::connect(address).await.unwrap();
            half.write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\n")
                .await
                .unwrap();
            trickling.push(half);
            let mut kept = TcpStream::connect(address).await.unwrap();
            kept.write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut first = [0_u8; 64];
            let n = kept.read(&mut first).await.unwrap();
            assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
            idle.push(kept);
        }
        // Meanwhile, normal requests are served at once.
        for _ in 0..5 {
            assert!(get_ping(address).await.ends_with("pong"));
        }
        let trickle = tokio::spawn(async move {
            for _ in 0..10 {
                for stream in &mut trickling {
                    let _ = stream.write_all(b"x-slow: 1\r\n").await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            trickling
        });
        for mut stream in silent {
            assert_eq!(read_to_close(&mut stream, Duration::from_secs(3)).await, "");
        }
        for mut stream in trickle.await.unwrap() {
            // hyper answers an unfinished head with 408, or just closes.
            let answer = read_to_close(&mut stream, Duration::from_secs(3)).await;
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "{answer}"
            );
        }
        for mut stream in idle {
            let rest = read_to_close(&mut stream, Duration::from_secs(3)).await;
            assert!(!rest.contains("HTTP/1.1"), "nothing more is answered: {rest}");
        }
        let took = started.elapsed();
        assert!(took >= SHORT, "closed before the timeout: {took:?}");
        assert!(get_ping(address).await.ends_with("pong"), "still serving");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_that_never_finishes_is_408_at_the_body_timeout() {
        let (address, _stop, _task) = server(limits()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"POST /json HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\":")
            .await
            .unwrap();
        let started = Instant::now();
        let answer = read_to_close(&mut stream, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(started.elapsed() >= SHORT - Duration::from_millis(50));
        // A whole body within the limit is read as usual.
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello",
            )
            .await
            .unwrap();
        assert!(
            read_to_close(&mut stream, Duration::from_secs(5))
                .await
                .ends_with("5 bytes")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_cap_connections_wait_until_one_closes() {
        let limits = HttpLimits {
            max_connections: 3,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ..limits()
        };
        let (address, _stop, _task) = server(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(address).await.unwrap());
        }
        // The fourth connects (the kernel's backlog) but is not served...
        let waiting = tokio::spawn(get_ping(address));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "served past the cap");
        // ...until a place frees up.
        drop(held.pop());
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(answer.ends_with("pong"), "{answer}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_finishes_the_request_in_flight_and_returns() {
        let (address, stop, task) = server(limits()).await;
        let mut kept = TcpStream::connect(address).await.unwrap();
        kept.write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0_u8; 128];
        let _ = kept.read(&mut first).await.unwrap();
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_to_close(&mut kept, Duration::from_secs(1)).await, "");
    }
}
