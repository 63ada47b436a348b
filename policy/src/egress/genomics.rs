//! Genomic text formats: VCF read to the end (does it carry per-sample genotypes?), and the
//! shapes of FASTQ and PLINK .bim/.fam told from their first lines.
//!
//! Per-individual genotypes and reads are personal information in Japan (PPC guideline: 40
//! independent SNPs identify a person) and ToMMo's "Strong" class: they never leave. A
//! sites-only VCF can be an aggregate (allele frequencies) and goes to a person.

use super::{Finding, Outcome, Rule};

/// Columns of a VCF line up to INFO; FORMAT is the 9th, samples follow.
const VCF_FIXED: u64 = 8;

/// Reads a VCF line by line without keeping lines: the `#CHROM` header's place and width, and
/// the first data line wider than FORMAT (for a VCF with no header).
#[derive(Debug, Default)]
pub(super) struct VcfScan {
    /// Lines ended so far.
    lines: u64,
    /// The current line's first bytes (enough to tell `#CHROM` and `#`) and its tabs.
    start: [u8; 6],
    start_len: usize,
    tabs: u64,
    header: Option<(u64, u64)>,
    wide_data: Option<(u64, u64)>,
    data_lines: u64,
}

impl VcfScan {
    pub(super) fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' => self.end_line(),
                b'\t' => self.tabs += 1,
                _ => {}
            }
            if b != b'\n' && self.start_len < self.start.len() {
                self.start[self.start_len] = b;
                self.start_len += 1;
            }
        }
    }

    fn end_line(&mut self) {
        self.lines += 1;
        let line = self.lines;
        let start = &self.start[..self.start_len];
        let columns = self.tabs + 1;
        if start == b"#CHROM" {
            if self.header.is_none() {
                self.header = Some((line, columns));
            }
        } else if !start.is_empty() && start[0] != b'#' && start != b"\r" {
            self.data_lines += 1;
            if columns > VCF_FIXED + 1 && self.wide_data.is_none() {
                self.wide_data = Some((line, columns));
            }
        }
        self.start_len = 0;
        self.tabs = 0;
    }

    /// Adds its findings; returns the data lines and the header's columns.
    pub(super) fn finish(mut self, findings: &mut Vec<Finding>) -> (Option<u64>, Option<u64>) {
        if self.start_len > 0 || self.tabs > 0 {
            self.end_line();
        }
        let genotypes = |line: u64, columns: u64, what: &str| {
            Finding::new(
                Rule::GenotypeSamples,
                Outcome::Fail,
                format!(
                    "{what} {columns} columns: FORMAT and {} sample column(s), i.e. per-individual genotypes, which may not leave",
                    columns - VCF_FIXED - 1
                ),
            )
            .at(line, 0)
        };
        let finding = match (self.header, self.wide_data) {
            (Some((line, columns)), _) if columns > VCF_FIXED + 1 => {
                genotypes(line, columns, "the #CHROM header line has")
            }
            (Some((line, columns)), _) => Finding::new(
                Rule::SitesOnlyVcf,
                Outcome::Review,
                format!(
                    "a sites-only VCF ({columns} columns, no samples): variant-level data a person must check (e.g. rare variants, allele counts below the threshold)"
                ),
            )
            .at(line, 0),
            (None, Some((line, columns))) => {
                genotypes(line, columns, "there is no #CHROM header, and a data line has")
            }
            (None, None) => Finding::new(
                Rule::SitesOnlyVcf,
                Outcome::Review,
                "a VCF with no #CHROM header line and no sample columns: a person must check it",
            ),
        };
        findings.push(finding);
        (Some(self.data_lines), self.header.map(|(_, c)| c))
    }
}

fn fields(line: &str) -> Vec<&str> {
    line.split_ascii_whitespace().collect()
}

