//! Which type a file is, from its first bytes, and the UTF-8 check every text file gets.
//!
//! Magic numbers decide binary types; anything else is read as text, and stays text only if
//! every byte to the end is valid UTF-8 without a NUL. Among text kinds, content decides first
//! (VCF, SAM, FASTQ, PLINK .bim/.fam shapes), then the shape of the first lines (a table with
//! commas or tabs, JSON); the name (`.csv`, `.tsv`, `.json`) only picks a kind the shape leaves
//! open, such as a one-column table.

use super::genomics::{self, VcfScan};
use super::preview::image_info;
use super::table::TableScan;
use super::{ContentType, Finding, Outcome, Rule, Thresholds};

/// What the first bytes decided.
pub(super) enum Sniffed {
    /// A type known from the magic, with its findings; the rest of the file is not read.
    Decided(ContentType, Vec<Finding>),
    /// Text of a kind, to be read to the end.
    Text(Box<TextCheck>),
}

/// The BGZF extra subfield (SAM spec §4.1): gzip with FEXTRA and subfield `BC`.
fn bgzf_payload(prefix: &[u8]) -> Option<&[u8]> {
    if prefix.len() < 18 || prefix[3] & 4 == 0 {
        return None;
    }
    let xlen = u16::from_le_bytes([prefix[10], prefix[11]]) as usize;
    let extra = prefix.get(12..12 + xlen)?;
    let mut rest = extra;
    let mut bgzf = false;
    while rest.len() >= 4 {
        let slen = u16::from_le_bytes([rest[2], rest[3]]) as usize;
        if rest[0] == b'B' && rest[1] == b'C' && slen == 2 {
            bgzf = true;
        }
        rest = rest.get(4 + slen..).unwrap_or(&[]);
    }
    bgzf.then(|| &prefix[12 + xlen..])
}

/// What a BGZF block holds, when its deflate data is a stored (uncompressed) block: the only
/// case readable without inflating.
fn bgzf_content(deflate: &[u8]) -> ContentType {
    // BTYPE (bits 1-2 of the first byte) 00 = stored; then LEN, NLEN, the bytes.
    if deflate.len() >= 9 && (deflate[0] >> 1) & 3 == 0 {
        let data = &deflate[5..];
        if data.starts_with(b"BAM\x01") {
            return ContentType::Bam;
        }
        if data.starts_with(b"BCF\x02") {
            return ContentType::Bcf;
        }
    }
    ContentType::Bgzf
}

fn magic(prefix: &[u8]) -> Option<ContentType> {
    const MAGICS: &[(&[u8], ContentType)] = &[
        (b"\x7fELF", ContentType::Elf),
        (b"\x89PNG\r\n\x1a\n", ContentType::Png),
        (b"\xff\xd8\xff", ContentType::Jpeg),
        (b"%PDF-", ContentType::Pdf),
        (b"BCF\x02", ContentType::Bcf),
        (b"BAM\x01", ContentType::Bam),
        (b"CRAM", ContentType::Cram),
        (b"\x6c\x1b\x01", ContentType::PlinkBed),
        (b"PK\x03\x04", ContentType::Zip),
        (b"PK\x05\x06", ContentType::Zip),
        (b"PK\x07\x08", ContentType::Zip),
    ];
    if prefix.starts_with(b"\x1f\x8b") {
        return Some(match bgzf_payload(prefix) {
            Some(deflate) => bgzf_content(deflate),
            None => ContentType::Gzip,
        });
    }
    MAGICS
        .iter()
        .find(|(m, _)| prefix.starts_with(m))
        .map(|(_, kind)| *kind)
}

