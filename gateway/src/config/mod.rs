//! Settings of `vre server`: built-in defaults, then a TOML file, then `VRE_*` variables.
//!
//! Nested keys are reached from the environment with a double underscore:
//! `VRE_AUTH__ISSUER` sets `auth.issuer`, `VRE_REVIEW__QUORUM__EGRESS` sets `review.quorum.egress`.
//! Unknown keys in the file are an error; unknown `VRE_*` variables are a warning (the client's
//! `VRE_URL`, `VRE_TOKEN` and `VRE_CA` are known). Secrets are typed as [`Secret`] so that no
//! `Debug` or log line shows them.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use self::datasets::{DatasetSettings, StoreSettings};
use self::egress::EgressSettings;
use self::sandbox::SandboxSettings;

pub mod categories;
pub mod datasets;
pub mod egress;
pub mod oidc;
pub mod sandbox;

/// Every setting of the gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the database (for SQLite), blobs, keys, certificates and audit checkpoints live.
    pub data_dir: PathBuf,
    /// The address the HTTPS listener binds to.
    pub listen: SocketAddr,
    /// Where blobs (uploads, quarantined files, release packages) live, when not in the data
    /// dir: gateways sharing a database must share this folder too (the same path on each, a
    /// network file system), since each serves what another received. Each writes its
    /// temporary files in `tmp/<instance id>/` inside it, on the same file system.
    pub blobs_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…`; empty means SQLite in the data dir.
    pub database_url: Secret,
    /// How many database connections the gateway keeps at most.
    pub database_max_connections: u32,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
    pub review: ReviewSettings,
    pub limits: LimitSettings,
    pub server: ServerSettings,
    pub audit: AuditSettings,
    pub ingress: IngressSettings,
    pub egress: EgressSettings,
    pub sandbox: SandboxSettings,
    pub datasets: DatasetSettings,
    pub store: StoreSettings,
    pub dataset_categories: categories::DatasetCategorySettings,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain; when empty a local CA and server certificate are generated in
    /// `<data_dir>/tls` on first start.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Names the generated certificate is valid for.
    pub hostnames: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// The `iss` every accepted token must carry.
    pub issuer: String,
    /// The `aud` every accepted token must carry.
    pub audience: String,
    /// Where the roles are in the token's claims; dots descend (`realm_access.roles`).
    pub roles_claim: String,
    /// Where the institution a steward speaks for is in the token's claims (dots descend): an
    /// identifier such as a DMP's `providing_institution.id`.
    pub institution_claim: String,
    /// Accept tokens signed with the gateway's own key (`vre token issue`).
    pub local_tokens: bool,
    /// An identity provider's keys, as a JWKS document on disk.
    pub jwks_file: Option<PathBuf>,
    /// An identity provider's keys, fetched at start and refreshed.
    pub jwks_url: Option<String>,
    /// How often the JWKS URL is fetched again, in seconds.
    pub jwks_refresh_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Signing in to the web pages through an OpenID Connect provider.
    pub oidc: oidc::OidcSettings,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewSettings {
    pub quorum: QuorumSettings,
}

/// Approvals each kind of application needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuorumSettings {
    pub listing: u32,
    pub extension: u32,
    pub access: u32,
    pub ingress: u32,
    pub egress: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest attachment file accepted, in bytes.
    pub attachment_max_bytes: u64,
    /// Largest JSON request body, in bytes, on every route but the attachments' (which takes
    /// its file in base64: [`LimitSettings::attachment_body_max_bytes`]) and ingress uploads
    /// (`ingress.max_upload_bytes`).
    pub json_body_max_bytes: u64,
}

impl LimitSettings {
    /// Largest body of `POST /api/v1/applications/{id}/attachments`: the largest file in base64
    /// (4 characters for every 3 bytes), plus a JSON body's allowance for the other fields.
    pub fn attachment_body_max_bytes(&self) -> u64 {
        self.attachment_max_bytes.div_ceil(3) * 4 + self.json_body_max_bytes
    }
}

/// The HTTPS listener: how long a client may keep a connection silent, and how many
/// connections and uploads there may be at once.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Seconds a request's head may take to arrive once the gateway waits for one (after the
    /// TLS handshake, and between the requests of a kept-alive connection); also the longest a
    /// TLS handshake may take.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay silent while the gateway waits for its client (a
    /// handshake, a request, the rest of a body, a response the client does not read) before
    /// it is closed. Time the gateway itself takes to answer (a long poll, a followed log) does
    /// not count.
    pub idle_timeout_secs: u64,
    /// Connections at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Uploads (ingress archives and attachments) at once; more are answered 503 `busy`.
    pub max_concurrent_uploads: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 30,
            max_connections: 1024,
            max_concurrent_uploads: 8,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Where signed checkpoints of the audit chain's head are kept; outside the database, and
    /// best on storage the database's administrators cannot rewrite. Defaults to
    /// `<data_dir>/audit`.
    pub checkpoint_dir: Option<PathBuf>,
}

/// Limits and checks for archives brought in. Sizes in bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressSettings {
    pub max_upload_bytes: u64,
    pub max_entries: u64,
    pub max_entry_bytes: u64,
    pub max_unpacked_bytes: u64,
    /// Unpacked bytes per uploaded byte; a zstd bomb stops as soon as it passes this.
    pub max_compression_ratio: u64,
    pub max_path_depth: usize,
    pub max_path_bytes: usize,
    /// Files larger than this are pointed out to reviewers.
    pub large_file_bytes: u64,
    /// Largest text file reviewers read through the gateway.
    pub max_view_bytes: u64,
    /// Write uploads to the blob store with direct I/O, around the page cache, where the file
    /// system allows it (tmpfs does not; there, and with `false`, uploads go through the page
    /// cache with early writeback). It saves the kernel's copy and later writeback of every
    /// upload; `false` suits a store on a file system where direct I/O is slow.
    pub direct_io: bool,
}

impl Default for IngressSettings {
    fn default() -> Self {
        let l = policy::archive::rules::Limits::default();
        IngressSettings {
            max_upload_bytes: l.max_upload_bytes,
            max_entries: l.max_entries,
            max_entry_bytes: l.max_entry_bytes,
            max_unpacked_bytes: l.max_unpacked_bytes,
            max_compression_ratio: l.max_compression_ratio,
            max_path_depth: l.max_path_depth,
            max_path_bytes: l.max_path_bytes,
            large_file_bytes: policy::archive::checks::CheckSettings::default().large_file_bytes,
            max_view_bytes: 8 << 20,
            direct_io: true,
        }
    }
}

impl IngressSettings {
    pub fn limits(&self) -> policy::archive::rules::Limits {
        policy::archive::rules::Limits {
            max_upload_bytes: self.max_upload_bytes,
            max_entries: self.max_entries,
            max_entry_bytes: self.max_entry_bytes,
            max_unpacked_bytes: self.max_unpacked_bytes,
            max_compression_ratio: self.max_compression_ratio,
            max_path_depth: self.max_path_depth,
            max_path_bytes: self.max_path_bytes,
            ..Default::default()
        }
    }

    pub fn checks(&self) -> policy::archive::checks::CheckSettings {
        policy::archive::checks::CheckSettings {
            large_file_bytes: self.large_file_bytes,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./vre-data"),
            listen: "127.0.0.1:8443".parse().expect("a valid literal address"),
            blobs_dir: None,
            database_url: Secret::default(),
            database_max_connections: 8,
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            review: ReviewSettings::default(),
            limits: LimitSettings::default(),
            server: ServerSettings::default(),
            audit: AuditSettings::default(),
            ingress: IngressSettings::default(),
            egress: EgressSettings::default(),
            sandbox: SandboxSettings::default(),
            datasets: DatasetSettings::default(),
            store: StoreSettings::default(),
            dataset_categories: Default::default(),
        }
    }
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert_file: None,
            key_file: None,
            hostnames: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            issuer: crate::auth::LOCAL_ISSUER.into(),
            audience: crate::auth::LOCAL_AUDIENCE.into(),
            roles_claim: "roles".into(),
            institution_claim: "institution".into(),
            local_tokens: true,
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_secs: 600,
            leeway_secs: 30,
            oidc: oidc::OidcSettings::default(),
        }
    }
}

impl Default for QuorumSettings {
    fn default() -> Self {
        let q = policy::review::Quorum::default();
        use policy::review::Kind;
        QuorumSettings {
            listing: q.get(Kind::Listing),
            extension: q.get(Kind::Extension),
            access: q.get(Kind::Access),
            ingress: q.get(Kind::Ingress),
            egress: q.get(Kind::Egress),
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            attachment_max_bytes: 16 * 1024 * 1024,
            json_body_max_bytes: 1024 * 1024,
        }
    }
}

impl QuorumSettings {
    pub fn to_policy(&self) -> anyhow::Result<policy::review::Quorum> {
        use policy::review::Kind;
        let mut q = policy::review::Quorum::default();
        for (kind, n) in [
            (Kind::Listing, self.listing),
            (Kind::Extension, self.extension),
            (Kind::Access, self.access),
            (Kind::Ingress, self.ingress),
            (Kind::Egress, self.egress),
        ] {
            q.set(kind, n)?;
        }
        Ok(q)
    }
}

/// Client-side variables that share the prefix and are not settings of the server.
const CLIENT_VARS: &[&str] = &["VRE_URL", "VRE_TOKEN", "VRE_CA", "VRE_LOG", "VRE_CONFIG"];

impl Settings {
    /// Loads the layers. `file` is `--config`; `env` is the process environment (passed in so
    /// tests need not touch the real one).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<(Settings, Vec<String>)> {
        let mut table =
            toml::Table::try_from(Settings::default()).context("encoding the defaults")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the configuration file {}", path.display()))?;
            let from_file: toml::Table = toml::from_str(&text)
                .with_context(|| format!("parsing the configuration file {}", path.display()))?;
            merge(&mut table, from_file);
        }
        let mut warnings = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("VRE_") else {
                continue;
            };
            if CLIENT_VARS.contains(&name.as_str()) {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if !set_path(&mut table, &path, &value) {
                warnings.push(format!("ignoring {name}: no such setting"));
            }
        }
        let settings: Settings = toml::Value::Table(table)
            .try_into()
            .context("the configuration is not valid")?;
        settings.check()?;
        if settings.sandbox.runtime.as_deref() == Some("runsc") {
            for (name, class) in &settings.sandbox.classes {
                if class.pids < GVISOR_MIN_PIDS {
                    warnings.push(format!(
                        "sandbox.classes.{name}.pids is {}: under gVisor (runsc) its own threads count against it, and it may not start below {GVISOR_MIN_PIDS}",
                        class.pids
                    ));
                }
            }
        }
        Ok((settings, warnings))
    }

    fn check(&self) -> anyhow::Result<()> {
        self.review.quorum.to_policy()?;
        self.egress.check()?;
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            bail!("tls.cert_file and tls.key_file must be set together");
        }
        if self.auth.issuer.is_empty() || self.auth.audience.is_empty() {
            bail!("auth.issuer and auth.audience must not be empty");
        }
        if let Some(url) = &self.auth.jwks_url {
            check_jwks_url(url)?;
        }
        self.auth.oidc.check()?;
        if !self
            .sandbox
            .classes
            .contains_key(&self.sandbox.default_class)
        {
            bail!(
                "sandbox.default_class `{}` is not one of sandbox.classes",
                self.sandbox.default_class
            );
        }
        if self.sandbox.run_lease_secs < 3 {
            bail!("sandbox.run_lease_secs must be at least 3");
        }
        if self.sandbox.max_concurrent_runs == 0
            || self.sandbox.max_concurrent_runs_per_project == 0
        {
            bail!(
                "sandbox.max_concurrent_runs and max_concurrent_runs_per_project must be at least 1"
            );
        }
        let server = &self.server;
        if server.header_read_timeout_secs == 0
            || server.idle_timeout_secs == 0
            || server.max_connections == 0
            || server.max_concurrent_uploads == 0
        {
            bail!(
                "server.header_read_timeout_secs, idle_timeout_secs, max_connections and max_concurrent_uploads must be at least 1"
            );
        }
        if self.limits.json_body_max_bytes == 0 {
            bail!("limits.json_body_max_bytes must be at least 1");
        }
        if self.database_max_connections == 0 {
            bail!("database_max_connections must be at least 1");
        }
        self.sandbox.check_engine()?;
        self.datasets.check()?;
        Ok(())
    }

    /// The database URL, defaulting to SQLite in the data dir.
    pub fn database_url(&self) -> String {
        if self.database_url.expose().is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("vre.db").display()
            )
        } else {
            self.database_url.expose().to_owned()
        }
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.audit
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit"))
    }

    /// The STORE's folder: `[store] dir`, or `store/` in the data dir.
    pub fn store_dir(&self) -> PathBuf {
        self.store
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("store"))
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets a dotted path if it names a known setting (one present in the defaults, or an optional
/// one the struct knows). Values are read as TOML when they parse (numbers, booleans, arrays),
/// else as strings.
fn set_path(table: &mut toml::Table, path: &[String], raw: &str) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = table;
    for p in parents {
        match cur.get_mut(p) {
            Some(toml::Value::Table(t)) => cur = t,
            _ => return false,
        }
    }
    let value = parse_env_value(raw);
    // Optional settings are absent from the encoded defaults; accept them by name.
    let known = cur.contains_key(last) || OPTIONAL_KEYS.contains(&last.as_str());
    if known {
        cur.insert(last.clone(), value);
    }
    known
}

/// The pids limit under which gVisor's sandbox may fail to start (its own threads are counted
/// on the host; it needs more than 48 on a 2-CPU engine).
const GVISOR_MIN_PIDS: i64 = 128;

const OPTIONAL_KEYS: &[&str] = &[
    "cert_file",
    "key_file",
    "jwks_file",
    "jwks_url",
    "checkpoint_dir",
    "docker_tls_key",
    "docker_tls_cert",
    "docker_tls_ca",
    "runtime",
    "logs_dir",
    "blobs_dir",
    "dir",
    "client_secret_file",
    "ca_file",
];

fn parse_env_value(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&probe) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

/// A value that must never be printed.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<unset>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

/// The identity provider's keys decide who anybody is: fetched in the clear, whoever sits on the
/// way could hand the gateway keys of their own. Only `https://` is fetched (a `jwks_file` is
/// the way to give keys without a fetch).
fn check_jwks_url(url: &str) -> anyhow::Result<()> {
    if !oidc::is_https(url) {
        let scheme = url.split_once("://").map_or("no scheme", |(s, _)| s);
        bail!(
            "auth.jwks_url must be an https:// URL with a host (this one has {scheme}): keys fetched otherwise could be swapped on the way; use https, or give the provider's keys in auth.jwks_file"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let (s, w) = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(s.review.quorum.egress, 2);
        assert!(w.is_empty());
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("vre-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vre.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[review.quorum]\negress = 3\naccess = 2\n",
        )
        .unwrap();
        let (s, w) = Settings::load(
            Some(&file),
            env(&[
                ("VRE_REVIEW__QUORUM__EGRESS", "4"),
                ("VRE_DATABASE_URL", "postgres://u:hunter2@db/vre"),
                ("VRE_AUTH__JWKS_URL", "https://idp.example/jwks"),
                ("VRE_TOKEN", "client"),
                ("VRE_NOPE", "x"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.review.quorum.egress, 4);
        assert_eq!(s.review.quorum.access, 2);
        assert_eq!(s.auth.jwks_url.as_deref(), Some("https://idp.example/jwks"));
        assert_eq!(w, vec!["ignoring VRE_NOPE: no such setting".to_string()]);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2"),
            "a secret leaked into Debug: {shown}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_jwks_url_must_be_https() {
        for url in [
            "http://idp.example/jwks",
            "HTTP://idp.example/jwks",
            "ftp://idp.example/jwks",
            "idp.example/jwks",
            "https://",
            "https:///jwks",
            "",
        ] {
            let e = Settings::load(None, env(&[("VRE_AUTH__JWKS_URL", url)]))
                .expect_err(url)
                .to_string();
            assert!(
                e.contains("auth.jwks_url must be an https:// URL"),
                "{url}: {e}"
            );
        }
        for url in ["https://idp.example/jwks", "HTTPS://idp.example:8443/certs"] {
            let (s, _) = Settings::load(None, env(&[("VRE_AUTH__JWKS_URL", url)])).unwrap();
            assert_eq!(s.auth.jwks_url.as_deref(), Some(url));
        }
        // Keys from a file stay allowed, with or without a URL beside them.
        let (s, _) =
            Settings::load(None, env(&[("VRE_AUTH__JWKS_FILE", "/etc/vre/jwks.json")])).unwrap();
        assert!(s.auth.jwks_url.is_none() && s.auth.jwks_file.is_some());
    }

    #[test]
    fn bad_configuration_is_refused() {
        let dir = std::env::temp_dir().join(format!("vre-cfg-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vre.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        assert!(
            Settings::load(Some(&file), env(&[])).is_err(),
            "a misspelt key must be refused"
        );
        assert!(Settings::load(None, env(&[("VRE_REVIEW__QUORUM__EGRESS", "0")])).is_err());
        assert!(Settings::load(None, env(&[("VRE_LISTEN", "not an address")])).is_err());
        assert!(Settings::load(None, env(&[("VRE_SERVER__IDLE_TIMEOUT_SECS", "0")])).is_err());
        for (host, tls, why) in [
            ("tcp://engine:2376", false, "reached over TCP"),
            ("http://engine:2375", true, "in the clear"),
            (
                "unix:///run/docker.sock",
                true,
                "apply to a tcp:// engine only",
            ),
            ("", true, "apply to a tcp:// engine only"),
            ("ssh://engine", false, "not supported"),
        ] {
            let mut vars = vec![("VRE_SANDBOX__DOCKER_HOST", host)];
            if tls {
                vars.extend([
                    ("VRE_SANDBOX__DOCKER_TLS_KEY", "/k.pem"),
                    ("VRE_SANDBOX__DOCKER_TLS_CERT", "/c.pem"),
                    ("VRE_SANDBOX__DOCKER_TLS_CA", "/ca.pem"),
                ]);
            }
            let e = Settings::load(None, env(&vars)).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{host}: {e:#}");
        }
        let partial = env(&[
            ("VRE_SANDBOX__DOCKER_HOST", "tcp://engine:2376"),
            ("VRE_SANDBOX__DOCKER_TLS_KEY", "/k.pem"),
        ]);
        let e = Settings::load(None, partial).unwrap_err();
        assert!(format!("{e:#}").contains("set together"), "{e:#}");
        let remote = env(&[
            ("VRE_SANDBOX__DOCKER_HOST", "tcp://engine:2376"),
            ("VRE_SANDBOX__DOCKER_TLS_KEY", "/k.pem"),
            ("VRE_SANDBOX__DOCKER_TLS_CERT", "/c.pem"),
            ("VRE_SANDBOX__DOCKER_TLS_CA", "/ca.pem"),
        ]);
        let (s, w) = Settings::load(None, remote).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            s.sandbox.docker_tls_ca.as_deref(),
            Some(Path::new("/ca.pem"))
        );
        let (s, w) = Settings::load(None, env(&[("VRE_SANDBOX__RUNTIME", "runsc")])).unwrap();
        assert_eq!(s.sandbox.runtime.as_deref(), Some("runsc"));
        assert!(w.is_empty(), "the default classes suit gVisor: {w:?}");
        let few = env(&[
            ("VRE_SANDBOX__RUNTIME", "runsc"),
            ("VRE_SANDBOX__CLASSES__STANDARD__PIDS", "32"),
        ]);
        let (_, w) = Settings::load(None, few).unwrap();
        assert!(
            w.len() == 1 && w[0].contains("classes.standard.pids is 32"),
            "{w:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
