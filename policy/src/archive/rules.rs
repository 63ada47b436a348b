//! The rules every entry of an incoming archive must obey, with limits from configuration.
//!
//! [`Validator::check_entry`] sees each header once, in order, and either accepts it (returning
//! its canonical relative path) or names the first rule it breaks. Sizes and the compression
//! ratio are checked as bytes arrive, so a bomb stops early.

use std::collections::{HashMap, HashSet};
use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::tar::{EntryKind, Header, TarError};

/// Limits on one archive. The defaults suit program archives with some reference data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the upload as sent (compressed or not).
    pub max_upload_bytes: u64,
    pub max_entries: u64,
    pub max_entry_bytes: u64,
    /// Sum of all entries' sizes.
    pub max_unpacked_bytes: u64,
    /// Unpacked bytes per uploaded byte, checked once `ratio_grace_bytes` are unpacked.
    pub max_compression_ratio: u64,
    pub ratio_grace_bytes: u64,
    pub max_path_depth: usize,
    pub max_path_bytes: usize,
    pub max_component_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload_bytes: 8 << 30,
            max_entries: 100_000,
            max_entry_bytes: 4 << 30,
            max_unpacked_bytes: 16 << 30,
            max_compression_ratio: 100,
            ratio_grace_bytes: 16 << 20,
            max_path_depth: 32,
            max_path_bytes: 1024,
            max_component_bytes: 255,
        }
    }
}

impl Limits {
    /// Checks the expansion so far: `uploaded` bytes received gave `unpacked` bytes of tar.
    pub fn check_ratio(&self, uploaded: u64, unpacked: u64) -> Result<(), Violation> {
        if unpacked > self.ratio_grace_bytes
            && unpacked > uploaded.max(1).saturating_mul(self.max_compression_ratio)
        {
            return Err(Violation {
                rule: Rule::CompressionRatio,
                entry: None,
                message: format!(
                    "{uploaded} bytes expanded to more than {unpacked}: over the {}:1 compression ratio allowed",
                    self.max_compression_ratio
                ),
            });
        }
        Ok(())
    }

    pub fn check_upload_size(&self, uploaded: u64) -> Result<(), Violation> {
        if uploaded > self.max_upload_bytes {
            return Err(Violation {
                rule: Rule::UploadTooLarge,
                entry: None,
                message: format!("the upload is larger than {} bytes", self.max_upload_bytes),
            });
        }
        Ok(())
    }
}

/// The rule an archive broke. Its [`code`](Rule::code) is the stable error code clients see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    PathAbsolute,
    PathTraversal,
    PathNul,
    PathNotUtf8,
    PathControlChar,
    PathBackslash,
    PathEmpty,
    PathNotCanonical,
    PathTooDeep,
    PathTooLong,
    DuplicateEntry,
    NameCollision,
    PathConflict,
    EntryType,
    SpecialBits,
    EntryTooLarge,
    TooManyEntries,
    UnpackedTooLarge,
    UploadTooLarge,
    CompressionRatio,
    Truncated,
    Corrupt,
    NoFiles,
}

impl Rule {
    pub fn code(self) -> &'static str {
        match self {
            Rule::PathAbsolute => "archive_path_absolute",
            Rule::PathTraversal => "archive_path_traversal",
            Rule::PathNul => "archive_path_nul",
            Rule::PathNotUtf8 => "archive_path_not_utf8",
            Rule::PathControlChar => "archive_path_control_char",
            Rule::PathBackslash => "archive_path_backslash",
            Rule::PathEmpty => "archive_path_empty",
            Rule::PathNotCanonical => "archive_path_not_canonical",
            Rule::PathTooDeep => "archive_path_too_deep",
            Rule::PathTooLong => "archive_path_too_long",
            Rule::DuplicateEntry => "archive_duplicate_entry",
            Rule::NameCollision => "archive_name_collision",
            Rule::PathConflict => "archive_path_conflict",
            Rule::EntryType => "archive_entry_type",
            Rule::SpecialBits => "archive_special_bits",
            Rule::EntryTooLarge => "archive_entry_too_large",
            Rule::TooManyEntries => "archive_too_many_entries",
            Rule::UnpackedTooLarge => "archive_unpacked_too_large",
            Rule::UploadTooLarge => "archive_upload_too_large",
            Rule::CompressionRatio => "archive_compression_ratio",
            Rule::Truncated => "archive_truncated",
            Rule::Corrupt => "archive_corrupt",
            Rule::NoFiles => "archive_no_files",
        }
    }

    /// Whether the fault is the size of the upload (a 413) rather than its content (a 422).
    pub fn is_size_limit(self) -> bool {
        matches!(
            self,
            Rule::EntryTooLarge
                | Rule::TooManyEntries
                | Rule::UnpackedTooLarge
                | Rule::UploadTooLarge
        )
    }
}

