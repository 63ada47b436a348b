//! Automatic checks on an incoming archive's entries, attached to the application for reviewers:
//! each check passes, asks for a reviewer's attention, or fails, with reasons.
//!
//! They look at an entry's path, size and first bytes, and one ([`ControlScan`]) at every byte
//! of a text file as it streams past, chunk by chunk, so they all run while the archive streams
//! in. They inform the committee; the hard rules are in [`rules`](super::rules).

use std::fmt;

/// How a check came out. Ordered: the worst outcome of an application's checks is its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Pass,
    Review,
    Fail,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Review => "review",
            Outcome::Fail => "fail",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Thresholds for the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSettings {
    /// Files larger than this are pointed out to reviewers.
    pub large_file_bytes: u64,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            large_file_bytes: 100 << 20,
        }
    }
}

/// How many leading bytes of each file the checks look at.
pub const PREFIX_BYTES: usize = 512;

/// The checks, by name, in the order reviewers see them.
pub const CHECKS: [&str; 7] = [
    "native_executables",
    "large_files",
    "data_files",
    "nested_archives",
    "secrets",
    "terminal_controls",
    "contents",
];

const TERMINAL_CONTROLS: usize = 5;
const CONTENTS: usize = 6;

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub check: &'static str,
    pub outcome: Outcome,
    /// Why, one line per finding (at most [`MAX_REASONS`], then a count of the rest).
    pub reasons: Vec<String>,
}

pub const MAX_REASONS: usize = 20;

/// Collects findings while entries stream past.
pub struct Checker {
    settings: CheckSettings,
    findings: Vec<(usize, Outcome, String)>,
    counts: [usize; CHECKS.len()],
    files: u64,
    bytes: u64,
}

fn kind_of_prefix(prefix: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"\x7fELF", "an ELF executable or library"),
        (b"\xfe\xed\xfa\xce", "a Mach-O executable"),
        (b"\xfe\xed\xfa\xcf", "a Mach-O executable"),
        (b"\xce\xfa\xed\xfe", "a Mach-O executable"),
        (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
        (b"\0asm", "a WebAssembly module"),
    ];
    for (magic, what) in MAGICS {
        if prefix.starts_with(magic) {
            return Some(what);
        }
    }
    // "MZ" alone is too common in text; a PE file has its header offset at 0x3c.
    if prefix.starts_with(b"MZ") && prefix.len() >= 0x40 {
        let off =
            u32::from_le_bytes([prefix[0x3c], prefix[0x3d], prefix[0x3e], prefix[0x3f]]) as usize;
        if prefix.get(off..off + 4) == Some(b"PE\0\0") {
            return Some("a Windows executable");
        }
    }
    None
}

fn archive_of_prefix(prefix: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"PK\x03\x04", "zip"),
        (b"\x1f\x8b", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\xfd7zXZ\0", "xz"),
        (b"BZh", "bzip2"),
        (b"7z\xbc\xaf\x27\x1c", "7z"),
        (b"Rar!\x1a\x07", "rar"),
    ];
    for (magic, what) in MAGICS {
        if prefix.starts_with(magic) {
            return Some(what);
        }
    }
    if prefix.len() >= 263 && &prefix[257..262] == b"ustar" {
        return Some("tar");
    }
    None
}

/// Extensions of files that usually hold data rather than code.
const DATA_EXTENSIONS: &[&str] = &[
    "csv", "tsv", "vcf", "bcf", "bam", "cram", "sam", "fastq", "fq", "fasta", "fa", "bed", "bgen",
    "pgen", "parquet", "feather", "arrow", "h5", "hdf5", "rds", "rdata", "sav", "dta", "sas7bdat",
    "xlsx", "xls", "sqlite", "db", "npy", "npz", "pkl", "pickle",
];

fn data_extension(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    let mut stem = name.as_str();
    for compressed in [".gz", ".bgz", ".zst", ".bz2", ".xz"] {
        if let Some(s) = stem.strip_suffix(compressed) {
            stem = s;
        }
    }
    let ext = stem.rsplit_once('.')?.1;
    DATA_EXTENSIONS.iter().find(|e| **e == ext).copied()
}

