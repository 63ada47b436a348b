//! Key material kept in the data dir: Ed25519 signing keys and the TLS certificate.
//!
//! Everything here is created on first use and reused after: a key is written to a temporary
//! file with mode 0600, fsynced and renamed, so a crash never leaves half a key behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// An Ed25519 key pair with a stable key id (the first 16 hex digits of the SHA-256 of the
/// public key).
#[derive(Clone)]
pub struct Ed25519Key {
    signing: SigningKey,
    kid: String,
}

impl Ed25519Key {
    fn from_signing(signing: SigningKey) -> Self {
        let kid = key_id(&signing.verifying_key());
        Ed25519Key { signing, kid }
    }

    pub fn generate() -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(Self::from_signing(SigningKey::from_bytes(&seed)))
    }

    /// Loads the key at `path`, creating it when absent; the public half is written beside it
    /// as `<name>.pub.pem` for verifiers that must not hold the private key.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if path.exists() {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading the key {}", path.display()))?;
            let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "the key {} is not an Ed25519 PKCS#8 key: {e}",
                    path.display()
                )
            })?;
            return Ok(Self::from_signing(signing));
        }
        let key = Self::generate()?;
        let pem = key
            .signing
            .to_pkcs8_pem(Default::default())
            .map_err(|e| anyhow::anyhow!("encoding a new key: {e}"))?;
        write_private(path, pem.as_bytes())?;
        write_atomic(&public_path(path), key.public_pem()?.as_bytes(), 0o644)?;
        Ok(key)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn pkcs8_der(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self
            .signing
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("encoding a key: {e}"))?
            .as_bytes()
            .to_vec())
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn public_pem(&self) -> anyhow::Result<String> {
        self.signing
            .verifying_key()
            .to_public_key_pem(Default::default())
            .map_err(|e| anyhow::anyhow!("encoding a public key: {e}"))
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    pub fn verifier(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// A 32-byte secret for `purpose`, derived from this key's own (HMAC-SHA256 keyed with it,
    /// over the purpose's name): as lasting as the key, the same in every gateway sharing its
    /// data dir's keys, and another for every purpose. Nothing derived reveals the key.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<Sha256>::new_from_slice(self.signing.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(b"vre-gateway derived key\n");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The public half of an [`Ed25519Key`], for offline verification.
#[derive(Clone, Debug)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use ed25519_dalek::pkcs8::DecodePublicKey;
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading the public key {}", path.display()))?;
        let key = VerifyingKey::from_public_key_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not an Ed25519 public key: {e}", path.display()))?;
        Ok(PublicKey(key))
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.0.verify(message, &sig).is_ok()
    }

    pub fn kid(&self) -> String {
        key_id(&self.0)
    }
}

fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// `keys/token.pem` → `keys/token.pub.pem`.
pub fn public_path(private: &Path) -> PathBuf {
    let stem = private
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("key");
    private.with_file_name(format!("{stem}.pub.pem"))
}

/// The files of the data dir, in one place.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn token_key(&self) -> PathBuf {
        self.root.join("keys").join("token.pem")
    }
    pub fn audit_key(&self) -> PathBuf {
        self.root.join("keys").join("audit.pem")
    }
    pub fn audit_public_key(&self) -> PathBuf {
        public_path(&self.audit_key())
    }
    /// The key egress payloads' own keys are sealed under in the database.
    pub fn quarantine_key(&self) -> PathBuf {
        self.root.join("keys").join("quarantine.key")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Creates the directory tree with owner-only permissions.
    pub fn create(&self) -> anyhow::Result<()> {
        for dir in [
            self.root.clone(),
            self.root.join("keys"),
            self.tls_dir(),
            self.blobs(),
            self.tmp(),
        ] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            set_mode(&dir, 0o700)?;
        }
        Ok(())
    }
}

/// The server's certificate and key, PEM.
pub struct TlsMaterial {
    pub cert_chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The CA a client should trust, when the gateway made its own.
    pub ca_file: Option<PathBuf>,
}

/// Loads the configured certificate, or makes (once) a local CA and a server certificate it
/// signs for `hostnames`. Clients trust `tls/ca.pem`.
pub fn tls_material(
    data: &DataDir,
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    hostnames: &[String],
) -> anyhow::Result<TlsMaterial> {
    if let (Some(cert), Some(key)) = (cert_file, key_file) {
        return Ok(TlsMaterial {
            cert_chain_pem: std::fs::read(cert)
                .with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
            ca_file: None,
        });
    }
    let dir = data.tls_dir();
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    if cert_path.exists() && key_path.exists() && data.ca_cert().exists() {
        return Ok(TlsMaterial {
            cert_chain_pem: std::fs::read(&cert_path)?,
            key_pem: std::fs::read(&key_path)?,
            ca_file: Some(data.ca_cert()),
        });
    }
    if hostnames.is_empty() {
        bail!("tls.hostnames is empty: the generated certificate would be valid for no name");
    }
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "VRE Gateway local CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hostnames.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "VRE Gateway");
    let server_cert = params.signed_by(&server_key, &issuer)?;
    let chain = format!("{}{}", server_cert.pem(), ca_cert.pem());

    write_private(&key_path, server_key.serialize_pem().as_bytes())?;
    write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    write_atomic(&cert_path, chain.as_bytes(), 0o644)?;
    // The CA goes last: its presence marks the set complete.
    write_atomic(&data.ca_cert(), ca_cert.pem().as_bytes(), 0o644)?;
    Ok(TlsMaterial {
        cert_chain_pem: chain.into_bytes(),
        key_pem: server_key.serialize_pem().into_bytes(),
        ca_file: Some(data.ca_cert()),
    })
}

/// Loads the 32-byte secret key at `path` (raw bytes, owner-only), creating it when absent.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<[u8; 32]> {
    if path.exists() {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading the key {}", path.display()))?;
        return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            anyhow::anyhow!(
                "the key {} holds {} bytes, not the 32 of a key",
                path.display(),
                bytes.len()
            )
        });
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    write_private(path, &key)?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Writes through a temporary file in the same directory, fsyncs it and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("a key path has a parent")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting permissions on {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_and_sign() {
        let dir = tempfile_dir("keys");
        let path = dir.join("k.pem");
        let a = Ed25519Key::load_or_create(&path).unwrap();
        let b = Ed25519Key::load_or_create(&path).unwrap();
        assert_eq!(a.kid(), b.kid());
        let sig = a.sign(b"hello");
        let public = PublicKey::load(&public_path(&path)).unwrap();
        assert!(public.verify(b"hello", &sig));
        assert!(!public.verify(b"hellO", &sig));
        assert_eq!(public.kid(), a.kid());
        // Derived secrets: the same from the key read again, another per purpose and per key.
        assert_eq!(a.derive("x"), b.derive("x"));
        assert_ne!(a.derive("x"), a.derive("y"));
        assert_ne!(a.derive("x"), Ed25519Key::generate().unwrap().derive("x"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).unwrap();
        let d = std::env::temp_dir().join(format!("vre-{tag}-{}", hex::encode(r)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
