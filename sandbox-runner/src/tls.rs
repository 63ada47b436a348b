//! The client of a remote engine over mutual TLS: it trusts the CA it is given and nothing
//! else (bollard's own TLS client adds the host's public roots, under which any certificate a
//! public CA issued for the engine's name would pass), and keeps its connections for the next
//! call instead of a handshake per call.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::{BollardRequest, Docker};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

/// How long an unused connection to the engine is kept.
const IDLE: Duration = Duration::from_secs(30);

/// A client of the engine at `host` (`tcp://host:port` or `https://…`), presenting `cert` and
/// `key`, trusting only the certificates in `ca`.
pub(crate) fn connect(host: &str, key: &Path, cert: &Path, ca: &Path, secs: u64) -> Result<Docker> {
    let config = client_config(key, cert, ca)?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(secs)));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client = Arc::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(https),
    );
    let addr = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("https://"))
        .unwrap_or(host)
        .trim_end_matches('/');
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let client = client.clone();
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some(format!("https://{addr}")),
        secs,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(crate::docker::engine_error)
}

fn client_config(key: &Path, cert: &Path, ca: &Path) -> Result<rustls::ClientConfig> {
    let unreadable = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        Error::Failed(format!("the engine's {what} {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| unreadable("CA", ca, &e))? {
        let c = c.map_err(|e| unreadable("CA", ca, &e))?;
        roots.add(c).map_err(|e| unreadable("CA", ca, &e))?;
    }
    if roots.is_empty() {
        return Err(unreadable("CA", ca, &"no certificate in it"));
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| unreadable("client certificate", cert, &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| unreadable("client certificate", cert, &e))?;
    if chain.is_empty() {
        return Err(unreadable(
            "client certificate",
            cert,
            &"no certificate in it",
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| unreadable("client key", key, &e))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Failed(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| unreadable("client key", key, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_tls_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("vre-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.join("missing.pem");
        let cases = [
            (&missing, &missing, &missing, "the engine's CA"),
            (&missing, &missing, &empty, "no certificate in it"),
        ];
        for (key, cert, ca, want) in cases {
            let e = client_config(key, cert, ca).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(e.contains(dir.to_str().unwrap()), "the file is named: {e}");
        }
        let junk = dir.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = client_config(&missing, &missing, &junk)
            .unwrap_err()
            .to_string();
        assert!(e.contains("junk.pem"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
