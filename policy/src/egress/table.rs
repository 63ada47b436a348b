//! Tables (CSV with RFC 4180 quoting, TSV): a streaming record parser, and the checks on the
//! header and every cell.
//!
//! Identifier columns fail, by header (`patient_id`, `dob`, 氏名, …) or by values (all distinct
//! over at least [`MIN_ID_VALUES`] rows and shaped like codes, in a column whose header names
//! neither a count nor a label: an aggregate's label column, `group` or `code`, is distinct by
//! construction). Count columns fail on cells below the threshold and go to review on zeros (ACRO). A column counts when it is not an
//! identifier, every cell is a whole number `>= 0` (or empty, or a redaction marker like `NA`,
//! `[REDACTED]`, `<10`), and either its header says count (`n`, `count`, `n_*`, `*_count`,
//! 件数, …) or it is not the first column and its header does not name a label or a measure
//! (`year`, `age`, `chrom`, `pos`, `group`, `rank`, `percent`, `mean`, …): in an aggregated
//! table, whole-number columns beside the labels are counts.

use std::collections::HashSet;

use super::columns::{Header, Number, classify_header, code_like, fnv, number};
use super::{Finding, Outcome, Rule, Thresholds};

/// Bytes of a cell kept for the checks (and previews); longer cells are neither numbers nor
/// codes, and their values are not tracked.
pub const MAX_CELL_BYTES: usize = 256;
/// Columns checked; more are reported and left unchecked.
pub const MAX_COLUMNS: usize = 4096;
/// Data rows over which a column's values are checked for being all distinct.
pub const DISTINCT_ROWS: u64 = 1_000_000;
/// Cell findings listed per rule and file; the rest are counted in one more finding.
pub const MAX_CELL_FINDINGS: usize = 50;
/// Values tracked over all columns: wide tables track fewer rows per column (at least 1000).
const MAX_TRACKED_VALUES: u64 = 4_000_000;
/// Distinct values needed before a column is taken for identifiers.
pub(super) const MIN_ID_VALUES: u64 = 10;

/// One cell as parsed: its first [`MAX_CELL_BYTES`] bytes and its full length.
#[derive(Clone, Debug, Default)]
pub(super) struct Cell {
    pub(super) bytes: Vec<u8>,
    pub(super) len: u64,
    pub(super) quoted: bool,
}

impl Cell {
    fn push(&mut self, b: u8) {
        self.len += 1;
        if self.bytes.len() < MAX_CELL_BYTES {
            self.bytes.push(b);
        }
    }

    /// The whole cell, if it was short enough to keep and is UTF-8.
    pub(super) fn text(&self) -> Option<&str> {
        if self.len as usize > MAX_CELL_BYTES {
            return None;
        }
        std::str::from_utf8(&self.bytes).ok()
    }
}

/// Receives what a [`Parser`] reads.
pub(super) trait Sink {
    fn cell(&mut self, record: u64, column: u64, cell: &Cell);
    /// `blank`: the record was an empty line.
    fn end_record(&mut self, record: u64, cells: u64, blank: bool);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Start,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// A push parser for delimited records: RFC 4180 quoting (`"a,b"`, `""` for a quote), line
/// ends `\n` or `\r\n`. A quote inside an unquoted cell is kept as it is.
pub(super) struct Parser {
    delimiter: u8,
    state: State,
    /// A `\r` outside quotes, waiting to see whether `\n` follows.
    cr: bool,
    started: bool,
    record: u64,
    column: u64,
    /// Where the record in a still-open quote began.
    quote_record: u64,
    cell: Cell,
}

impl Parser {
    pub(super) fn new(delimiter: u8) -> Self {
        Parser {
            delimiter,
            state: State::Start,
            cr: false,
            started: false,
            record: 1,
            column: 1,
            quote_record: 0,
            cell: Cell::default(),
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8], sink: &mut impl Sink) {
        for &b in bytes {
            self.byte(b, sink);
        }
    }