/// A broken rule: which, on which entry, and why, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    /// The entry's path as received (escaped for display), when one entry is at fault.
    pub entry: Option<String>,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(e) => write!(f, "entry `{e}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Violation {}

impl From<TarError> for Violation {
    fn from(e: TarError) -> Self {
        let rule = match e {
            TarError::Truncated { .. } => Rule::Truncated,
            TarError::Corrupt { .. } => Rule::Corrupt,
        };
        Violation {
            rule,
            entry: None,
            message: e.to_string(),
        }
    }
}

/// An accepted entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Canonical: relative, `/`-separated, no `.` or `..`, no trailing slash.
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
}

/// Checks entries one by one. One validator per archive.
pub struct Validator {
    limits: Limits,
    entries: u64,
    unpacked: u64,
    /// Exact canonical paths seen, with whether each is a directory.
    seen: HashMap<String, bool>,
    /// Folded (NFKC, lowercase) paths and directories seen, mapped to the path that claimed them.
    folded: HashMap<String, String>,
    /// Paths that are files: nothing may live below them.
    files: HashSet<String>,
    /// Directories, explicit or implied by the paths below them: no file may take their name.
    dirs: HashSet<String>,
    has_files: bool,
}

fn violation(rule: Rule, h: &Header, message: impl Into<String>) -> Violation {
    Violation {
        rule,
        entry: Some(h.display_path()),
        message: message.into(),
    }
}

impl Validator {
    pub fn new(limits: Limits) -> Self {
        Validator {
            limits,
            entries: 0,
            unpacked: 0,
            seen: HashMap::new(),
            folded: HashMap::new(),
            files: HashSet::new(),
            dirs: HashSet::new(),
            has_files: false,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks one header. `Ok(None)` is the archive's root directory (`./`), which is skipped.
    pub fn check_entry(&mut self, h: &Header) -> Result<Option<Accepted>, Violation> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(violation(
                Rule::TooManyEntries,
                h,
                format!(
                    "the archive has more than {} entries",
                    self.limits.max_entries
                ),
            ));
        }
        match h.kind {
            EntryKind::File | EntryKind::Dir => {}
            other => {
                return Err(violation(
                    Rule::EntryType,
                    h,
                    format!(
                        "{} entries are not accepted; only regular files and directories",
                        other.as_str()
                    ),
                ));
            }
        }
        if h.mode & 0o7000 != 0 {
            return Err(violation(
                Rule::SpecialBits,
                h,
                format!("mode {:04o} has setuid, setgid or sticky bits", h.mode),
            ));
        }
        let Some(path) = self.canonical(h)? else {
            if h.kind == EntryKind::Dir {
                return Ok(None);
            }
            return Err(violation(Rule::PathEmpty, h, "a file needs a name"));
        };
        if h.size > self.limits.max_entry_bytes {
            return Err(violation(
                Rule::EntryTooLarge,
                h,
                format!(
                    "{} bytes is more than the {} allowed per entry",
                    h.size, self.limits.max_entry_bytes
                ),
            ));
        }
        self.unpacked = self.unpacked.saturating_add(h.size);
        if self.unpacked > self.limits.max_unpacked_bytes {
            return Err(violation(
                Rule::UnpackedTooLarge,
                h,
                format!(
                    "the archive unpacks to more than {} bytes",
                    self.limits.max_unpacked_bytes
                ),
            ));
        }
        let is_dir = h.kind == EntryKind::Dir;
        // An explicit directory after entries inside it is normal; a second header for the
        // same path is not.
        if self.seen.contains_key(&path) {
            return Err(violation(
                Rule::DuplicateEntry,
                h,
                "this path appears twice in the archive",
            ));
        }
        if !is_dir && self.dirs.contains(&path) {
            return Err(violation(
                Rule::PathConflict,
                h,
                "a directory of this name already has entries",
            ));
        }
        // Nothing may live below a file, and no two names may fold to one: check the path and
        // every directory above it.
        let mut ancestors: Vec<&str> = Vec::new();
        let mut cur = path.as_str();
        while let Some((parent, _)) = cur.rsplit_once('/') {
            if self.files.contains(parent) {
                return Err(violation(
                    Rule::PathConflict,
                    h,
                    format!("`{parent}` is a file, not a directory"),
                ));
            }
            ancestors.push(parent);
            cur = parent;
        }
        for p in std::iter::once(path.as_str()).chain(ancestors.iter().copied()) {
            let folded: String = p.nfkc().collect::<String>().to_lowercase();
            if let Some(other) = self.folded.get(&folded) {
                if other != p {
                    return Err(violation(
                        Rule::NameCollision,
                        h,
                        format!("`{p}` collides with `{other}` once Unicode and case are folded"),
                    ));
                }
            }
        }
        for p in std::iter::once(path.as_str()).chain(ancestors.iter().copied()) {
            let folded: String = p.nfkc().collect::<String>().to_lowercase();
            self.folded.entry(folded).or_insert_with(|| p.to_owned());
        }
        for a in &ancestors {
            self.dirs.insert((*a).to_owned());
        }
        if is_dir {
            self.dirs.insert(path.clone());
        } else {
            self.files.insert(path.clone());
            self.has_files = true;
        }
        self.seen.insert(path.clone(), is_dir);
        Ok(Some(Accepted {
            path,
            kind: h.kind,
            size: h.size,
            mode: h.mode,
        }))
    }

