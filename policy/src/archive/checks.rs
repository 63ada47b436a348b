//! Automatic checks on an incoming archive's entries, attached to the application for reviewers:
//! each check passes, asks for a reviewer's attention, or fails, with reasons.
//!
//! They look at an entry's path, size and first bytes only, so they run while the archive
//! streams in. They inform the committee; the hard rules are in [`rules`](super::rules).

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
pub const CHECKS: [&str; 6] = [
    "native_executables",
    "large_files",
    "data_files",
    "nested_archives",
    "secrets",
    "contents",
];

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
        let contents = &mut out[5];
        contents.reasons.push(format!(
            "{} files, {} bytes unpacked",
            self.files, self.bytes
        ));
        out
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
        c.file("analysis.R", 10, 0o644, b"library(data.table)\n");
        c.file("MZ.txt", 10, 0o644, b"MZ is just text here");
        assert_eq!(overall(&c.finish()), Outcome::Pass);
    }
}