    fn byte(&mut self, b: u8, sink: &mut impl Sink) {
        if self.cr {
            self.cr = false;
            if b == b'\n' {
                return self.end_record(sink);
            }
            self.cell.push(b'\r');
            self.state = State::Unquoted;
        }
        self.started = true;
        match self.state {
            State::Start | State::Unquoted => {
                if b == self.delimiter {
                    self.end_cell(sink);
                } else if b == b'\n' {
                    self.end_record(sink);
                } else if b == b'\r' {
                    self.cr = true;
                } else if b == b'"' && self.state == State::Start {
                    self.state = State::Quoted;
                    self.cell.quoted = true;
                    self.quote_record = self.record;
                } else {
                    self.cell.push(b);
                    self.state = State::Unquoted;
                }
            }
            State::Quoted => {
                if b == b'"' {
                    self.state = State::QuoteInQuoted;
                } else {
                    self.cell.push(b);
                }
            }
            State::QuoteInQuoted => {
                if b == b'"' {
                    self.cell.push(b'"');
                    self.state = State::Quoted;
                } else {
                    self.state = State::Unquoted;
                    self.byte(b, sink);
                }
            }
        }
    }

    fn end_cell(&mut self, sink: &mut impl Sink) {
        sink.cell(self.record, self.column, &self.cell);
        self.column += 1;
        self.cell.bytes.clear();
        self.cell.len = 0;
        self.cell.quoted = false;
        self.state = State::Start;
    }

    fn end_record(&mut self, sink: &mut impl Sink) {
        let blank = self.column == 1 && self.cell.len == 0 && !self.cell.quoted;
        self.end_cell(sink);
        sink.end_record(self.record, self.column - 1, blank);
        self.record += 1;
        self.column = 1;
        self.started = false;
    }