    /// At the end: an archive with no file at all is refused.
    pub fn finish(&self) -> Result<(), Violation> {
        if !self.has_files {
            return Err(Violation {
                rule: Rule::NoFiles,
                entry: None,
                message: "the archive holds no files".into(),
            });
        }
        Ok(())
    }

    /// The canonical path, or `None` for the archive root.
    fn canonical(&self, h: &Header) -> Result<Option<String>, Violation> {
        let raw = &h.path;
        if raw.contains(&0) {
            return Err(violation(Rule::PathNul, h, "the path holds a NUL byte"));
        }
        let s = std::str::from_utf8(raw)
            .map_err(|_| violation(Rule::PathNotUtf8, h, "the path is not valid UTF-8"))?;
        if s.chars().any(|c| c.is_control()) {
            return Err(violation(
                Rule::PathControlChar,
                h,
                "the path holds control characters",
            ));
        }
        if s.contains('\\') {
            return Err(violation(
                Rule::PathBackslash,
                h,
                "the path holds a backslash",
            ));
        }
        if s.starts_with('/') {
            return Err(violation(
                Rule::PathAbsolute,
                h,
                "absolute paths are not accepted",
            ));
        }
        let mut rest = s;
        while let Some(r) = rest.strip_prefix("./") {
            rest = r;
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest == "." {
            return Ok(None);
        }
        let mut depth = 0;
        for part in rest.split('/') {
            depth += 1;
            match part {
                ".." => {
                    return Err(violation(
                        Rule::PathTraversal,
                        h,
                        "`..` is not accepted in paths",
                    ));
                }
                "" | "." => {
                    return Err(violation(
                        Rule::PathNotCanonical,
                        h,
                        "empty or `.` path components",
                    ));
                }
                p if p.len() > self.limits.max_component_bytes => {
                    return Err(violation(
                        Rule::PathTooLong,
                        h,
                        format!(
                            "a path component is longer than {} bytes",
                            self.limits.max_component_bytes
                        ),
                    ));
                }
                _ => {}
            }
        }
        if depth > self.limits.max_path_depth {
            return Err(violation(
                Rule::PathTooDeep,
                h,
                format!("more than {} directories deep", self.limits.max_path_depth),
            ));
        }
        if rest.len() > self.limits.max_path_bytes {
            return Err(violation(
                Rule::PathTooLong,
                h,
                format!(
                    "the path is longer than {} bytes",
                    self.limits.max_path_bytes
                ),
            ));
        }
        Ok(Some(rest.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(path: &str, kind: EntryKind, size: u64, mode: u32) -> Header {
        Header {
            path: path.as_bytes().to_vec(),
            kind,
            size,
            mode,
            link: Vec::new(),
            offset: 0,
        }
    }
    fn file(path: &str) -> Header {
        h(path, EntryKind::File, 1, 0o644)
    }
    fn dir(path: &str) -> Header {
        h(path, EntryKind::Dir, 0, 0o755)
    }

    /// Feeds headers in order; returns the first broken rule.
    fn first_violation(headers: &[Header], limits: Limits) -> Option<Rule> {
        let mut v = Validator::new(limits);
        for x in headers {
            if let Err(e) = v.check_entry(x) {
                return Some(e.rule);
            }
        }
        v.finish().err().map(|e| e.rule)
    }

    #[test]
    fn accepted_paths_are_canonical() {
        let mut v = Validator::new(Limits::default());
        assert_eq!(v.check_entry(&dir("./")).unwrap(), None);
        assert_eq!(v.check_entry(&dir("./src/")).unwrap().unwrap().path, "src");
        assert_eq!(
            v.check_entry(&file("./src/a.py")).unwrap().unwrap().path,
            "src/a.py"
        );
        assert_eq!(
            v.check_entry(&file("日本語/データ.txt"))
                .unwrap()
                .unwrap()
                .path,
            "日本語/データ.txt"
        );
        v.finish().unwrap();
    }

    #[test]
    fn each_rule() {
        let tiny = Limits {
            max_entries: 3,
            max_entry_bytes: 10,
            max_unpacked_bytes: 15,
            max_path_depth: 3,
            max_path_bytes: 20,
            ..Limits::default()
        };
        #[rustfmt::skip]
        let cases: Vec<(Vec<Header>, Rule)> = vec![
            (vec![file("/etc/passwd")], Rule::PathAbsolute),
            (vec![file("a/../../x")], Rule::PathTraversal),
            (vec![file("..")], Rule::PathTraversal),
            (vec![Header { path: b"a\0b".to_vec(), ..file("x") }], Rule::PathNul),
            (vec![Header { path: b"bad\xff".to_vec(), ..file("x") }], Rule::PathNotUtf8),
            (vec![file("new\nline")], Rule::PathControlChar),
            (vec![file("a\\..\\b")], Rule::PathBackslash),
            (vec![file("a//b")], Rule::PathNotCanonical),
            (vec![file("a/./b")], Rule::PathNotCanonical),
            (vec![file("")], Rule::PathEmpty),
            (vec![file("a/b/c/d")], Rule::PathTooDeep),
            (vec![file(&"x".repeat(21))], Rule::PathTooLong),
            (vec![file("a"), file("a")], Rule::DuplicateEntry),
            (vec![dir("d"), dir("d/")], Rule::DuplicateEntry),
            (vec![file("README"), file("readme")], Rule::NameCollision),
            (vec![file("Ａ.txt"), file("a.txt")], Rule::NameCollision),
            (vec![file("Dir/x"), file("dir/y")], Rule::NameCollision),
            (vec![file("caf\u{e9}"), file("cafe\u{301}")], Rule::NameCollision),
            (vec![file("a"), file("a/b")], Rule::PathConflict),
            (vec![file("a/b"), file("a")], Rule::PathConflict),
            (vec![h("l", EntryKind::Symlink, 0, 0o777)], Rule::EntryType),
            (vec![h("l", EntryKind::Hardlink, 0, 0o644)], Rule::EntryType),
            (vec![h("c", EntryKind::CharDevice, 0, 0o644)], Rule::EntryType),
            (vec![h("b", EntryKind::BlockDevice, 0, 0o644)], Rule::EntryType),
            (vec![h("f", EntryKind::Fifo, 0, 0o644)], Rule::EntryType),
            (vec![h("s", EntryKind::Other(b'S'), 0, 0o644)], Rule::EntryType),
            (vec![h("x", EntryKind::File, 1, 0o4755)], Rule::SpecialBits),
            (vec![h("x", EntryKind::File, 1, 0o2755)], Rule::SpecialBits),
            (vec![h("d", EntryKind::Dir, 0, 0o1777)], Rule::SpecialBits),
            (vec![h("x", EntryKind::File, 11, 0o644)], Rule::EntryTooLarge),
            (vec![h("x", EntryKind::File, 10, 0o644), h("y", EntryKind::File, 10, 0o644)], Rule::UnpackedTooLarge),
            (vec![file("a"), file("b"), file("c"), file("d")], Rule::TooManyEntries),
            (vec![dir("only-a-dir")], Rule::NoFiles),
        ];
        for (headers, want) in cases {
            let paths: Vec<String> = headers.iter().map(Header::display_path).collect();
            assert_eq!(
                first_violation(&headers, tiny.clone()),
                Some(want),
                "{paths:?}"
            );
        }
        // An explicit directory after files inside it is fine.
        assert_eq!(
            first_violation(&[file("d/x"), dir("d")], tiny.clone()),
            None
        );
    }

    #[test]
    fn ratio_and_upload_size() {
        let v = Limits {
            max_compression_ratio: 10,
            ratio_grace_bytes: 1000,
            max_upload_bytes: 5000,
            ..Limits::default()
        };
        v.check_ratio(10, 999).unwrap(); // within the grace
        v.check_ratio(200, 2000).unwrap();
        assert_eq!(
            v.check_ratio(100, 2000).unwrap_err().rule,
            Rule::CompressionRatio
        );
        v.check_upload_size(5000).unwrap();
        assert_eq!(
            v.check_upload_size(5001).unwrap_err().rule,
            Rule::UploadTooLarge
        );
    }
}
