//! `[auth.oidc]`: signing in to the web pages through an OpenID Connect provider (the
//! authorization code flow with PKCE). Off while `issuer` is empty.

use std::path::PathBuf;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSettings {
    /// The provider's issuer URL (`https://`); its configuration is read from
    /// `<issuer>/.well-known/openid-configuration`. Empty: no provider.
    pub issuer: String,
    /// The gateway's client id at the provider; the `aud` of the ID tokens it accepts.
    pub client_id: String,
    /// The client's secret (for the token endpoint), or `client_secret_file`.
    pub client_secret: Secret,
    /// A file holding the client's secret (its first line).
    pub client_secret_file: Option<PathBuf>,
    /// The gateway's public base URL (`https://gateway.example`): the redirect URI registered
    /// at the provider is `<public_url>/ui/sign-in/callback`.
    pub public_url: String,
    /// The scopes asked for; `openid` among them.
    pub scopes: Vec<String>,
    /// The provider's name on the sign-in page ("Sign in with <name>"); the issuer's host when
    /// empty.
    pub display_name: String,
    /// PEM certificates of the CA that signed the provider's certificate, trusted beside the
    /// public roots (a provider with a private CA).
    pub ca_file: Option<PathBuf>,
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            client_secret_file: None,
            public_url: String::new(),
            scopes: vec!["openid".into(), "profile".into()],
            display_name: String::new(),
            ca_file: None,
        }
    }
}

/// Whether `url` is `https://` with a host.
pub(super) fn is_https(url: &str) -> bool {
    let https = url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    let host = url.get(8..).unwrap_or("");
    https && !host.is_empty() && !host.starts_with('/')
}

impl OidcSettings {
    /// Whether a provider is configured.
    pub fn enabled(&self) -> bool {
        !self.issuer.is_empty()
    }

