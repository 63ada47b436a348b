//! Automatic disclosure checks on the files an analyst asks to take out of the environment
//! (egress). Each file gets pass, review or fail, with reasons and where in the file they are;
//! the committee sees them beside the file and decides.
//!
//! Files are judged by their content, never by their name: the first bytes (`sniff.rs`) pick
//! the type, and the whole stream is then read once, chunk by chunk, by the checks for that
//! type (tables in `table.rs` and `columns.rs`, genomic formats in `genomics.rs`). Only tables
//! of aggregated counts can pass; images, documents and free text go to a person;
//! individual-level and binary data fail. The previews a reviewer sees are in [`preview`].
//! The rules follow ACRO/SACRO (cell threshold 10, zeros flagged), OpenSAFELY's level-4 file
//! checks (type allow-list, size and row limits, identifier columns) and the hts-specs magic
//! numbers. [`RULES_VERSION`] names this rule set and is recorded with every result.
//!
//! Memory stays bounded whatever the file's size: a fixed prefix, one row's cells (each cut at
//! [`MAX_CELL_BYTES`]) and, per column, a set of 64-bit hashes that stops growing at a limit.

#[cfg(test)]
mod chunking_tests;
mod columns;
mod genomics;
pub mod preview;
#[cfg(test)]
mod preview_tests;
mod sniff;
mod table;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

pub use table::{DISTINCT_ROWS, MAX_CELL_BYTES, MAX_CELL_FINDINGS, MAX_COLUMNS};

/// The name of this rule set, recorded with every result so a later change of rules is visible.
pub const RULES_VERSION: &str = "vre-egress-checks/1";

/// How many leading bytes decide a file's type (fewer when the file is shorter).
pub const SNIFF_BYTES: usize = 64 * 1024;

/// Limits the checks apply. The defaults follow ACRO (cell threshold 10) and the exports a
/// Japanese visiting-type environment allows (ToMMo: under 7 GB per application).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Cells of count columns below this fail; cells of 0 go to review.
    pub min_count: u64,
    /// A bigger file fails.
    pub max_file_bytes: u64,
    /// A request whose files add up to more fails.
    pub max_request_bytes: u64,
    /// A table with more data rows goes to review: it smells of row-level data.
    pub max_table_rows: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_count: 10,
            max_file_bytes: 1 << 30,
            max_request_bytes: 4 << 30,
            max_table_rows: 100_000,
        }
    }
}

/// A name that [`FromStr`] did not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {value:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

/// Implements `as_str`, `ALL`, `Display` and `FromStr` for a fieldless enum from one table.
macro_rules! names {
    ($ty:ident, $what:literal, $fn:ident, { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The stable snake_case name, as stored and shown.
            pub fn $fn(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),*
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.$fn())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                $ty::ALL.iter().copied().find(|v| v.$fn() == s).ok_or_else(|| UnknownName {
                    what: $what,
                    value: s.to_owned(),
                })
            }
        }
    };
}

/// How a file, a finding or a request came out. Ordered, so the worst is the maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Pass,
    Review,
    Fail,
}

names!(Outcome, "outcome", as_str, {
    Pass => "pass",
    Review => "review",
    Fail => "fail",
});

/// What a file holds, decided from its content (the name only chooses among text kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentType {
    Csv,
    Tsv,
    Text,
    Json,
    Png,
    Jpeg,
    Pdf,
    Vcf,
    Bcf,
    /// BGZF-compressed data whose content could not be told cheaply (BAM, BCF, bgzipped text).
    Bgzf,
    Bam,
    Cram,
    /// Text alignments (the uncompressed form of BAM).
    Sam,
    Fastq,
    PlinkBed,
    PlinkBim,
    PlinkFam,
    Elf,
    Gzip,
    Zip,
    Empty,
    /// Anything else: an unknown binary, or text with a NUL or invalid UTF-8.
    Binary,
}

