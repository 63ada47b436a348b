//! How the backend reaches the engine: the connection's settings, its two clients (made on
//! first use) and the deadline on every call, and what a failed call means ([`engine_error`]).

use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;

use super::DockerBackend;
use crate::{Error, Result};

/// How to reach the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// `unix:///var/run/docker.sock` (the default), or `tcp://host:2376` with `tls`.
    pub host: Option<String>,
    /// Client key, certificate and CA for a remote engine.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Deadline of each control call.
    pub call_timeout: Duration,
    /// How many sandboxes keep a container started ahead for their next run (0: none).
    pub standby: usize,
}

fn make_clients(conn: &Connection) -> Result<(Docker, Docker)> {
    let secs = conn.call_timeout.as_secs().max(1);
    let docker = match (&conn.host, &conn.tls) {
        (Some(host), Some((key, cert, ca))) => {
            return finish(crate::tls::connect(host, key, cert, ca, secs)?, conn);
        }
        (Some(host), None) if host.starts_with("unix://") => Docker::connect_with_unix(
            host.trim_start_matches("unix://"),
            secs,
            bollard::API_DEFAULT_VERSION,
        ),
        (Some(host), None) => Docker::connect_with_http(host, secs, bollard::API_DEFAULT_VERSION),
        (None, _) => Docker::connect_with_local_defaults(),
    }
    .map_err(engine_error)?;
    finish(docker, conn)
}

/// The control client (calls time out after `call_timeout`) and the bulk one.
fn finish(docker: Docker, conn: &Connection) -> Result<(Docker, Docker)> {
    let bulk = docker.clone().with_timeout(Duration::from_secs(6 * 3600));
    Ok((docker.with_timeout(conn.call_timeout), bulk))
}

/// An error and what caused it, down to the root: a connection's failure says why (a refused
/// connection, a certificate the engine or the gateway does not trust), not only where.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// What a failed call to the engine means, from bollard's typed errors: the engine's answer
/// (its status and message), no answer in time, or none at all because the connection failed.
pub(crate) fn engine_error(e: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError {
            status_code: 404,
            message,
        } => Error::NotFound(message),
        B::DockerResponseServerError {
            status_code,
            message,
        } => Error::Engine {
            status: status_code,
            message,
        },
        B::RequestTimeoutError => Error::Timeout(Duration::ZERO),
        // No socket where the engine listens: it is not running, or not yet.
        B::SocketNotFoundError(_) => Error::Unavailable(with_causes(&e)),
        B::HyperLegacyError { ref err } if connection_failed(err) => {
            Error::Unavailable(with_causes(&e))
        }
        B::HyperResponseError { ref err } if connection_failed(err) => {
            Error::Unavailable(with_causes(&e))
        }
        B::IOError { ref err } if connection_failed(err) => Error::Unavailable(with_causes(&e)),
        _ => Error::Failed(with_causes(&e)),
    }
}

/// Whether an exchange with the engine failed for want of a working connection (refused, no
/// socket, reset, closed before the answer was complete): the engine is down, restarting or
/// unreachable, and the caller may ask again. The first error down the chain that tells
/// decides. A failure of the request's own body (an upload's source) or an answer that is not
/// HTTP is no connection failure. bollard turns a broken answer stream into an `io::Error`
/// keeping only hyper's message, so a transport error that tells nothing counts as a broken
/// connection.
fn connection_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut next = Some(e);
    while let Some(c) = next {
        next = c.source();
        if let Some(client) = c.downcast_ref::<hyper_util::client::legacy::Error>() {
            if client.is_connect() {
                return true;
            }
        } else if let Some(h) = c.downcast_ref::<hyper::Error>() {
            if h.is_user() || h.is_parse() {
                return false;
            }
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return true;
            }
        } else if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::BrokenPipe
                    | K::UnexpectedEof
                    | K::NotFound
                    | K::TimedOut
                    | K::AddrNotAvailable
                    | K::HostUnreachable
                    | K::NetworkUnreachable
            ) {
                return true;
            }
            // Its `source` skips the error it wraps.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
            }
        }
    }
    true
}

impl DockerBackend {
    /// The control client and the bulk client (for uploads, whose answer comes only after the
    /// engine extracted them, so their timeout must cover it).
    pub(super) fn clients(&self) -> Result<(Docker, Docker)> {
        let mut guard = crate::lock(&self.clients);
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        // A client that cannot be made (its TLS files unreadable, say) leaves the engine out of
        // reach as surely as one that is down; it is made again on the next call.
        let c = make_clients(&self.conn).map_err(|e| match e {
            Error::Failed(m) => Error::Unavailable(m),
            other => other,
        })?;
        *guard = Some(c.clone());
        Ok(c)
    }

    pub(super) fn docker(&self) -> Result<Docker> {
        Ok(self.clients()?.0)
    }

    pub(super) fn bulk(&self) -> Result<Docker> {
        Ok(self.clients()?.1)
    }