fn looks_secret(path: &str, prefix: &[u8]) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if matches!(
        name,
        "id_rsa" | "id_ecdsa" | "id_ed25519" | ".netrc" | ".pgpass" | "credentials"
    ) {
        return Some("a credentials file");
    }
    let text = String::from_utf8_lossy(prefix);
    if text.contains("PRIVATE KEY-----") {
        return Some("a private key");
    }
    None
}

impl Checker {
    pub fn new(settings: CheckSettings) -> Self {
        Checker {
            settings,
            findings: Vec::new(),
            counts: [0; CHECKS.len()],
            files: 0,
            bytes: 0,
        }
    }

    fn find(&mut self, check: usize, outcome: Outcome, reason: String) {
        self.counts[check] += 1;
        if self.counts[check] <= MAX_REASONS {
            self.findings.push((check, outcome, reason));
        } else {
            // Keep the worst outcome even when the reason is not listed.
            self.findings.push((check, outcome, String::new()));
        }
    }

    /// Looks at one regular file: its canonical path, size, mode and first bytes (up to
    /// [`PREFIX_BYTES`]; fewer when the file is shorter).
    pub fn file(&mut self, path: &str, size: u64, mode: u32, prefix: &[u8]) {
        self.files += 1;
        self.bytes += size;
        if let Some(what) = kind_of_prefix(prefix) {
            self.find(
                0,
                Outcome::Review,
                format!("{path} is {what}: reviewers cannot read compiled code"),
            );
        }
        if size > self.settings.large_file_bytes {
            self.find(1, Outcome::Review, format!("{path} is {size} bytes"));
        }
        if let Some(ext) = data_extension(path) {
            self.find(
                2,
                Outcome::Review,
                format!("{path} looks like a data file (.{ext})"),
            );
        }
        if let Some(what) = archive_of_prefix(prefix) {
            self.find(
                3,
                Outcome::Review,
                format!("{path} is a {what} archive whose contents were not checked"),
            );
        }
        if let Some(what) = looks_secret(path, prefix) {
            self.find(
                4,
                Outcome::Fail,
                format!("{path} looks like {what}; credentials must not enter the environment"),
            );
        }
        let _ = mode;
    }

    /// Looks at what a [`ControlScan`] of one regular file found.
    pub fn terminal_controls(&mut self, path: &str, found: Option<ControlFinding>) {
        if let Some(f) = found {
            self.find(
                TERMINAL_CONTROLS,
                Outcome::Review,
                format!(
                    "{path} has {} at line {}, column {}: a terminal may show reviewers something other than what the file holds",
                    f.what, f.line, f.column
                ),
            );
        }
    }

    /// The results, one per check in [`CHECKS`] order.
    pub fn finish(self) -> Vec<CheckResult> {
        let mut out: Vec<CheckResult> = CHECKS
            .iter()
            .map(|c| CheckResult {
                check: c,
                outcome: Outcome::Pass,
                reasons: Vec::new(),
            })
            .collect();
        for (i, outcome, reason) in self.findings {
            let r = &mut out[i];
            r.outcome = r.outcome.max(outcome);
            if !reason.is_empty() {
                r.reasons.push(reason);
            }
        }
        for (i, r) in out.iter_mut().enumerate() {
            if self.counts[i] > MAX_REASONS {
                r.reasons
                    .push(format!("… and {} more", self.counts[i] - MAX_REASONS));
            }
        }
        let contents = &mut out[CONTENTS];
        contents.reasons.push(format!(
            "{} files, {} bytes unpacked",
            self.files, self.bytes
        ));
        out
    }
}

/// What a [`ControlScan`] found first: what, and where (1-based; the column counts characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlFinding {
    pub what: &'static str,
    pub line: u64,
    pub column: u64,
}

