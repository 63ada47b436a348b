//! The analysts' age keys: X25519 only.

use age::secrecy::ExposeSecret;

/// A new X25519 identity: the identity file's text, as `age-keygen` writes it (`# created:`
/// and `# public key:` comments, then the `AGE-SECRET-KEY-1…` line), and its recipient
/// (`age1…`).
pub fn new_identity() -> (String, String) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let created = created
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let text = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    (text, recipient)
}

/// An analyst's recipient, normalised (lowercase Bech32, no surrounding space): X25519
/// recipients (`age1…`) only. SSH keys, plugin recipients (`age1name1…`), secret keys and
/// anything else are refused with a reason a person can act on.
pub fn parse_recipient(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("no recipient given: an age public key (age1…) is needed".into());
    }
    if s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-") {
        return Err(
            "an SSH public key: releases are encrypted to age X25519 recipients only \
             (age1…, from `age-keygen`)"
                .into(),
        );
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("age-secret-key-") {
        return Err(
            "this is an age SECRET key, which must never leave its owner: give its public \
             key (the age1… on the `# public key:` line, or `age-keygen -y key.txt`)"
                .into(),
        );
    }
    if !lower.starts_with("age1") {
        return Err("not an age recipient: an X25519 public key starts with age1".into());
    }
    match s.parse::<age::x25519::Recipient>() {
        Ok(r) => Ok(r.to_string()),
        Err(why) => {
            // Bech32's human-readable part is everything before the last `1`: `age` for
            // X25519, `age<plugin>` for a plugin's recipients.
            let hrp = lower.rsplit_once('1').map(|(h, _)| h).unwrap_or("");
            if hrp.len() > 3 && hrp.starts_with("age") {
                Err(format!(
                    "a recipient of the age plugin {:?}: releases are encrypted to X25519 \
                     recipients only (age1…, from `age-keygen`)",
                    &hrp[3..]
                ))
            } else {
                Err(format!("not a valid age X25519 recipient ({why})"))
            }
        }
    }
}
