//! Refusals the client gets to read, even of a request whose body it is still sending.
//!
//! A refusal answered before the request body is read (no token, a bad query, not a member)
//! leaves the rest of the body on the wire. hyper then reads what is already buffered and,
//! finding the body unfinished, closes the connection once the answer is written. A client that
//! sends the whole body before it reads anything (Python's `requests`, most simple scripts) is
//! still writing when the socket closes: it sees a connection reset, never the answer.
//!
//! So every request's body (an upload's above all) is held where this layer can reach it again: when the answer is a
//! refusal (4xx), what is left of the body is read and discarded first, up to
//! [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`]. Past either bound the connection is closed as
//! before: nobody can make the gateway read gigabytes it is going to refuse. A client that asked
//! `Expect: 100-continue` has not sent its body yet and is answered at once (it sends nothing
//! more).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::Request;
use axum::http::header::EXPECT;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{Stream, StreamExt as _};

/// The most of a refused request's body read to keep its answer readable.
pub const DRAIN_MAX_BYTES: usize = 16 << 20;
/// The longest a refused request's body is read for.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);

/// The middleware: see the module's documentation.
pub async fn drain_refused(req: Request, next: Next) -> Response {
    let expects_continue = req
        .headers()
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = req.into_parts();
    // Shared with the handler's body, so what it leaves unread can be taken back afterwards.
    // Only one side polls at a time: the handler while it runs, this layer after.
    let held = Arc::new(Mutex::new(Some(body.into_data_stream())));
    let handed = {
        let held = held.clone();
        futures_util::stream::poll_fn(move |cx| match crate::lock(&held).as_mut() {
            Some(b) => Pin::new(b).poll_next(cx),
            None => std::task::Poll::Ready(None),
        })
    };
    let req = Request::from_parts(parts, Body::from_stream(handed));
    let resp = next.run(req).await;
    let rest = crate::lock(&held).take();
    if let Some(rest) = rest.filter(|_| resp.status().is_client_error() && !expects_continue) {
        discard(rest).await;
    }
    resp
}

/// Reads and drops a body, within the bounds.
async fn discard(mut stream: BodyDataStream) {
    let mut left = DRAIN_MAX_BYTES;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            match left.checked_sub(chunk.len()) {
                Some(l) => left = l,
                None => break,
            }
        }
    })
    .await;
}
