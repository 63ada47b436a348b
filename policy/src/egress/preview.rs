//! What a reviewer is shown of a file: its first rows as a table with the flagged cells marked,
//! its first lines as terminal-safe text, or an image's size and kind. Pure and bounded: the
//! caller passes a prefix of the file, and the limits bound the work and the result.

use super::sniff::is_control;
use super::table::{Cell, MAX_CELL_BYTES, Parser, Sink};
use super::{ContentType, Finding, Outcome};

/// The first rows of a table; `rows[0]` is the header and `rows[i]` the table's row `i + 1`,
/// as [`Location`](super::Location)s count them (a blank line is a row of one empty cell).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablePreview {
    pub delimiter: u8,
    pub rows: Vec<Vec<PreviewCell>>,
    /// Rows or columns were left out to keep within the limits.
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviewCell {
    /// The cell's text, control characters escaped; a cell longer than
    /// [`MAX_CELL_BYTES`] ends with `…`.
    pub text: String,
    /// The worst outcome of the findings located at this cell or its whole row.
    pub flagged: Option<Outcome>,
}

struct Collect<'a> {
    max_rows: usize,
    max_columns: usize,
    findings: &'a [Finding],
    rows: Vec<Vec<PreviewCell>>,
    truncated: bool,
    past_rows: bool,
}

impl Collect<'_> {
    fn flag(&self, row: u64, column: u64) -> Option<Outcome> {
        self.findings
            .iter()
            .filter(|f| {
                f.location
                    .is_some_and(|l| l.row == row && (l.column == column || l.column == 0))
            })
            .map(|f| f.outcome)
            .max()
    }
}

impl Sink for Collect<'_> {
    fn cell(&mut self, record: u64, column: u64, cell: &Cell) {
        if record as usize > self.max_rows {
            self.truncated = true;
            self.past_rows = true;
            return;
        }
        if column == 1 {
            self.rows.push(Vec::new());
        }
        if column as usize > self.max_columns {
            self.truncated = true;
            return;
        }
        let mut text = text_preview(&cell.bytes, usize::MAX, usize::MAX);
        if cell.len as usize > MAX_CELL_BYTES {
            text.push('…');
        }
        let flagged = self.flag(record, column);
        if let Some(row) = self.rows.last_mut() {
            row.push(PreviewCell { text, flagged });
        }
    }

    fn end_record(&mut self, _record: u64, _cells: u64, _blank: bool) {}
}

/// The first `max_rows` rows (the header included) and `max_columns` columns of a table, parsed
/// as the checks parse it (RFC 4180 quoting), with each cell flagged by the findings located at
/// it (column 0 flags the whole row). An unterminated last row of the prefix is shown as it is.
pub fn table_preview(
    prefix: &[u8],
    delimiter: u8,
    max_rows: usize,
    max_columns: usize,
    findings: &[Finding],
) -> TablePreview {
    let mut parser = Parser::new(delimiter);
    let mut sink = Collect {
        max_rows,
        max_columns,
        findings,
        rows: Vec::new(),
        truncated: false,
        past_rows: false,
    };
    for chunk in prefix.chunks(4096) {
        parser.update(chunk, &mut sink);
        if sink.past_rows {
            break;
        }
    }
    if !sink.past_rows {
        parser.finish(&mut sink);
    }
    TablePreview {
        delimiter,
        rows: sink.rows,
        truncated: sink.truncated,
    }
}

/// The first `max_lines` lines of a text, at most `max_bytes` long, safe to print on a
/// terminal. UTF-8 comes through unchanged, except control characters (other than tab and line
/// feed) and bidirectional overrides, which are written as `\u{1b}`; bytes that are not UTF-8
/// are written as `\x{ff}`. It stops at a character (or escape) boundary, and before a
/// character the prefix cuts.
pub fn text_preview(prefix: &[u8], max_lines: usize, max_bytes: usize) -> String {
    let mut out = String::new();
    let mut lines = 0;
    let mut rest = prefix;
    // Adds a piece; false once a limit is reached.
    let mut add = |piece: &str, out: &mut String| {
        if lines >= max_lines || out.len() + piece.len() > max_bytes {
            return false;
        }
        out.push_str(piece);
        if piece == "\n" {
            lines += 1;
        }
        true
    };
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, None),
            Err(e) => (
                std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
                Some(e.error_len()),
            ),
        };
        let mut buf = [0u8; 4];
        for c in valid.chars() {
            let piece = if c != '\n' && (c == '\r' || is_control(c)) {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.encode_utf8(&mut buf).to_owned()
            };
            if !add(&piece, &mut out) {
                return out;
            }
        }
        match bad {
            None | Some(None) => break,
            Some(Some(n)) => {
                let at = valid.len();
                for b in &rest[at..at + n] {
                    if !add(&format!("\\x{{{b:02x}}}"), &mut out) {
                        return out;
                    }
                }
                rest = &rest[at + n..];
            }
        }
    }
    out
}

