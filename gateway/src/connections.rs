//! What every accepted connection goes through below HTTP: the cap on connections, the idle
//! timeout, and the read buffer under TLS ([`Guard`], the acceptor under rustls).
//!
//! **Why a wrapper around the socket for the idle timeout.** hyper's header-read timeout
//! (`server.header_read_timeout_secs`, set on the HTTP builder) covers a request's head only,
//! and rustls' handshake timeout the handshake; neither sees a client that stops halfway through
//! a body, or one that stops reading the answer. A deadline on the socket sees every silence,
//! but must not take the gateway's own for the client's: a long poll (`?wait=`) or a followed
//! log of a quiet run sends nothing for minutes, while hyper keeps a read pending on the socket
//! to notice the client leaving. So the socket ([`Watched`]) keeps the time of its last byte in
//! or out, and when a read or a write has waited `idle` since, it asks the connection's
//! requests ([`Answers`], kept by [`Tracked`] around the router): if one is being answered and
//! its body has arrived whole, the gateway is the one working and the clock starts again;
//! otherwise (no request, a body not finished, an answer the client does not read) the
//! connection is ended. The deadline is only looked at inside a pending read or write, so a
//! gateway that reads slowly (an upload held back by the disk) never times its client out.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Bytes read from a connection's socket at once, below TLS. rustls asks for about 4 KiB per
/// read; without a buffer under it, a large upload costs a system call (and, on loopback, the
/// sender's TCP work done in the receiver's) every 4 KiB. About one TLS record: 64 KiB was no
/// faster, and every connection, idle or not, holds this much.
const SOCKET_READ_BUFFER: usize = 16 * 1024;

/// The acceptor under TLS: takes one of `max_connections` slots (a connection beyond them is
/// closed at once, before its handshake costs anything), watches the socket for silence, and
/// gives it a read buffer (writes go straight through).
#[derive(Clone)]
pub struct Guard {
    slots: Arc<Semaphore>,
    idle: Duration,
}

impl Guard {
    pub fn new(max_connections: usize, idle: Duration) -> Guard {
        Guard {
            slots: Arc::new(Semaphore::new(max_connections)),
            idle,
        }
    }
}

impl<I, S> axum_server::accept::Accept<I, S> for Guard
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    type Stream = BufReader<Watched<I>>;
    type Service = Tracked<S>;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::debug!("refusing a connection: server.max_connections are open");
            return std::future::ready(Err(io::Error::other("too many connections")));
        };
        let answers = Arc::new(Answers::default());
        let watched = Watched {
            io: stream,
            answers: answers.clone(),
            idle: self.idle,
            last: Instant::now(),
            timer: Box::pin(tokio::time::sleep(self.idle)),
            write_blocked: false,
            _slot: slot,
        };
        std::future::ready(Ok((
            BufReader::with_capacity(SOCKET_READ_BUFFER, watched),
            Tracked {
                inner: service,
                answers,
            },
        )))
    }
}

/// Where the requests of one connection stand.
#[derive(Default)]
pub struct Answers {
    /// Requests not answered in full: from their head to the end of their response's body.
    open: AtomicUsize,
    /// Of those, requests whose body has not arrived whole.
    receiving: AtomicUsize,
}

impl Answers {
    /// The gateway is working on an answer and waits for nothing from the client.
    fn gateway_busy(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0 && self.receiving.load(Ordering::Acquire) == 0
    }
}

/// One count of [`Answers`], taken back when dropped.
struct Count(Arc<Answers>, fn(&Answers) -> &AtomicUsize);

impl Count {
    fn new(answers: &Arc<Answers>, which: fn(&Answers) -> &AtomicUsize) -> Count {
        which(answers).fetch_add(1, Ordering::AcqRel);
        Count(answers.clone(), which)
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's socket, ended after `idle` of silence that is the client's (see the module's
/// comment).
pub struct Watched<I> {
    io: I,
    answers: Arc<Answers>,
    idle: Duration,
    /// The last byte read or written.
    last: Instant,
    timer: Pin<Box<Sleep>>,
    /// The last write found the client's window full: it is not reading.
    write_blocked: bool,
    _slot: OwnedSemaphorePermit,
}

impl<I> Watched<I> {
    /// For a read or write that must wait: pending until the connection has been silent for
    /// `idle`, then the error that ends it, unless the silence is the gateway's own.
    fn silent(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let deadline = self.last + self.idle;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            ready!(self.timer.as_mut().poll(cx));
            if self.write_blocked || !self.answers.gateway_busy() {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client was silent for server.idle_timeout_secs",
                ));
            }
            self.last = Instant::now();
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => this.silent(cx).map(Err),
            done => {
                if buf.filled().len() > before {
                    this.last = Instant::now();
                }
                done
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        self.writing(cx, polled, |n| *n > 0)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.writing(cx, polled, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.writing(cx, polled, |()| false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.writing(cx, polled, |()| false)
    }
}

impl<I> Watched<I> {
    /// A write (or flush, or shutdown) as the socket answered it: one that must wait means the
    /// client is not reading, and waits on its silence; one done that moved bytes is activity.
    fn writing<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        moved: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => {
                self.write_blocked = true;
                self.silent(cx).map(Err)
            }
            Poll::Ready(Ok(done)) => {
                self.write_blocked = false;
                if moved(&done) {
                    self.last = Instant::now();
                }
                Poll::Ready(Ok(done))
            }
            failed => failed,
        }
    }
}

/// The router of one connection, counting its requests in [`Answers`] until their response's
/// body ends.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    answers: Arc<Answers>,
}

impl<S, B> tower::Service<Request<B>> for Tracked<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: HttpBody<Data = axum::body::Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let open = Count::new(&self.answers, |a| &a.open);
        let receiving =
            (!req.body().is_end_stream()).then(|| Count::new(&self.answers, |a| &a.receiving));
        let req = req.map(|body| Body::new(Receiving { body, receiving }));
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|body| Body::new(Answering { body, _open: open })))
        })
    }
}

/// A request's body, counted as still arriving until its end (or until it is dropped).
struct Receiving<B> {
    body: B,
    receiving: Option<Count>,
}

impl<B: HttpBody + Unpin> HttpBody for Receiving<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.body.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            self.receiving = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A response's body; its request is answered once it is dropped.
struct Answering {
    body: Body,
    _open: Count,
}

impl HttpBody for Answering {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
