//! A sign-in through the provider under way, kept by the browser that started it: its
//! `state`, `nonce`, PKCE verifier and expiry in one cookie value, authenticated by the
//! gateway (HMAC-SHA256) so that a browser can neither make one nor change one.
//!
//! The value is `v1.<state>.<nonce>.<verifier>.<expires>.<mac>`: the three random values are
//! base64url (no `.`), `expires` Unix seconds in decimal, and `mac` the base64url HMAC-SHA256,
//! under a key derived from the gateway's token key ([`crate::keys::Ed25519Key::derive`]), of
//! the provider's issuer and everything before it. So a value is good across a restart and on
//! every gateway sharing the data dir's keys, for one provider only, and is checked in
//! constant time. It is not encrypted: the browser may read what it holds (the cookie is
//! HttpOnly, so no page script can), and the verifier gives nothing to the one who has it that
//! the cookie itself would not: whoever holds the cookie holds the sign-in either way.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a sign-in through the identity provider may take, from its start to the
/// provider's return (seconds).
pub const SIGN_IN_WITHIN: u64 = 600;

const VERSION: &str = "v1";

/// What a sign-in under way needs at its return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The `state` sent to the provider, which its return carries back.
    pub state: String,
    /// The value the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Unix seconds: the return must come before.
    pub expires_at: u64,
}

impl Pending {
    /// Fresh random values for a sign-in starting at `now` (Unix seconds).
    pub fn fresh(now: u64) -> Pending {
        Pending {
            state: super::random_token(),
            nonce: super::random_token(),
            verifier: super::random_token(),
            expires_at: now + SIGN_IN_WITHIN,
        }
    }
}

/// Why a cookie's value is not a sign-in of this gateway's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// Not made by this gateway for this provider, or changed since.
    Forged,
    /// Made here, but its time is up.
    Expired,
}

/// The key that authenticates pending sign-ins, bound to one provider's issuer.
#[derive(Clone)]
pub struct SealKey {
    key: [u8; 32],
    issuer: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A random value's shape: base64url, not empty, not too long.
fn token_shaped(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SealKey {
    pub fn new(key: [u8; 32], issuer: &str) -> SealKey {
        SealKey {
            key,
            issuer: issuer.to_owned(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(b"vre oidc sign-in\n");
        mac.update(self.issuer.as_bytes());
        mac.update(b"\n");
        mac
    }

    /// The cookie value that carries `p`.
    pub fn seal(&self, p: &Pending) -> String {
        let body = format!(
            "{VERSION}.{}.{}.{}.{}",
            p.state, p.nonce, p.verifier, p.expires_at
        );
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        format!("{body}.{}", b64(&mac.finalize().into_bytes()))
    }

    /// The sign-in a cookie value carries, if this gateway made it for this provider and it
    /// has not expired by `now` (Unix seconds).
    pub fn open(&self, value: &str, now: u64) -> Result<Pending, Unsealed> {
        let (body, tag) = value.rsplit_once('.').ok_or(Unsealed::Forged)?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| Unsealed::Forged)?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        // Constant time.
        mac.verify_slice(&tag).map_err(|_| Unsealed::Forged)?;
        let parts: Vec<&str> = body.split('.').collect();
        let [VERSION, state, nonce, verifier, expires] = parts[..] else {
            return Err(Unsealed::Forged);
        };
        if ![state, nonce, verifier].into_iter().all(token_shaped) {
            return Err(Unsealed::Forged);
        }
        let expires_at: u64 = expires.parse().map_err(|_| Unsealed::Forged)?;
        if expires_at <= now {
            return Err(Unsealed::Expired);
        }
        Ok(Pending {
            state: state.to_owned(),
            nonce: nonce.to_owned(),
            verifier: verifier.to_owned(),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key() -> SealKey {
        SealKey::new([7; 32], "https://idp.example")
    }

    #[test]
    fn a_sealed_sign_in_opens_as_it_was_until_it_expires() {
        let p = Pending::fresh(NOW);
        assert_eq!(p.expires_at, NOW + SIGN_IN_WITHIN);
        let v = key().seal(&p);
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "a cookie value as it stands: {v}"
        );
        assert_eq!(key().open(&v, NOW).unwrap(), p);
        assert_eq!(key().open(&v, NOW + SIGN_IN_WITHIN - 1).unwrap(), p);
        assert_eq!(key().open(&v, NOW + SIGN_IN_WITHIN), Err(Unsealed::Expired));
    }

    #[test]
    fn any_change_another_key_or_another_provider_is_forged() {
        let p = Pending::fresh(NOW);
        let v = key().seal(&p);
        // Every byte changed in turn.
        for i in 0..v.len() {
            let mut b = v.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(b).unwrap();
            assert_eq!(key().open(&changed, NOW), Err(Unsealed::Forged), "byte {i}");
        }
        // A later expiry, sealed by someone without the key.
        let later = v.replace(
            &format!(".{}.", p.expires_at),
            &format!(".{}.", p.expires_at + 3600),
        );
        assert_eq!(key().open(&later, NOW), Err(Unsealed::Forged));
        assert_eq!(
            SealKey::new([8; 32], "https://idp.example").open(&v, NOW),
            Err(Unsealed::Forged)
        );
        assert_eq!(
            SealKey::new([7; 32], "https://other.example").open(&v, NOW),
            Err(Unsealed::Forged)
        );
        for junk in ["", ".", "v1", "v1.a.b.c.1", "a.b.c.d.e.f.g", "%%%.%%%"] {
            assert_eq!(key().open(junk, NOW), Err(Unsealed::Forged), "{junk}");
        }
        // Values that are not random-shaped are refused even under a good MAC.
        let odd = Pending {
            state: "a b".into(),
            ..p
        };
        assert_eq!(key().open(&key().seal(&odd), NOW), Err(Unsealed::Forged));
    }
}
