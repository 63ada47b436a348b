//! Identifiers that arrive from outside, parsed once at the edge so the rest can trust them.

use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadId {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error(
        "{what} `{value}` may only hold lowercase ASCII letters, digits, `-`, `_` and `.`, and must start with a letter or digit"
    )]
    BadChars { what: &'static str, value: String },
}

fn check_slug(what: &'static str, s: &str, max: usize) -> Result<(), BadId> {
    if s.is_empty() {
        return Err(BadId::Empty { what });
    }
    if s.len() > max {
        return Err(BadId::TooLong { what, max });
    }
    let first_ok = s.as_bytes()[0].is_ascii_lowercase() || s.as_bytes()[0].is_ascii_digit();
    let rest_ok = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    if !first_ok || !rest_ok || s.contains("..") {
        return Err(BadId::BadChars {
            what,
            value: s.to_owned(),
        });
    }
    Ok(())
}

/// A project's identifier: a short lowercase slug, safe in paths, labels and URLs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(String);

impl ProjectId {
    pub const MAX_LEN: usize = 64;
    pub fn parse(s: &str) -> Result<Self, BadId> {
        check_slug("project id", s, Self::MAX_LEN)?;
        Ok(ProjectId(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The subject of a person's token (`sub`): printable, no whitespace, bounded.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    pub const MAX_LEN: usize = 256;
    pub fn parse(s: &str) -> Result<Self, BadId> {
        if s.is_empty() {
            return Err(BadId::Empty { what: "subject" });
        }
        if s.len() > Self::MAX_LEN {
            return Err(BadId::TooLong {
                what: "subject",
                max: Self::MAX_LEN,
            });
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(BadId::BadChars {
                what: "subject",
                value: s.escape_debug().to_string(),
            });
        }
        Ok(Subject(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids() {
        for ok in ["genome-2024", "p1", "amed.jp22", "a_b"] {
            ProjectId::parse(ok).unwrap();
        }
        for bad in [
            "",
            "Genome",
            "-x",
            "a/b",
            "a..b",
            "../x",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(ProjectId::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn subjects() {
        Subject::parse("alice@example.jp").unwrap();
        for bad in ["", "a b", "a\nb", "a\u{0}"] {
            assert!(Subject::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