    pub(super) async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.call_timeout, fut).await {
            Ok(r) => r.map_err(engine_error),
            Err(_) => Err(Error::Timeout(self.call_timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::errors::Error as B;
    use bollard::query_parameters::UploadToContainerOptionsBuilder;

    fn server(status: u16) -> B {
        B::DockerResponseServerError {
            status_code: status,
            message: "Conflict. The container name \"/vre-run-1\" is already in use".into(),
        }
    }

    #[test]
    fn answers_keep_their_status_and_message() {
        let e = engine_error(server(409));
        assert!(e.is_conflict() && !e.is_not_modified(), "{e:?}");
        assert!(
            matches!(&e, Error::Engine { status: 409, message } if message.starts_with("Conflict.")),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the container engine refused: 409: Conflict. The container name \"/vre-run-1\" is already in use"
        );
        assert!(engine_error(server(304)).is_not_modified());
        assert!(!engine_error(server(500)).is_conflict());
        assert!(matches!(engine_error(server(404)), Error::NotFound(_)));
    }

    #[test]
    fn a_connection_that_failed_is_the_engine_away() {
        use std::io::{Error as Io, ErrorKind as K};
        let cases = [
            B::from(Io::from(K::ConnectionRefused)),
            B::from(Io::new(K::ConnectionReset, "reset by peer")),
            // A broken answer stream, as bollard reports it: hyper's message in an `Other`.
            B::from(Io::other("connection closed before message completed")),
            // Made before the engine put its socket there.
            B::SocketNotFoundError("/run/vre-test/docker.sock".into()),
        ];
        for b in cases {
            let shown = b.to_string();
            let e = engine_error(b);
            assert!(matches!(e, Error::Unavailable(_)), "{shown}: {e:?}");
            assert!(e.to_string().contains(&shown), "the cause is kept: {e}");
        }
        assert!(matches!(
            engine_error(B::RequestTimeoutError),
            Error::Timeout(_)
        ));
    }

    #[test]
    fn words_in_a_message_do_not_make_the_engine_away() {
        let cases = [
            B::DockerStreamError {
                error: "failed to connect: connection refused by the registry".into(),
            },
            B::JsonDataError {
                message: "no such file".into(),
                column: 3,
            },
            B::UnsupportedURISchemeError {
                uri: "ftp://engine".into(),
            },
        ];
        for b in cases {
            let e = engine_error(b);
            assert!(matches!(e, Error::Failed(_)), "{e:?}");
        }
        let refused = B::DockerResponseServerError {
            status_code: 500,
            message: "dial unix /run/containerd.sock: connect: connection refused".into(),
        };
        assert!(matches!(
            engine_error(refused),
            Error::Engine { status: 500, .. }
        ));
    }

    /// A client of a socket in a fresh folder, and where that socket is.
    fn client(dir: &std::path::Path) -> (Docker, PathBuf) {
        let path = dir.join("engine.sock");
        // bollard refuses to make a client of a socket that is not there.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let docker =
            Docker::connect_with_unix(path.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION)
                .unwrap();
        (docker, path)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vre-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Answers one request on the socket with `answer`, after reading its head.
    fn answer_once(path: &std::path::Path, answer: &'static [u8]) {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                head.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).await.unwrap();
            s.shutdown().await.unwrap();
        });
    }

    #[tokio::test]
    async fn real_failures_of_a_socket_are_told_apart() {
        let dir = temp_dir("engine-errors");
        let (docker, path) = client(&dir);

        // Nothing listens on the socket (an engine stopped or restarting).
        let e = engine_error(docker.ping().await.unwrap_err());
        assert!(
            matches!(&e, Error::Unavailable(m) if m.contains("refused")),
            "{e:?}"
        );

        // The socket is gone.
        std::fs::remove_file(&path).unwrap();
        let e = engine_error(docker.ping().await.unwrap_err());
        assert!(
            matches!(&e, Error::Unavailable(m) if m.contains("No such file")),
            "{e:?}"
        );

        // The connection closed before the answer was complete (an engine going down).
        answer_once(&path, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nOK");
        let e = engine_error(docker.ping().await.unwrap_err());
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");

        // An answer with an error status.
        answer_once(
            &path,
            b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 41\r\n\r\n{\"message\":\"removal already in progress\"}",
        );
        let e = engine_error(docker.ping().await.unwrap_err());
        assert!(
            matches!(&e, Error::Engine { status: 409, message } if message == "removal already in progress"),
            "{e:?}"
        );

        // Something that does not speak HTTP listens there: asking again will not help.
        answer_once(&path, b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        let e = engine_error(docker.ping().await.unwrap_err());
        assert!(matches!(e, Error::Failed(_)), "{e:?}");

        // An upload whose source failed, however that failure looks: the engine is not away.
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let reader = tokio::spawn(async move {
            // Reads all and answers nothing, so the upload's own failure is what ends it.
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
        });
        let source = futures_util::stream::iter([
            Ok(bytes::Bytes::from_static(b"a tar")),
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ]);
        let opts = UploadToContainerOptionsBuilder::default().path("/").build();
        let upload = docker.upload_to_container("c", Some(opts), bollard::body_try_stream(source));
        let e = engine_error(upload.await.unwrap_err());
        assert!(
            matches!(&e, Error::Failed(m) if m.contains("connection reset")),
            "{e:?}"
        );
        reader.await.unwrap();

        std::fs::remove_dir_all(dir).unwrap();
    }
}
