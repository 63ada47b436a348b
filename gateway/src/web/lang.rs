//! The pages' language: Japanese or English, from `?lang=` (remembered in a cookie), the
//! cookie, or the browser's `Accept-Language`, in that order; Japanese when none says.

/// The cookie that remembers a language chosen with the switch.
pub(super) const COOKIE: &str = "vre_lang";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    /// The language's name in itself, as the switch shows it.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Ja => "日本語",
            Lang::En => "English",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    pub fn from_code(s: &str) -> Option<Lang> {
        match s {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

/// The language of a request without `?lang=`: the cookie's, else the first of ours the
/// browser prefers (by its `q` weights), else Japanese.
pub(super) fn from_headers(cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
    if let Some(l) = cookie.and_then(Lang::from_code) {
        return l;
    }
    let mut best: Option<(f32, Lang)> = None;
    for part in accept_language.unwrap_or("").split(',') {
        let mut bits = part.split(';');
        let tag = bits.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = bits
            .filter_map(|b| b.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or("");
        if let Some(l) = Lang::from_code(primary) {
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, l));
            }
        }
    }
    best.map_or(Lang::Ja, |(_, l)| l)
}

/// The `Set-Cookie` that remembers `lang` for a year.
pub(super) fn cookie_header(lang: Lang) -> String {
    format!(
        "{COOKIE}={}; Path=/ui; Max-Age=31536000; HttpOnly; Secure; SameSite=Strict",
        lang.code()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_s_preference_chooses_unless_the_cookie_does() {
        assert_eq!(from_headers(None, None), Lang::Ja);
        assert_eq!(from_headers(None, Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(from_headers(None, Some("ja-JP")), Lang::Ja);
        assert_eq!(from_headers(None, Some("fr, en;q=0.5, ja;q=0.8")), Lang::Ja);
        assert_eq!(from_headers(None, Some("fr, de;q=0.5")), Lang::Ja);
        assert_eq!(from_headers(None, Some("en;q=0, ja;q=0.1")), Lang::Ja);
        assert_eq!(from_headers(Some("en"), Some("ja")), Lang::En);
        assert_eq!(from_headers(Some("xx"), Some("en")), Lang::En);
    }
}