/// The findings a type decided by its magic gets.
fn decided_findings(kind: ContentType, prefix: &[u8]) -> Vec<Finding> {
    use ContentType as C;
    let not_allowed = |what: &str| {
        Finding::new(
            Rule::ContentType,
            Outcome::Fail,
            format!(
                "the file is {what}: only tables (CSV, TSV), text, JSON, PNG, JPEG and PDF may leave, and only those can be checked"
            ),
        )
    };
    let reads = |what: &str| {
        Finding::new(
            Rule::SequenceReads,
            Outcome::Fail,
            format!("the file is {what}: individual-level sequence data may not leave"),
        )
    };
    let image = |kind: &str| {
        let detail = image_info(prefix)
            .map(|i| format!(", {}x{} {}", i.width, i.height, i.detail))
            .unwrap_or_default();
        Finding::new(
            Rule::Image,
            Outcome::Review,
            format!("a {kind} image{detail}: a person must look at it, and at the data behind it"),
        )
    };
    let finding = match kind {
        C::Elf => not_allowed("an ELF executable or library"),
        C::Gzip => not_allowed("gzip-compressed, and what it holds cannot be checked"),
        C::Zip => not_allowed("a zip archive, and what it holds cannot be checked"),
        C::Bgzf => {
            not_allowed("BGZF-compressed (the container of BAM, BCF and indexed genomic files)")
        }
        C::Bcf => not_allowed("BCF (binary VCF), which may hold per-sample genotypes"),
        C::Bam => reads("BAM (aligned reads)"),
        C::Cram => reads("CRAM (aligned reads)"),
        C::Sam => reads("SAM (aligned reads)"),
        C::Fastq => reads("FASTQ (sequencing reads)"),
        C::PlinkBed | C::PlinkBim | C::PlinkFam => Finding::new(
            Rule::PlinkData,
            Outcome::Fail,
            format!(
                "the file is a PLINK {}: individual-level genotype data may not leave",
                match kind {
                    C::PlinkBed => ".bed genotype matrix",
                    C::PlinkBim => ".bim variant table (part of a genotype file set)",
                    _ => ".fam sample table (family and individual IDs)",
                }
            ),
        ),
        C::Png => image("PNG"),
        C::Jpeg => image("JPEG"),
        C::Pdf => {
            let detail = image_info(prefix)
                .map(|i| format!(" ({})", i.detail))
                .unwrap_or_default();
            Finding::new(
                Rule::Document,
                Outcome::Review,
                format!(
                    "a PDF document{detail}: its text and figures are not checked automatically; a person must read it"
                ),
            )
        }
        C::Empty => Finding::new(
            Rule::Empty,
            Outcome::Review,
            "the file is empty: a person should confirm it is meant to be released",
        ),
        // Text kinds and Binary are not decided by magic.
        C::Csv | C::Tsv | C::Text | C::Json | C::Vcf | C::Binary => not_allowed("binary data"),
    };
    vec![finding]
}

/// Decides what the file is from its first bytes (`complete`: they are the whole file).
pub(super) fn sniff(path: &str, prefix: &[u8], complete: bool, t: &Thresholds) -> Sniffed {
    if prefix.is_empty() && complete {
        return decided(ContentType::Empty, prefix);
    }
    if let Some(kind) = magic(prefix) {
        return decided(kind, prefix);
    }
    // The text up to the first byte that is not UTF-8 (or a character cut by the prefix's end);
    // the UTF-8 check reads every byte again and reports what is wrong.
    let valid = match std::str::from_utf8(prefix) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&prefix[..e.valid_up_to()]).unwrap_or_default(),
    };
    let valid = valid.split('\0').next().unwrap_or_default();
    let text = valid.strip_prefix('\u{feff}').unwrap_or(valid);
    // Only whole lines, unless the prefix is the whole file.
    let lines: Vec<&str> = if complete {
        text.lines().collect()
    } else {
        match text.rfind('\n') {
            Some(end) => text[..end].lines().collect(),
            None => Vec::new(),
        }
    };
    let ext = extension(path);
    let kind = if text.starts_with("##fileformat=VCF") || text.starts_with("#CHROM\t") {
        ContentType::Vcf
    } else if genomics::looks_sam(&lines) {
        ContentType::Sam
    } else if genomics::looks_fastq(&lines, text, complete) {
        ContentType::Fastq
    } else if genomics::looks_bim(&lines, ext == "bim") {
        ContentType::PlinkBim
    } else if genomics::looks_fam(&lines, ext == "fam") {
        ContentType::PlinkFam
    } else {
        // The shape wins over the name: a CSV named .tsv is read as CSV. The name only picks
        // a kind the shape leaves open (a one-column table, a quoted cell spanning lines).
        match (text_shape(text, &lines), ext.as_str()) {
            (shape @ (ContentType::Csv | ContentType::Tsv | ContentType::Json), _) => shape,
            (_, "json" | "geojson") => ContentType::Json,
            (_, "csv") => ContentType::Csv,
            (_, "tsv" | "tab") => ContentType::Tsv,
            (shape, _) => shape,
        }
    };
    if matches!(
        kind,
        ContentType::Sam | ContentType::Fastq | ContentType::PlinkBim | ContentType::PlinkFam
    ) {
        return decided(kind, prefix);
    }
    Sniffed::Text(Box::new(TextCheck::new(kind, t)))
}