/// A file with a NUL byte in its first this many bytes is binary, as `git` and `grep` decide:
/// its bytes are no text a reviewer reads, and [`ControlScan`] reports nothing in it.
pub const BINARY_SNIFF_BYTES: u64 = 8000;

/// Where a sequence that may span chunks began, and what its first bytes were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    Esc(u64, u64),
    Cr(u64, u64),
    /// The lead byte of U+0080–U+00BF.
    C2(u64, u64),
    /// The lead byte of U+2000–U+2FFF, then its second byte.
    E2(u64, u64),
    E2x(u64, u64, u8),
}

/// Looks through one file, fed in chunks of any size, for what can change what a terminal shows
/// a reviewer reading it: escape sequences (ESC, and CSI `ESC [` or OSC `ESC ]` named as such),
/// C1 controls (U+0080–U+009F, encoded in UTF-8), carriage returns not followed by a line feed
/// (they move back over the line), backspaces, and the Unicode bidirectional overrides and
/// isolates of Trojan Source (U+202A–U+202E, U+2066–U+2069; CVE-2021-42574). A sequence split
/// between chunks is seen as one. Stray bytes 0x80–0x9F outside UTF-8 are not reported: a UTF-8
/// terminal does not take them as controls, and legacy 8-bit text is full of them.
///
/// Only the first finding is kept (with its line and column), and the scan stops there once the
/// file is known to be text, so a large file costs little more than finding its first newline.
#[derive(Clone, Debug)]
pub struct ControlScan {
    offset: u64,
    line: u64,
    column: u64,
    binary: bool,
    pending: Pending,
    first: Option<ControlFinding>,
}

impl Default for ControlScan {
    fn default() -> Self {
        ControlScan {
            offset: 0,
            line: 1,
            column: 1,
            binary: false,
            pending: Pending::None,
            first: None,
        }
    }
}

/// Bytes that may start (or be) something the scan reports, or tell a binary file.
fn notable(b: u8) -> bool {
    (b < 0x20 && b != b'\n' && b != b'\t') || b == 0xc2 || b == 0xe2
}

fn continuation(b: u8) -> bool {
    (0x80..=0xbf).contains(&b)
}

impl ControlScan {
    fn done(&self) -> bool {
        self.binary || (self.first.is_some() && self.offset >= BINARY_SNIFF_BYTES)
    }

    fn report(&mut self, what: &'static str, (line, column): (u64, u64)) {
        if self.first.is_none() {
            self.first = Some(ControlFinding { what, line, column });
        }
    }

    /// Moves past bytes with nothing notable in them, counting lines and characters.
    fn skip(&mut self, span: &[u8]) {
        self.offset += span.len() as u64;
        let chars = |s: &[u8]| s.iter().filter(|b| !continuation(**b)).count() as u64;
        match span.iter().rposition(|b| *b == b'\n') {
            Some(last) => {
                self.line += span.iter().filter(|b| **b == b'\n').count() as u64;
                self.column = 1 + chars(&span[last + 1..]);
            }
            None => self.column += chars(span),
        }
    }