/// FASTQ: every 4-line record in the first lines (at least one whole one) is `@name`, a
/// sequence of IUPAC letters, `+`, and a quality string as long as the sequence. When the
/// prefix ends inside the first record (long reads), `@name` and a sequence up to the prefix's
/// end (and a `+` line, if reached) do.
pub(super) fn looks_fastq(lines: &[&str], text: &str, complete: bool) -> bool {
    let sequence = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'.' || b == b'-' || b == b'*')
    };
    let name = |s: &str| s.len() > 1 && s.starts_with('@');
    let lines: Vec<&str> = lines.iter().map(|l| l.trim_end_matches('\r')).collect();
    let records: Vec<&[&str]> = lines.chunks_exact(4).take(8).collect();
    if records.is_empty() {
        let partial: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
        return !complete
            && (2..=3).contains(&partial.len())
            && name(partial[0])
            && sequence(partial[1])
            && partial.get(2).is_none_or(|l| l.starts_with('+'));
    }
    records.iter().all(|r| {
        name(r[0])
            && sequence(r[1])
            && r[2].starts_with('+')
            && r[3].len() == r[1].len()
            && r[3].bytes().all(|b| (b'!'..=b'~').contains(&b))
    })
}

/// Whether `s` is a number as PLINK writes it (integer or decimal, maybe negative or `NA`).
fn number(s: &str) -> bool {
    s == "NA" || s.parse::<f64>().is_ok_and(|v| v.is_finite())
}

fn allele(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b"ACGTNIDacgtnid0.-*".contains(&b) || b == b'<' || b == b'>')
}

/// Lines (up to 100, none blank) that all have six whitespace-separated fields of a shape.
fn six_fields<'a>(lines: &[&'a str], shape: impl Fn(&[&str]) -> bool) -> Option<Vec<Vec<&'a str>>> {
    let rows: Vec<Vec<&str>> = lines.iter().take(100).map(|l| fields(l)).collect();
    (!rows.is_empty() && rows.iter().all(|f| f.len() == 6 && shape(f))).then_some(rows)
}

/// PLINK .bim: chromosome, variant id, position in cM, base-pair position, two alleles. The
/// name `.bim` lets one line do; otherwise it takes three.
pub(super) fn looks_bim(lines: &[&str], named: bool) -> bool {
    let shape = |f: &[&str]| {
        f[0].len() <= 24
            && f[0].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && number(f[2])
            && f[3].parse::<u64>().is_ok()
            && allele(f[4])
            && allele(f[5])
            && !(f[4] == "0" && f[5] == "0" && !named)
    };
    six_fields(lines, shape).is_some_and(|rows| named || rows.len() >= 3)
}

/// PLINK .fam: family id, individual id, father, mother, sex (0, 1, 2), phenotype. The name
/// `.fam` lets one line do; otherwise it takes three, one of them with both parents `0`.
pub(super) fn looks_fam(lines: &[&str], named: bool) -> bool {
    let shape = |f: &[&str]| matches!(f[4], "0" | "1" | "2") && number(f[5]);
    six_fields(lines, shape).is_some_and(|rows| {
        named || (rows.len() >= 3 && rows.iter().any(|f| f[2] == "0" && f[3] == "0"))
    })
}

/// SAM (text alignments): a header line (`@HD`, `@SQ`, `@RG`, `@PG`, `@CO` and a tab), or
/// lines of 11 or more tab-separated fields with a numeric FLAG, POS and MAPQ and a CIGAR.
pub(super) fn looks_sam(lines: &[&str]) -> bool {
    let header = |l: &str| {
        let b = l.as_bytes();
        b.len() > 3 && b[0] == b'@' && b[1..3].iter().all(u8::is_ascii_uppercase) && b[3] == b'\t'
    };
    let cigar = |c: &str| {
        c == "*"
            || (!c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_digit() || b"MIDNSHP=X".contains(&b))
                && c.bytes().last().is_some_and(|b| !b.is_ascii_digit()))
    };
    let record = |l: &str| {
        let f: Vec<&str> = l.trim_end_matches('\r').split('\t').collect();
        f.len() >= 11
            && f[1].parse::<u16>().is_ok()
            && f[3].parse::<u64>().is_ok()
            && f[4].parse::<u8>().is_ok()
            && cigar(f[5])
    };
    match lines.first() {
        Some(first) if header(first) => true,
        Some(_) => lines.iter().take(20).all(|l| record(l)),
        None => false,
    }
}