names!(ContentType, "content type", as_str, {
    Csv => "csv",
    Tsv => "tsv",
    Text => "text",
    Json => "json",
    Png => "png",
    Jpeg => "jpeg",
    Pdf => "pdf",
    Vcf => "vcf",
    Bcf => "bcf",
    Bgzf => "bgzf",
    Bam => "bam",
    Cram => "cram",
    Sam => "sam",
    Fastq => "fastq",
    PlinkBed => "plink_bed",
    PlinkBim => "plink_bim",
    PlinkFam => "plink_fam",
    Elf => "elf",
    Gzip => "gzip",
    Zip => "zip",
    Empty => "empty",
    Binary => "binary",
});

/// Where a finding is, 1-based. In tables row 1 is the header and rows count records (a record
/// is a line unless a quoted cell spans lines); elsewhere rows are lines. Column 0 means the
/// whole row or line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub row: u64,
    pub column: u64,
}

impl Location {
    pub fn new(row: u64, column: u64) -> Self {
        Location { row, column }
    }
}

/// Which rule a finding comes from. The codes are stable: they are stored with results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The type is not on the allow-list (or text turned out binary).
    ContentType,
    FileSize,
    RequestSize,
    TableRows,
    /// Rows with another number of cells than the header, or a quote left open.
    TableShape,
    IdentifierHeader,
    IdentifierValues,
    SmallCount,
    ZeroCount,
    GenotypeSamples,
    SitesOnlyVcf,
    SequenceReads,
    /// A PLINK genotype file set (.bed, .bim, .fam).
    PlinkData,
    Image,
    /// A PDF.
    Document,
    FreeText,
    /// Control characters in text, which can change what a terminal shows a reviewer.
    ControlCharacters,
    Empty,
}

names!(Rule, "rule", code, {
    ContentType => "content_type",
    FileSize => "file_size",
    RequestSize => "request_size",
    TableRows => "table_rows",
    TableShape => "table_shape",
    IdentifierHeader => "identifier_header",
    IdentifierValues => "identifier_values",
    SmallCount => "small_count",
    ZeroCount => "zero_count",
    GenotypeSamples => "genotype_samples",
    SitesOnlyVcf => "sites_only_vcf",
    SequenceReads => "sequence_reads",
    PlinkData => "plink_data",
    Image => "image",
    Document => "document",
    FreeText => "free_text",
    ControlCharacters => "control_characters",
    Empty => "empty",
});

/// One reason for an outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    pub outcome: Outcome,
    pub message: String,
    pub location: Option<Location>,
}

impl Finding {
    pub fn new(rule: Rule, outcome: Outcome, message: impl Into<String>) -> Self {
        Finding {
            rule,
            outcome,
            message: message.into(),
            location: None,
        }
    }

    pub fn at(mut self, row: u64, column: u64) -> Self {
        self.location = Some(Location { row, column });
        self
    }
}

/// The checks' verdict on one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    /// Relative to the output folder, as given to [`FileChecker::new`].
    pub path: String,
    pub size: u64,
    pub content_type: ContentType,
    /// The worst outcome of the findings; [`Outcome::Pass`] when there are none.
    pub outcome: Outcome,
    pub findings: Vec<Finding>,
    /// Tables: data rows (the header and blank lines not counted); VCF: data lines.
    pub rows: Option<u64>,
    /// Tables: cells in the header; VCF: columns of the `#CHROM` line.
    pub columns: Option<u64>,
}

/// Checks one file as its bytes stream past, in chunks of any size: the report does not depend
/// on where the chunks begin and end.
pub struct FileChecker {
    path: String,
    thresholds: Thresholds,
    size: u64,
    stage: Stage,
}

enum Stage {
    /// Collecting the first [`SNIFF_BYTES`].
    Sniffing(Vec<u8>),
    /// Text, read to the end by a UTF-8 check and the checks of its kind.
    Text(Box<sniff::TextCheck>),
    /// A type decided by its first bytes; nothing more to read.
    Decided(ContentType, Vec<Finding>),
}