    /// Looks at the next chunk of the file.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.done() {
            if self.pending == Pending::None {
                let n = bytes
                    .iter()
                    .position(|b| notable(*b))
                    .unwrap_or(bytes.len());
                self.skip(&bytes[..n]);
                bytes = &bytes[n..];
                let Some((&b, rest)) = bytes.split_first() else {
                    break;
                };
                self.step(b);
                bytes = rest;
            } else {
                self.step(bytes[0]);
                bytes = &bytes[1..];
            }
        }
    }

    fn step(&mut self, b: u8) {
        let here = (self.line, self.column);
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => {}
            Pending::Esc(l, c) => match b {
                b'[' => {
                    self.report("a terminal control sequence (ESC [, CSI)", (l, c));
                    return self.advance(b);
                }
                b']' => {
                    self.report("an operating system command (ESC ], OSC)", (l, c));
                    return self.advance(b);
                }
                _ => self.report("an escape character (ESC)", (l, c)),
            },
            Pending::Cr(l, c) => {
                if b != b'\n' {
                    self.report(
                        "a carriage return not followed by a line feed, which writes over the line",
                        (l, c),
                    );
                }
            }
            Pending::C2(l, c) => {
                if (0x80..=0x9f).contains(&b) {
                    self.report("a C1 control character (U+0080 to U+009F)", (l, c));
                }
            }
            Pending::E2(l, c) => {
                if b == 0x80 || b == 0x81 {
                    self.pending = Pending::E2x(l, c, b);
                    return self.advance(b);
                }
            }
            Pending::E2x(l, c, second) => {
                if (second == 0x80 && (0xaa..=0xae).contains(&b))
                    || (second == 0x81 && (0xa6..=0xa9).contains(&b))
                {
                    self.report(
                        "a Unicode bidirectional override or isolate (Trojan Source)",
                        (l, c),
                    );
                }
            }
        }
        match b {
            0 if self.offset < BINARY_SNIFF_BYTES => self.binary = true,
            0x1b => self.pending = Pending::Esc(here.0, here.1),
            0x08 => self.report("a backspace, which writes over what came before", here),
            b'\r' => self.pending = Pending::Cr(here.0, here.1),
            0xc2 => self.pending = Pending::C2(here.0, here.1),
            0xe2 => self.pending = Pending::E2(here.0, here.1),
            _ => {}
        }
        self.advance(b);
    }

    fn advance(&mut self, b: u8) {
        self.offset += 1;
        if b == b'\n' {
            self.line += 1;
            self.column = 1;
        } else if !continuation(b) {
            self.column += 1;
        }
    }

    /// What the scan found first, if the file is text.
    pub fn finish(mut self) -> Option<ControlFinding> {
        match self.pending {
            Pending::Esc(l, c) => self.report("an escape character (ESC)", (l, c)),
            Pending::Cr(l, c) => self.report(
                "a carriage return not followed by a line feed, which writes over the line",
                (l, c),
            ),
            _ => {}
        }
        if self.binary { None } else { self.first }
    }
}