fn decided(kind: ContentType, prefix: &[u8]) -> Sniffed {
    Sniffed::Decided(kind, decided_findings(kind, prefix))
}

/// The file name's extension, lower case ("" when none).
fn extension(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// JSON when it opens like JSON; a table when at least two of the first lines (up to 50) split
/// into the same number (two or more) of tab- or comma-separated cells; free text otherwise.
fn text_shape(text: &str, lines: &[&str]) -> ContentType {
    let start = text.trim_start();
    if start.starts_with('{') || start.starts_with('[') {
        return ContentType::Json;
    }
    let lines: Vec<&str> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .take(50)
        .copied()
        .collect();
    let same = |cells: &dyn Fn(&str) -> usize| {
        let first = cells(lines[0]);
        first >= 2 && lines.iter().all(|l| cells(l) == first)
    };
    if lines.len() < 2 {
        ContentType::Text
    } else if same(&|l| l.split('\t').count()) {
        ContentType::Tsv
    } else if same(&csv_cells) {
        ContentType::Csv
    } else {
        ContentType::Text
    }
}

/// Cells in one CSV line, minding quotes (a quoted cell spanning lines makes the shape differ).
fn csv_cells(line: &str) -> usize {
    let mut quoted = false;
    let mut cells = 1;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => cells += 1,
            _ => {}
        }
    }
    cells
}

/// What the text checks found wrong with the bytes themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Bad {
    /// A NUL, or bytes that are not UTF-8: at this offset and line, this byte.
    NotText { offset: u64, line: u64, byte: u8 },
}

/// Reads a text file to the end: checks it is UTF-8 without NULs, notes the first control
/// character, counts lines, and passes the bytes to the checks of its kind.
pub(super) struct TextCheck {
    kind: ContentType,
    offset: u64,
    line: u64,
    /// The start of a character cut by a chunk's end.
    carry: [u8; 4],
    carry_len: usize,
    bad: Option<Bad>,
    control: Option<(u64, char)>,
    body: Body,
}

enum Body {
    Table(Box<TableScan>),
    Vcf(VcfScan),
    Plain,
}

impl TextCheck {
    fn new(kind: ContentType, t: &Thresholds) -> Self {
        let body = match kind {
            ContentType::Csv => Body::Table(Box::new(TableScan::new(b',', t))),
            ContentType::Tsv => Body::Table(Box::new(TableScan::new(b'\t', t))),
            ContentType::Vcf => Body::Vcf(VcfScan::default()),
            _ => Body::Plain,
        };
        TextCheck {
            kind,
            offset: 0,
            line: 1,
            carry: [0; 4],
            carry_len: 0,
            bad: None,
            control: None,
            body,
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        if self.bad.is_some() {
            return;
        }
        self.utf8(bytes);
        if self.bad.is_some() {
            return;
        }
        match &mut self.body {
            Body::Table(t) => t.update(bytes),
            Body::Vcf(v) => v.update(bytes),
            Body::Plain => {}
        }
    }

    fn utf8(&mut self, mut bytes: &[u8]) {
        while self.carry_len > 0 && !bytes.is_empty() {
            self.carry[self.carry_len] = bytes[0];
            self.carry_len += 1;
            bytes = &bytes[1..];
            let carry = self.carry;
            match std::str::from_utf8(&carry[..self.carry_len]) {
                Ok(s) => {
                    self.carry_len = 0;
                    self.text(s);
                }
                Err(e) if e.error_len().is_none() => {}
                Err(_) => return self.not_text(carry[0]),
            }
        }
        if bytes.is_empty() {
            return;
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => self.text(s),
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                self.text(std::str::from_utf8(good).unwrap_or_default());
                if self.bad.is_some() {
                    return;
                }
                match e.error_len() {
                    None => {
                        self.carry[..rest.len()].copy_from_slice(rest);
                        self.carry_len = rest.len();
                    }
                    Some(_) => self.not_text(rest[0]),
                }
            }
        }
    }

