//! A strict, streaming tar reader: ustar, GNU long names and pax extended headers.
//!
//! [`TarScanner::feed`] takes bytes in chunks of any size and reports each entry's header, its
//! data and its end to a [`Sink`]. Unlike lenient readers it refuses what it does not
//! understand: a bad header checksum, a size that does not parse, an unknown pax record that
//! changes the layout (sparse files), a stream that ends before the end-of-archive marker, or
//! non-zero bytes after it. Header fields are never trusted beyond what is parsed here.

/// The type of an entry, from its type flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// Anything else (GNU sparse, volume labels, vendor types…): the byte of the flag.
    Other(u8),
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "directory",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "hardlink",
            EntryKind::CharDevice => "character device",
            EntryKind::BlockDevice => "block device",
            EntryKind::Fifo => "fifo",
            EntryKind::Other(_) => "unknown entry type",
        }
    }
}

/// One entry's header, after long names and pax records are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The path as raw bytes (tar paths are bytes; the rules decide what is acceptable).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    pub size: u64,
    /// Permission and special bits (the low 12 bits of the mode field).
    pub mode: u32,
    /// Link target, for links.
    pub link: Vec<u8>,
    /// Offset of the header block in the uncompressed stream.
    pub offset: u64,
}

impl Header {
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path)
            .escape_debug()
            .to_string()
    }
}

/// Why a stream is not a tar archive this reader accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    #[error("the archive ends early (at byte {offset}): {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("the archive is corrupt at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
}