/// The worst outcome among results.
pub fn overall(results: &[CheckResult]) -> Outcome {
    results
        .iter()
        .map(|r| r.outcome)
        .max()
        .unwrap_or(Outcome::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_point_out_what_reviewers_should_see() {
        let mut c = Checker::new(CheckSettings {
            large_file_bytes: 1000,
        });
        c.file("run.py", 10, 0o644, b"import pandas\n");
        c.file("bin/tool", 50, 0o755, b"\x7fELF\x02\x01\x01");
        c.file("ref/genes.vcf.gz", 2000, 0o644, b"\x1f\x8b\x08");
        c.file(
            "keys/id_rsa",
            10,
            0o600,
            b"-----BEGIN OPENSSH PRIVATE KEY-----",
        );
        let r = c.finish();
        let by = |name: &str| r.iter().find(|x| x.check == name).unwrap().clone();
        assert_eq!(by("native_executables").outcome, Outcome::Review);
        assert_eq!(by("large_files").outcome, Outcome::Review);
        assert_eq!(by("data_files").outcome, Outcome::Review);
        assert_eq!(by("nested_archives").outcome, Outcome::Review);
        assert_eq!(by("secrets").outcome, Outcome::Fail);
        assert_eq!(
            by("contents").reasons,
            vec!["4 files, 2070 bytes unpacked".to_string()]
        );
        assert_eq!(overall(&r), Outcome::Fail);

        let mut c = Checker::new(CheckSettings::default());
        c.terminal_controls("clean.sh", scan(&[b"echo hi\r\n"]));
        c.file("analysis.R", 10, 0o644, b"library(data.table)\n");
        c.file("MZ.txt", 10, 0o644, b"MZ is just text here");
        assert_eq!(overall(&c.finish()), Outcome::Pass);
    }

    fn scan(chunks: &[&[u8]]) -> Option<ControlFinding> {
        let mut s = ControlScan::default();
        for c in chunks {
            s.feed(c);
        }
        s.finish()
    }

    /// What was found and where: line and column.
    type Found = Option<(String, u64, u64)>;

    fn at(what: &str, line: u64, column: u64) -> Found {
        Some((what.to_owned(), line, column))
    }

    #[test]
    fn terminal_controls_are_found_in_any_chunking() {
        let csi = "a terminal control sequence (ESC [, CSI)";
        let osc = "an operating system command (ESC ], OSC)";
        let esc = "an escape character (ESC)";
        let cr = "a carriage return not followed by a line feed, which writes over the line";
        let bs = "a backspace, which writes over what came before";
        let c1 = "a C1 control character (U+0080 to U+009F)";
        let bidi = "a Unicode bidirectional override or isolate (Trojan Source)";
        let table: &[(&[u8], Found)] = &[
            (b"plain text\n", None),
            (b"windows\r\nlines\r\n", None),
            (b"tab\there\n", None),
            (
                "h\u{e9}llo \u{a0}\u{2028}\u{200f} \u{4e2d}\n".as_bytes(),
                None,
            ),
            (b"\x1b[2K", at(csi, 1, 1)),
            (b"ok\nrm -rf x # \x1b[2K\rlooks fine\n", at(csi, 2, 12)),
            (b"echo \x1b]0;title\x07\n", at(osc, 1, 6)),
            (b"x\x1bc", at(esc, 1, 2)),
            (b"trailing \x1b", at(esc, 1, 10)),
            (b"abc\rdef\n", at(cr, 1, 4)),
            (b"line\n\r", at(cr, 2, 1)),
            (b"a\x08b", at(bs, 1, 2)),
            ("\u{e9}\u{85}".as_bytes(), at(c1, 1, 2)),
            ("\u{e9}\u{9b}2K".as_bytes(), at(c1, 1, 2)),
            ("if x \u{202e} {".as_bytes(), at(bidi, 1, 6)),
            ("// \u{2066}x\u{2069}".as_bytes(), at(bidi, 1, 4)),
            ("\u{202a}".as_bytes(), at(bidi, 1, 1)),
            ("\u{202f}\u{2065}\u{206a}".as_bytes(), None),
            (b"\x7fELF\0\0\x1b[2K", None),
            (b"latin-1 \x9b2K \xe9", None),
        ];
        for (text, want) in table {
            let got = |f: Option<ControlFinding>| f.map(|f| (f.what.to_owned(), f.line, f.column));
            assert_eq!(
                &got(scan(&[text])),
                want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
            // Every split in two, and byte by byte.
            for i in 0..=text.len() {
                let (a, b) = text.split_at(i);
                assert_eq!(&got(scan(&[a, b])), want, "split at {i} of {text:?}");
            }
            let bytes: Vec<&[u8]> = text.chunks(1).collect();
            assert_eq!(&got(scan(&bytes)), want, "byte by byte: {text:?}");
        }
    }

    #[test]
    fn a_nul_late_in_a_file_does_not_hide_what_came_before() {
        let mut text = vec![b'x'; BINARY_SNIFF_BYTES as usize];
        text.extend_from_slice(b"\x1b[2K\0");
        assert_eq!(scan(&[&text]).unwrap().column, BINARY_SNIFF_BYTES + 1);
    }

    #[test]
    fn the_check_names_the_file_and_the_place() {
        let mut c = Checker::new(CheckSettings::default());
        c.terminal_controls("run.sh", scan(&[b"ok\n\x1b[2K\rfine\n"]));
        c.terminal_controls("notes.txt", scan(&[b"fine\n"]));
        let r = c.finish();
        let t = r.iter().find(|x| x.check == "terminal_controls").unwrap();
        assert_eq!(t.outcome, Outcome::Review);
        assert_eq!(
            t.reasons,
            vec![
                "run.sh has a terminal control sequence (ESC [, CSI) at line 2, column 1: a terminal may show reviewers something other than what the file holds"
                    .to_string()
            ]
        );
        assert_eq!(r.last().unwrap().check, "contents");
    }
}