/// The kind and size of an image, or a PDF's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ContentType,
    /// Pixels; 0 for a PDF.
    pub width: u32,
    pub height: u32,
    /// E.g. "8-bit RGBA", "8-bit, 3 components, baseline", "PDF 1.7, 3 pages".
    pub detail: String,
}

/// Reads a PNG's IHDR, a JPEG's SOFn header, or a PDF's version (with its page count when the
/// prefix holds an uncompressed page tree). `None` when the prefix is none of them or too
/// short.
pub fn image_info(prefix: &[u8]) -> Option<ImageInfo> {
    if prefix.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(prefix)
    } else if prefix.starts_with(b"\xff\xd8\xff") {
        jpeg(prefix)
    } else if prefix.starts_with(b"%PDF-") {
        pdf(prefix)
    } else {
        None
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn png(p: &[u8]) -> Option<ImageInfo> {
    if p.len() < 29 || &p[12..16] != b"IHDR" {
        return None;
    }
    let color = match p[25] {
        0 => "grayscale",
        2 => "RGB",
        3 => "indexed",
        4 => "grayscale and alpha",
        6 => "RGBA",
        _ => return None,
    };
    let interlaced = if p[28] == 1 { ", interlaced" } else { "" };
    Some(ImageInfo {
        format: ContentType::Png,
        width: be32(&p[16..20]),
        height: be32(&p[20..24]),
        detail: format!("{}-bit {color}{interlaced}", p[24]),
    })
}

fn jpeg(p: &[u8]) -> Option<ImageInfo> {
    let mut i = 2;
    loop {
        if *p.get(i)? != 0xff {
            return None;
        }
        while *p.get(i)? == 0xff {
            i += 1;
        }
        let marker = p[i];
        i += 1;
        match marker {
            0xd8 | 0xd0..=0xd7 | 0x01 => continue,
            0xd9 | 0xda => return None,
            _ => {}
        }
        let len = u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]) as usize;
        if (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            let h = p.get(i + 2..i + 8)?;
            let process = match marker {
                0xc0 => "baseline".to_owned(),
                0xc1 => "extended sequential".to_owned(),
                0xc2 => "progressive".to_owned(),
                0xc3 => "lossless".to_owned(),
                m => format!("SOF{}", m - 0xc0),
            };
            return Some(ImageInfo {
                format: ContentType::Jpeg,
                width: u32::from(u16::from_be_bytes([h[3], h[4]])),
                height: u32::from(u16::from_be_bytes([h[1], h[2]])),
                detail: format!("{}-bit, {} components, {process}", h[0], h[5]),
            });
        }
        if len < 2 {
            return None;
        }
        i += len;
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn pdf(p: &[u8]) -> Option<ImageInfo> {
    let version: String = p[5..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .take(8)
        .map(|b| *b as char)
        .collect();
    if version.is_empty() {
        return None;
    }
    // The largest /Count of a dictionary of /Type /Pages: the root of the page tree.
    let mut pages: Option<u64> = None;
    let mut at = 0;
    while let Some(t) = find(p, b"/Type", at) {
        at = t + 5;
        let rest = &p[at..];
        let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let rest = &rest[skip..];
        if !rest.starts_with(b"/Pages") || rest.get(6).is_some_and(|b| b.is_ascii_alphanumeric()) {
            continue;
        }
        let open = p[..t].windows(2).rposition(|w| w == b"<<").unwrap_or(0);
        let close = find(p, b">>", at).unwrap_or(p.len());
        if let Some(c) = find(&p[..close], b"/Count", open) {
            let digits: String = p[c + 6..close]
                .iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .take_while(|b| b.is_ascii_digit())
                .map(|b| *b as char)
                .collect();
            if let Ok(n) = digits.parse::<u64>() {
                pages = Some(pages.map_or(n, |m| m.max(n)));
            }
        }
    }
    let detail = match pages {
        Some(1) => format!("PDF {version}, 1 page"),
        Some(n) => format!("PDF {version}, {n} pages"),
        None => format!("PDF {version}"),
    };
    Some(ImageInfo {
        format: ContentType::Pdf,
        width: 0,
        height: 0,
        detail,
    })
}