/// What the reader reports, in order: `entry`, then `data` zero or more times, then
/// `end_entry`, for each entry. A sink's error stops the scan and is returned as it is.
pub trait Sink {
    type Error: From<TarError>;
    fn entry(&mut self, header: &Header) -> Result<(), Self::Error>;
    fn data(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
    fn end_entry(&mut self) -> Result<(), Self::Error>;
}

const BLOCK: usize = 512;
/// Long names and pax headers are kept in memory; they are small in honest archives.
const MAX_META: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Meta {
    LongName,
    LongLink,
    Pax,
    GlobalPax,
}

#[derive(Debug)]
enum Phase {
    Header,
    Data {
        remaining: u64,
        padding: u64,
    },
    Meta {
        which: Meta,
        remaining: u64,
        padding: u64,
    },
    /// One zero block seen; only zeros may follow.
    End,
}

/// The streaming reader. Feed it with [`feed`](TarScanner::feed), then call
/// [`finish`](TarScanner::finish) at the end of the stream.
pub struct TarScanner {
    phase: Phase,
    block: Vec<u8>,
    meta: Vec<u8>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_size: Option<u64>,
    offset: u64,
    entries: u64,
}

impl Default for TarScanner {
    fn default() -> Self {
        TarScanner {
            phase: Phase::Header,
            block: Vec::with_capacity(BLOCK),
            meta: Vec::new(),
            long_name: None,
            long_link: None,
            pax_path: None,
            pax_link: None,
            pax_size: None,
            offset: 0,
            entries: 0,
        }
    }
}

fn corrupt(offset: u64, what: impl Into<String>) -> TarError {
    TarError::Corrupt {
        offset,
        what: what.into(),
    }
}

impl TarScanner {
    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Entries reported so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn feed<S: Sink>(&mut self, mut input: &[u8], sink: &mut S) -> Result<(), S::Error> {
        while !input.is_empty() {
            match &mut self.phase {
                Phase::Data { remaining, padding } => {
                    if *remaining > 0 {
                        let n = (*remaining).min(input.len() as u64) as usize;
                        *remaining -= n as u64;
                        let (now, rest) = input.split_at(n);
                        self.offset += n as u64;
                        input = rest;
                        sink.data(now)?;
                        if let Phase::Data { remaining: 0, .. } = self.phase {
                            sink.end_entry()?;
                        }
                    } else if *padding > 0 {
                        let n = (*padding).min(input.len() as u64) as usize;
                        *padding -= n as u64;
                        self.offset += n as u64;
                        input = &input[n..];
                    }
                    if let Phase::Data {
                        remaining: 0,
                        padding: 0,
                    } = self.phase
                    {
                        self.phase = Phase::Header;
                    }
                }
                Phase::Meta {
                    which,
                    remaining,
                    padding,
                } => {
                    let which = *which;
                    if *remaining > 0 {
                        let n = (*remaining).min(input.len() as u64) as usize;
                        *remaining -= n as u64;
                        self.meta.extend_from_slice(&input[..n]);
                        self.offset += n as u64;
                        input = &input[n..];
                    } else if *padding > 0 {
                        let n = (*padding).min(input.len() as u64) as usize;
                        *padding -= n as u64;
                        self.offset += n as u64;
                        input = &input[n..];
                    }
                    if let Phase::Meta {
                        remaining: 0,
                        padding: 0,
                        ..
                    } = self.phase
                    {
                        self.apply_meta(which)?;
                        self.phase = Phase::Header;
                    }
                }
                Phase::Header | Phase::End => {
                    let need = BLOCK - self.block.len();
                    let n = need.min(input.len());
                    self.block.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if self.block.len() == BLOCK {
                        let block = std::mem::take(&mut self.block);
                        let at = self.offset;
                        self.offset += BLOCK as u64;
                        let result = self.header_block(&block, at, sink);
                        self.block = block;
                        self.block.clear();
                        result?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Call at the end of the stream: anything but a complete archive is an error.
    pub fn finish(&self) -> Result<(), TarError> {
        match self.phase {
            Phase::End if self.block.is_empty() || self.block.iter().all(|b| *b == 0) => Ok(()),
            Phase::End => Err(corrupt(self.offset, "data after the end of the archive")),
            Phase::Header if self.block.is_empty() && self.offset == 0 => {
                Err(TarError::Truncated {
                    offset: 0,
                    what: "the stream is empty",
                })
            }
            Phase::Header => Err(TarError::Truncated {
                offset: self.offset,
                what: "no end-of-archive marker",
            }),
            Phase::Data { .. } => Err(TarError::Truncated {
                offset: self.offset,
                what: "inside an entry's data",
            }),
            Phase::Meta { .. } => Err(TarError::Truncated {
                offset: self.offset,
                what: "inside an extended header",
            }),
        }
    }

    fn header_block<S: Sink>(
        &mut self,
        block: &[u8],
        at: u64,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        if matches!(self.phase, Phase::End) {
            if block.iter().any(|b| *b != 0) {
                return Err(corrupt(at, "data after the end of the archive").into());
            }
            return Ok(());
        }
        if block.iter().all(|b| *b == 0) {
            if self.long_name.is_some() || self.pax_path.is_some() || self.pax_size.is_some() {
                return Err(corrupt(at, "an extended header with no entry after it").into());
            }
            self.phase = Phase::End;
            return Ok(());
        }
        let stored = parse_octal(&block[148..156])
            .ok_or_else(|| corrupt(at, "the header checksum is not a number"))?;
        let sum: u64 = block
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(*b)
                }
            })
            .sum();
        if stored != sum {
            return Err(corrupt(
                at,
                "the header checksum does not match (not a tar archive, or damaged)",
            )
            .into());
        }
        let flag = block[156];
        let size = match self.pax_size.take() {
            Some(s) => s,
            None => parse_number(&block[124..136])
                .ok_or_else(|| corrupt(at, "the entry size is not a number"))?,
        };
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let meta = match flag {
            b'L' => Some(Meta::LongName),
            b'K' => Some(Meta::LongLink),
            b'x' => Some(Meta::Pax),
            b'g' => Some(Meta::GlobalPax),
            _ => None,
        };
        if let Some(which) = meta {
            if size > MAX_META {
                return Err(corrupt(
                    at,
                    format!("an extended header of {size} bytes is larger than {MAX_META}"),
                )
                .into());
            }
            self.meta.clear();
            self.phase = Phase::Meta {
                which,
                remaining: size,
                padding,
            };
            if size == 0 {
                self.apply_meta(which)?;
                self.phase = Phase::Header;
            }
            return Ok(());
        }
        let kind = match flag {
            b'0' | 0 | b'7' => EntryKind::File,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' => EntryKind::Dir,
            b'6' => EntryKind::Fifo,
            other => EntryKind::Other(other),
        };
        let ustar = &block[257..263] == b"ustar\0";
        let path = match (self.pax_path.take(), self.long_name.take()) {
            (Some(p), _) => p,
            (None, Some(p)) => p,
            (None, None) => {
                let name = cstr(&block[0..100]);
                let prefix = if ustar {
                    cstr(&block[345..500])
                } else {
                    &[][..]
                };
                if prefix.is_empty() {
                    name.to_vec()
                } else {
                    let mut p = prefix.to_vec();
                    p.push(b'/');
                    p.extend_from_slice(name);
                    p
                }
            }
        };
        let link = match (self.pax_link.take(), self.long_link.take()) {
            (Some(l), _) | (None, Some(l)) => l,
            (None, None) => cstr(&block[157..257]).to_vec(),
        };
        let mode = parse_number(&block[100..108])
            .ok_or_else(|| corrupt(at, "the entry mode is not a number"))?;
        // Links, devices, fifos and directories carry no data, whatever their size field says;
        // GNU tar writes 0 there. A non-zero size on them would desynchronise a lenient reader,
        // so it is refused here.
        let carries_data = matches!(kind, EntryKind::File | EntryKind::Other(_));
        if !carries_data && size != 0 {
            return Err(
                corrupt(at, format!("a {} with {size} bytes of data", kind.as_str())).into(),
            );
        }
        let header = Header {
            path,
            kind,
            size,
            mode: (mode & 0o7777) as u32,
            link,
            offset: at,
        };
        self.entries += 1;
        sink.entry(&header)?;
        if size == 0 {
            sink.end_entry()?;
            self.phase = Phase::Header;
        } else {
            self.phase = Phase::Data {
                remaining: size,
                padding,
            };
        }
        Ok(())
    }

    fn apply_meta(&mut self, which: Meta) -> Result<(), TarError> {
        let at = self.offset;
        let meta = std::mem::take(&mut self.meta);
        match which {
            Meta::LongName => self.long_name = Some(cstr(&meta).to_vec()),
            Meta::LongLink => self.long_link = Some(cstr(&meta).to_vec()),
            Meta::GlobalPax => {
                // Global records set defaults for every later entry; one that changes paths or
                // sizes would make entries mean something else than their headers say.
                for (key, _) in pax_records(&meta, at)? {
                    if key == b"path"
                        || key == b"linkpath"
                        || key == b"size"
                        || key.starts_with(b"GNU.sparse")
                    {
                        return Err(corrupt(
                            at,
                            "a global pax header that changes paths or sizes",
                        ));
                    }
                }
            }
            Meta::Pax => {
                for (key, value) in pax_records(&meta, at)? {
                    match key {
                        b"path" => self.pax_path = Some(value.to_vec()),
                        b"linkpath" => self.pax_link = Some(value.to_vec()),
                        b"size" => {
                            let s = std::str::from_utf8(value)
                                .ok()
                                .and_then(|s| s.parse::<u64>().ok())
                                .ok_or_else(|| corrupt(at, "a pax size that is not a number"))?;
                            self.pax_size = Some(s);
                        }
                        k if k.starts_with(b"GNU.sparse") => {
                            return Err(corrupt(at, "sparse files are not accepted"));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

/// One pax record: key and value.
type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// Parses `len key=value\n` records.
fn pax_records(mut data: &[u8], at: u64) -> Result<Vec<PaxRecord<'_>>, TarError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.iter().all(|b| *b == 0) {
            break;
        }
        let space = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| corrupt(at, "a pax record without a length"))?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(at, "a pax record length that is not a number"))?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(corrupt(at, "a pax record with a wrong length"));
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| corrupt(at, "a pax record without `=`"))?;
        out.push((&record[..eq], &record[eq + 1..]));
        data = &data[len..];
    }
    Ok(out)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = cstr(field);
    let s = std::str::from_utf8(s)
        .ok()?
        .trim_matches(|c| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Octal, or GNU base-256 when the high bit of the first byte is set.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut n: u64 = u64::from(field[0] & 0x3f);
        for b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(n);
    }
    parse_octal(field)
}

/// A ustar header block for `name` (at most 100 bytes, taken as they are), with a correct
/// checksum; owner and group 0, time 0.
pub fn ustar_header(name: &[u8], flag: u8, size: u64, mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    h[100..108].copy_from_slice(format!("{:07o}\0", mode & 0o7777777).as_bytes());
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", size & 0o77777777777).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = flag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    set_checksum(&mut h);
    h
}

/// Recomputes a header block's checksum.
pub fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// The header blocks for one entry: a pax header first when the path or size does not fit in
/// ustar fields, then the ustar header.
pub fn entry_header(path: &str, kind: EntryKind, size: u64, mode: u32) -> Vec<u8> {
    let flag = match kind {
        EntryKind::File => b'0',
        EntryKind::Dir => b'5',
        EntryKind::Symlink => b'2',
        EntryKind::Hardlink => b'1',
        EntryKind::CharDevice => b'3',
        EntryKind::BlockDevice => b'4',
        EntryKind::Fifo => b'6',
        EntryKind::Other(f) => f,
    };
    let mut out = Vec::with_capacity(1024);
    let size_fits = size <= 0o77777777777;
    if path.len() > 100 || !size_fits {
        let mut records = String::new();
        if path.len() > 100 {
            records.push_str(&pax_record("path", path));
        }
        if size > 0o77777777777 {
            records.push_str(&pax_record("size", &size.to_string()));
        }
        out.extend_from_slice(&ustar_header(
            b"././@PaxHeader",
            b'x',
            records.len() as u64,
            0o644,
        ));
        out.extend_from_slice(records.as_bytes());
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    let short = if path.len() <= 100 {
        path.as_bytes()
    } else {
        &path.as_bytes()[..100]
    };
    out.extend_from_slice(&ustar_header(
        short,
        flag,
        if size_fits { size } else { 0 },
        mode,
    ));
    out
}

/// `len key=value\n`, where `len` counts itself.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len = len.to_string().len() + body.len();
    }
    format!("{len}{body}")
}

/// Zero padding after `size` bytes of data, up to the next block.
pub fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// The end-of-archive marker.
pub const END: [u8; 1024] = [0u8; 1024];

#[cfg(test)]
mod tests;