    /// Ends the last record; returns where it began if it ended inside a quote.
    pub(super) fn finish(&mut self, sink: &mut impl Sink) -> Option<u64> {
        self.cr = false;
        if !self.started {
            return None;
        }
        let open = (self.state == State::Quoted).then_some(self.quote_record);
        self.end_record(sink);
        open
    }
}

/// Whether a column's values are all distinct codes, as far as checked.
#[derive(Debug)]
enum Distinct {
    /// Hashes of the values so far, all distinct codes.
    Tracking(HashSet<u64>),
    /// Stopped at the row limit with this many distinct codes over that many data rows.
    Checked { values: u64, rows: u64 },
    /// A repeat, or a value not shaped like a code.
    No,
}

#[derive(Debug)]
struct Column {
    header: Header,
    whole_only: bool,
    wholes: u64,
    small: Vec<(u64, u64)>,
    small_n: u64,
    zeros: Vec<u64>,
    zeros_n: u64,
    distinct: Distinct,
}

/// The checks on one table, fed its bytes.
pub(super) struct TableScan {
    parser: Parser,
    state: TableState,
}

struct TableState {
    min_count: u64,
    max_rows: u64,
    columns: Vec<Column>,
    header_cells: u64,
    /// Header cells after the first shaped like codes (sample IDs as columns), and the column
    /// of the first of them.
    code_names: u64,
    code_name_first: u64,
    rows: u64,
    track_rows: u64,
    ragged: Option<(u64, u64)>,
    ragged_n: u64,
}

impl TableScan {
    pub(super) fn new(delimiter: u8, t: &Thresholds) -> Self {
        TableScan {
            parser: Parser::new(delimiter),
            state: TableState {
                min_count: t.min_count,
                max_rows: t.max_table_rows,
                columns: Vec::new(),
                header_cells: 0,
                code_names: 0,
                code_name_first: 0,
                rows: 0,
                track_rows: DISTINCT_ROWS,
                ragged: None,
                ragged_n: 0,
            },
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        self.parser.update(bytes, &mut self.state);
    }

    /// Adds its findings; returns the data rows and the header's cells.
    pub(super) fn finish(mut self, findings: &mut Vec<Finding>) -> (Option<u64>, Option<u64>) {
        let open = self.parser.finish(&mut self.state);
        let s = self.state;
        if let Some((row, cells)) = s.ragged {
            let more = match s.ragged_n {
                1 => String::new(),
                n => format!(" ({n} rows in all)"),
            };
            findings.push(Finding::new(
                Rule::TableShape,
                Outcome::Review,
                format!("row {row} has {cells} cells but the header has {}{more}: the table may not be read as meant", s.header_cells),
            ).at(row, 0));
        }
        if let Some(row) = open {
            findings.push(Finding::new(
                Rule::TableShape,
                Outcome::Review,
                format!("a quote opened in row {row} is never closed: the rest of the file was read as one cell"),
            ).at(row, 0));
        }
        if s.header_cells > MAX_COLUMNS as u64 {
            findings.push(Finding::new(
                Rule::TableShape,
                Outcome::Review,
                format!(
                    "the table has {} columns; only the first {MAX_COLUMNS} were checked",
                    s.header_cells
                ),
            ));
        }
        if s.rows == 0 {
            findings.push(Finding::new(
                Rule::Empty,
                Outcome::Review,
                "the table has a header and no data rows: a person must look at what the header holds",
            ));
        }
        if s.code_names >= MIN_ID_VALUES {
            findings.push(
                Finding::new(
                    Rule::IdentifierValues,
                    Outcome::Review,
                    format!("{} column names are shaped like codes (the first in column {}): the columns may be people or samples", s.code_names, s.code_name_first),
                )
                .at(1, 0),
            );
        }
        if s.rows > s.max_rows {
            findings.push(Finding::new(
                Rule::TableRows,
                Outcome::Review,
                format!("the table has {} data rows, over {}: it may be row-level data rather than an aggregate", s.rows, s.max_rows),
            ));
        }
        let mut small = Vec::new();
        let mut zeros = Vec::new();
        let (mut small_n, mut zeros_n) = (0, 0);
        for (i, c) in s.columns.iter().enumerate() {
            let col = i as u64 + 1;
            if c.header == Header::Identifier {
                findings.push(Finding::new(
                    Rule::IdentifierHeader,
                    Outcome::Fail,
                    format!("column {col} is named like an identifier of a person or sample; identifiers may not leave"),
                ).at(1, col));
                continue;
            }
            let (values, checked) = match &c.distinct {
                Distinct::Tracking(set) => (set.len() as u64, format!("all {} data rows", s.rows)),
                Distinct::Checked { values, rows } => {
                    (*values, format!("the first {rows} data rows"))
                }
                Distinct::No => (0, String::new()),
            };
            if c.header == Header::Other && values >= MIN_ID_VALUES {
                findings.push(Finding::new(
                    Rule::IdentifierValues,
                    Outcome::Fail,
                    format!("column {col} holds {values} values that are all different and shaped like codes (checked over {checked}): it looks like an identifier"),
                ).at(1, col));
                continue;
            }
            let counts = c.whole_only
                && c.wholes > 0
                && (c.header == Header::Count || (col > 1 && c.header == Header::Other));
            if counts {
                small.extend(c.small.iter().map(|&(row, v)| (row, col, v)));
                zeros.extend(c.zeros.iter().map(|&row| (row, col, 0)));
                small_n += c.small_n;
                zeros_n += c.zeros_n;
            }
        }
        let min = s.min_count;
        cell_findings(
            findings,
            small,
            small_n,
            Rule::SmallCount,
            Outcome::Fail,
            &format!("below the threshold of {min}"),
        );
        cell_findings(
            findings,
            zeros,
            zeros_n,
            Rule::ZeroCount,
            Outcome::Review,
            "a zero, which can disclose that no one in a group has a trait",
        );
        (Some(s.rows), Some(s.header_cells))
    }
}

/// The first [`MAX_CELL_FINDINGS`] cells in row order, then one finding for the rest.
#[allow(clippy::too_many_arguments)]
fn cell_findings(
    findings: &mut Vec<Finding>,
    mut cells: Vec<(u64, u64, u64)>,
    total: u64,
    rule: Rule,
    outcome: Outcome,
    why: &str,
) {
    cells.sort_unstable();
    for &(row, col, _) in cells.iter().take(MAX_CELL_FINDINGS) {
        findings.push(
            Finding::new(
                rule,
                outcome,
                format!("the count in column {col}, row {row}, is {why}"),
            )
            .at(row, col),
        );
    }
    if total > MAX_CELL_FINDINGS as u64 {
        findings.push(Finding::new(
            rule,
            outcome,
            format!("{} more count cells are {why} ({total} in all; the first {MAX_CELL_FINDINGS} are listed)", total - MAX_CELL_FINDINGS as u64),
        ));
    }
}

impl Sink for TableState {
    fn cell(&mut self, record: u64, column: u64, cell: &Cell) {
        let i = column as usize - 1;
        if record == 1 {
            self.header_cells = column;
            if i < MAX_COLUMNS {
                let raw = String::from_utf8_lossy(&cell.bytes);
                let raw = if i == 0 {
                    raw.trim_start_matches('\u{feff}')
                } else {
                    &raw
                };
                let name: String = raw.trim().chars().take(64).collect();
                if i > 0 && code_like(&name) {
                    self.code_names += 1;
                    if self.code_name_first == 0 {
                        self.code_name_first = column;
                    }
                }
                self.columns.push(Column {
                    header: classify_header(&name),
                    whole_only: true,
                    wholes: 0,
                    small: Vec::new(),
                    small_n: 0,
                    zeros: Vec::new(),
                    zeros_n: 0,
                    distinct: Distinct::Tracking(HashSet::new()),
                });
            }
            return;
        }
        let data_row = self.rows + 1;
        let Some(c) = self.columns.get_mut(i) else {
            return;
        };
        let value = match cell.text() {
            Some(t) => t.trim(),
            None if cell.len as usize > MAX_CELL_BYTES => "\u{fffd}long",
            None => "\u{fffd}",
        };
        if value.is_empty() || c.header == Header::Identifier {
            return;
        }
        if c.whole_only {
            match number(value) {
                Number::Whole(v) => {
                    c.wholes += 1;
                    if v == 0 {
                        c.zeros_n += 1;
                        if c.zeros.len() < MAX_CELL_FINDINGS {
                            c.zeros.push(record);
                        }
                    } else if v < self.min_count {
                        c.small_n += 1;
                        if c.small.len() < MAX_CELL_FINDINGS {
                            c.small.push((record, v));
                        }
                    }
                }
                Number::Marker => {}
                Number::Other => {
                    c.whole_only = false;
                    c.small = Vec::new();
                    c.zeros = Vec::new();
                }
            }
        }
        if let Distinct::Tracking(set) = &mut c.distinct {
            if data_row > self.track_rows {
                c.distinct = Distinct::Checked {
                    values: set.len() as u64,
                    rows: self.track_rows,
                };
            } else if !code_like(value) || !set.insert(fnv(value.as_bytes())) {
                c.distinct = Distinct::No;
            }
        }
    }

    fn end_record(&mut self, record: u64, cells: u64, blank: bool) {
        if record == 1 {
            let tracked = self.columns.len().max(1) as u64;
            self.track_rows = (MAX_TRACKED_VALUES / tracked).clamp(1000, DISTINCT_ROWS);
            return;
        }
        if blank {
            return;
        }
        self.rows += 1;
        if cells != self.header_cells {
            self.ragged_n += 1;
            if self.ragged.is_none() {
                self.ragged = Some((record, cells));
            }
        }
    }
}
