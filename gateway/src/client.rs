//! The HTTP client behind the `vre` client commands (and the JWKS fetcher).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorBody;

/// A rustls client trusting the public web roots plus, when given, the gateway's own CA.
pub fn http_client(ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    http_client_with(ca, reqwest::redirect::Policy::default())
}

/// [`http_client`], following redirects as `redirects` says.
pub fn http_client_with(
    ca: Option<&Path>,
    redirects: reqwest::redirect::Policy,
) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca {
        let pem =
            std::fs::read(ca).with_context(|| format!("reading the CA file {}", ca.display()))?;
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            roots
                .add(cert.with_context(|| format!("reading the CA file {}", ca.display()))?)
                .context("adding the CA certificate")?;
            n += 1;
        }
        anyhow::ensure!(n > 0, "the CA file {} holds no certificate", ca.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(redirects)
        .user_agent(concat!("vre/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// A client of one gateway.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A refusal from the gateway, with its stable code.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({code}, HTTP {status})")]
pub struct Refused {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// The error a failed answer stands for: the gateway's own refusal when it sent one.
async fn refusal(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(e) => Refused {
            status: status.as_u16(),
            code: e.code.as_str().to_owned(),
            message: e.message,
        }
        .into(),
        Err(_) => anyhow::anyhow!("the gateway answered HTTP {status}: {text}"),
    }
}

impl Client {
    pub fn new(url: &str, token: Option<String>, ca: Option<&Path>) -> anyhow::Result<Client> {
        Ok(Client {
            http: http_client(ca)?,
            base: url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// A client that sends no token, for what the gateway serves to anyone (the catalog).
    pub fn anonymous(url: &str, ca: Option<&Path>) -> anyhow::Result<Client> {
        Client::new(url, None, ca)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Sends; a failed answer becomes the gateway's refusal.
    async fn answer(&self, r: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = r
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        if !resp.status().is_success() {
            return Err(refusal(resp).await);
        }
        Ok(resp)
    }

    async fn send<T: DeserializeOwned>(&self, r: reqwest::RequestBuilder) -> anyhow::Result<T> {
        self.answer(r)
            .await?
            .json()
            .await
            .context("reading the gateway's answer")
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.req(reqwest::Method::GET, path)).await
    }

    /// Gets one page of a list, with the cursor of the next page when there may be one.
    pub async fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<(T, Option<String>)> {
        let resp = self.answer(self.req(reqwest::Method::GET, path)).await?;
        let next = resp
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let page = resp.json().await.context("reading the gateway's answer")?;
        Ok((page, next))
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.req(reqwest::Method::POST, path).json(body))
            .await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.req(reqwest::Method::PUT, path).json(body))
            .await
    }

    /// Posts a streaming body.
    pub async fn post_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        body: reqwest::Body,
        content_type: &str,
    ) -> anyhow::Result<T> {
        self.send(
            self.req(reqwest::Method::POST, path)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// Gets a body and hands it over chunk by chunk as it arrives.
    pub async fn stream(&self, path: &str, mut each: impl FnMut(&[u8])) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let resp = self.answer(self.req(reqwest::Method::GET, path)).await?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            each(&chunk.context("the stream was cut")?);
        }
        Ok(())
    }

    /// Gets a text body.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let resp = self.answer(self.req(reqwest::Method::GET, path)).await?;
        Ok(resp.text().await?)
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.req(reqwest::Method::DELETE, path)).await
    }

    /// Downloads to `out`, streaming; returns the SHA-256 the gateway announced.
    pub async fn download(&self, path: &str, out: &Path) -> anyhow::Result<Option<String>> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let resp = self.answer(self.req(reqwest::Method::GET, path)).await?;
        let sha = resp
            .headers()
            .get("x-content-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut f = tokio::fs::File::create(out)
            .await
            .with_context(|| format!("creating {}", out.display()))?;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            f.write_all(&chunk?).await?;
        }
        f.sync_all().await?;
        Ok(sha)
    }
}