    fn not_text(&mut self, byte: u8) {
        self.bad = Some(Bad::NotText {
            offset: self.offset,
            line: self.line,
            byte,
        });
    }

    /// Moves past valid UTF-8, stopping at a NUL.
    fn text(&mut self, s: &str) {
        let plain = |b: &u8| (0x20..0x7f).contains(b) || matches!(b, b'\t' | b'\n' | b'\r');
        let bytes = s.as_bytes();
        if self.control.is_some() || bytes.iter().all(plain) {
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
            self.advance(&bytes[..end]);
            if end < bytes.len() {
                self.not_text(0);
            }
            return;
        }
        for (i, c) in s.char_indices() {
            if c == '\0' {
                self.advance(&bytes[..i]);
                return self.not_text(0);
            }
            if self.control.is_none() && is_control(c) {
                let line = self.line + bytes[..i].iter().filter(|b| **b == b'\n').count() as u64;
                self.control = Some((line, c));
                return self.text_after(s, i);
            }
        }
        self.advance(bytes);
    }

    fn text_after(&mut self, s: &str, i: usize) {
        self.advance(&s.as_bytes()[..i]);
        self.text(&s[i..]);
    }

    fn advance(&mut self, bytes: &[u8]) {
        self.offset += bytes.len() as u64;
        self.line += bytes.iter().filter(|b| **b == b'\n').count() as u64;
    }

    /// The content type, findings, rows and columns.
    pub(super) fn finish(mut self) -> (ContentType, Vec<Finding>, Option<u64>, Option<u64>) {
        if self.bad.is_none() && self.carry_len > 0 {
            let byte = self.carry[0];
            self.not_text(byte);
        }
        if let Some(Bad::NotText { offset, line, byte }) = self.bad {
            let what = if byte == 0 {
                "a NUL byte".to_owned()
            } else {
                format!("byte 0x{byte:02x}, which is not UTF-8")
            };
            let f = Finding::new(
                Rule::ContentType,
                Outcome::Fail,
                format!("the file is binary: it has {what} at offset {offset} (line {line}); only UTF-8 text, PNG, JPEG and PDF may leave"),
            )
            .at(line, 0);
            return (ContentType::Binary, vec![f], None, None);
        }
        let mut findings = Vec::new();
        let (rows, columns) = match self.body {
            Body::Table(t) => t.finish(&mut findings),
            Body::Vcf(v) => v.finish(&mut findings),
            Body::Plain => {
                let what = if self.kind == ContentType::Json {
                    "JSON"
                } else {
                    "free text (not a table)"
                };
                findings.push(Finding::new(
                    Rule::FreeText,
                    Outcome::Review,
                    format!("the file is {what}, which is not checked automatically: a person must read it"),
                ));
                (None, None)
            }
        };
        if let Some((line, c)) = self.control {
            findings.push(
                Finding::new(
                    Rule::ControlCharacters,
                    Outcome::Review,
                    format!(
                        "line {line} has the control character U+{:04X}, which can change what a terminal shows",
                        c as u32
                    ),
                )
                .at(line, 0),
            );
        }
        (self.kind, findings, rows, columns)
    }
}

/// Characters that can change what a terminal shows: C0 and C1 controls other than tab, line
/// feed and carriage return, DEL, and the bidirectional overrides and isolates (Trojan Source).
pub(super) fn is_control(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}