    /// The redirect URI the provider sends browsers back to.
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}/ui/sign-in/callback",
            self.public_url.trim_end_matches('/')
        )
    }

    /// The name the sign-in page shows.
    pub fn name(&self) -> String {
        if !self.display_name.trim().is_empty() {
            return self.display_name.trim().to_owned();
        }
        let rest = self.issuer.split_once("://").map_or("", |(_, r)| r);
        rest.split(['/', ':']).next().unwrap_or(rest).to_owned()
    }

    pub(super) fn check(&self) -> anyhow::Result<()> {
        if !self.enabled() {
            if !self.client_id.is_empty() || !self.public_url.is_empty() {
                bail!("auth.oidc.issuer must be set for the provider's other settings to apply");
            }
            return Ok(());
        }
        if !is_https(&self.issuer) {
            bail!(
                "auth.oidc.issuer must be an https:// URL with a host: the provider's configuration and keys decide who signs in, and fetched otherwise could be swapped on the way"
            );
        }
        if self.issuer.contains(['?', '#']) {
            bail!("auth.oidc.issuer must not have a query or a fragment");
        }
        if self.client_id.trim().is_empty() {
            bail!("auth.oidc.client_id must be set with auth.oidc.issuer");
        }
        let secret = !self.client_secret.expose().is_empty();
        if secret == self.client_secret_file.is_some() {
            bail!("auth.oidc needs exactly one of client_secret and client_secret_file");
        }
        if !is_https(&self.public_url) || self.public_url.contains(['?', '#']) {
            bail!(
                "auth.oidc.public_url must be the gateway's public https:// base URL (the redirect URI is <public_url>/ui/sign-in/callback)"
            );
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            bail!("auth.oidc.scopes must include `openid`");
        }
        if let Some(bad) = self
            .scopes
            .iter()
            .find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic() && c != '"'))
        {
            bail!("auth.oidc.scopes holds a scope that is not a scope token: {bad:?}");
        }
        Ok(())
    }

    /// The client's secret, from the setting or its file.
    pub fn secret(&self) -> anyhow::Result<Secret> {
        use anyhow::Context;
        match &self.client_secret_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("reading auth.oidc.client_secret_file {}", path.display())
                })?;
                let line = text.lines().next().unwrap_or("").trim().to_owned();
                if line.is_empty() {
                    bail!(
                        "auth.oidc.client_secret_file {} holds no secret",
                        path.display()
                    );
                }
                Ok(Secret::new(line))
            }
            None => Ok(self.client_secret.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::super::tests::env;

    const GOOD: &[(&str, &str)] = &[
        ("VRE_AUTH__OIDC__ISSUER", "https://idp.example/realms/vre"),
        ("VRE_AUTH__OIDC__CLIENT_ID", "vre-gateway"),
        ("VRE_AUTH__OIDC__CLIENT_SECRET", "s3cret-value"),
        ("VRE_AUTH__OIDC__PUBLIC_URL", "https://vre.example/"),
        ("VRE_AUTH__OIDC__SCOPES", "[\"openid\", \"roles\"]"),
        ("VRE_AUTH__OIDC__CA_FILE", "/etc/vre/idp-ca.pem"),
    ];

    #[test]
    fn a_provider_is_configured_from_the_environment() {
        let (s, w) = Settings::load(None, env(GOOD)).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let o = &s.auth.oidc;
        assert!(o.enabled());
        assert_eq!(o.redirect_uri(), "https://vre.example/ui/sign-in/callback");
        assert_eq!(o.scopes, ["openid", "roles"]);
        assert_eq!(o.name(), "idp.example");
        assert_eq!(
            o.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/vre/idp-ca.pem"))
        );
        assert!(!format!("{s:?}").contains("s3cret-value"));
        // None by default.
        let (s, _) = Settings::load(None, env(&[])).unwrap();
        assert!(!s.auth.oidc.enabled());
    }

    #[test]
    fn a_bad_provider_configuration_is_refused() {
        for (key, value, why) in [
            (
                "VRE_AUTH__OIDC__ISSUER",
                "http://idp.example",
                "must be an https:// URL",
            ),
            ("VRE_AUTH__OIDC__ISSUER", "https://", "must be an https://"),
            ("VRE_AUTH__OIDC__CLIENT_ID", "", "client_id must be set"),
            (
                "VRE_AUTH__OIDC__CLIENT_SECRET_FILE",
                "/etc/vre/secret",
                "exactly one of",
            ),
            (
                "VRE_AUTH__OIDC__PUBLIC_URL",
                "http://vre.example",
                "public_url",
            ),
            (
                "VRE_AUTH__OIDC__SCOPES",
                "[\"profile\"]",
                "include `openid`",
            ),
        ] {
            let mut vars = env(GOOD);
            vars.retain(|(k, _)| k != key);
            vars.push((key.into(), value.into()));
            let e = Settings::load(None, vars).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{key}={value}: {e:#}");
        }
        let e = Settings::load(None, env(&[("VRE_AUTH__OIDC__CLIENT_ID", "x")])).unwrap_err();
        assert!(format!("{e:#}").contains("auth.oidc.issuer must be set"));
    }

    #[test]
    fn the_secret_may_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("vre-oidc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        let mut vars = env(GOOD);
        vars.retain(|(k, _)| k != "VRE_AUTH__OIDC__CLIENT_SECRET");
        vars.push((
            "VRE_AUTH__OIDC__CLIENT_SECRET_FILE".into(),
            file.display().to_string(),
        ));
        let (s, _) = Settings::load(None, vars).unwrap();
        std::fs::write(&file, "from-the-file\n").unwrap();
        assert_eq!(s.auth.oidc.secret().unwrap().expose(), "from-the-file");
        std::fs::write(&file, "\n").unwrap();
        let e = s.auth.oidc.secret().unwrap_err();
        assert!(format!("{e:#}").contains("holds no secret"), "{e:#}");
        std::fs::remove_file(&file).unwrap();
        let e = s.auth.oidc.secret().unwrap_err();
        assert!(format!("{e:#}").contains("client_secret_file"), "{e:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