impl FileChecker {
    /// `path` is relative to the output folder, e.g. `tables/counts.csv`.
    pub fn new(path: &str, thresholds: &Thresholds) -> Self {
        FileChecker {
            path: path.to_owned(),
            thresholds: thresholds.clone(),
            size: 0,
            stage: Stage::Sniffing(Vec::new()),
        }
    }

    /// Reads the next chunk of the file.
    pub fn update(&mut self, mut chunk: &[u8]) {
        self.size += chunk.len() as u64;
        if let Stage::Sniffing(prefix) = &mut self.stage {
            let take = chunk.len().min(SNIFF_BYTES - prefix.len());
            prefix.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if prefix.len() < SNIFF_BYTES {
                return;
            }
            self.decide(false);
        }
        if let Stage::Text(text) = &mut self.stage {
            text.update(chunk);
        }
    }

    /// Decides the type from the prefix and, for text, reads the prefix as the file's start.
    fn decide(&mut self, complete: bool) {
        let Stage::Sniffing(prefix) =
            std::mem::replace(&mut self.stage, Stage::Sniffing(Vec::new()))
        else {
            return;
        };
        self.stage = match sniff::sniff(&self.path, &prefix, complete, &self.thresholds) {
            sniff::Sniffed::Decided(kind, findings) => Stage::Decided(kind, findings),
            sniff::Sniffed::Text(mut text) => {
                text.update(&prefix);
                Stage::Text(text)
            }
        };
    }

    /// The report, once every byte has been read.
    pub fn finish(mut self) -> FileReport {
        if matches!(self.stage, Stage::Sniffing(_)) {
            self.decide(true);
        }
        let (content_type, mut findings, rows, columns) = match self.stage {
            Stage::Sniffing(_) => unreachable!("decided above"),
            Stage::Decided(kind, findings) => (kind, findings, None, None),
            Stage::Text(text) => text.finish(),
        };
        if self.size > self.thresholds.max_file_bytes {
            findings.insert(
                0,
                Finding::new(
                    Rule::FileSize,
                    Outcome::Fail,
                    format!(
                        "the file is {} bytes, over the {} bytes one file may have",
                        self.size, self.thresholds.max_file_bytes
                    ),
                ),
            );
        }
        FileReport {
            path: self.path,
            size: self.size,
            content_type,
            outcome: worst(&findings),
            findings,
            rows,
            columns,
        }
    }
}

/// Checks a whole file held in memory (tests, small files).
pub fn check_bytes(path: &str, bytes: &[u8], thresholds: &Thresholds) -> FileReport {
    let mut c = FileChecker::new(path, thresholds);
    c.update(bytes);
    c.finish()
}

fn worst(findings: &[Finding]) -> Outcome {
    findings
        .iter()
        .map(|f| f.outcome)
        .max()
        .unwrap_or(Outcome::Pass)
}

/// Findings about the request as a whole: its total size.
pub fn check_request(files: &[FileReport], thresholds: &Thresholds) -> Vec<Finding> {
    let total = files.iter().fold(0u64, |sum, f| sum.saturating_add(f.size));
    let mut out = Vec::new();
    if total > thresholds.max_request_bytes {
        out.push(Finding::new(
            Rule::RequestSize,
            Outcome::Fail,
            format!(
                "the request's {} files add up to {total} bytes, over the {} bytes one request may have",
                files.len(),
                thresholds.max_request_bytes
            ),
        ));
    }
    out
}

/// The request's outcome: the worst of its files' and its own findings'.
pub fn overall(files: &[FileReport], request: &[Finding]) -> Outcome {
    files
        .iter()
        .map(|f| f.outcome)
        .chain(request.iter().map(|f| f.outcome))
        .max()
        .unwrap_or(Outcome::Pass)
}
