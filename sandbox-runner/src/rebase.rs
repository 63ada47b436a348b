//! Renaming the entries of a tar stream as it passes, without holding any file's data.
//!
//! The engine's archive API names the entries of `/vre/output/a/b` after the last component
//! (`b`, `b/c.csv`); egress names them relative to the output folder (`a/b`, `a/b/c.csv`).
//! [`Rebase`] puts a prefix in front of every entry's name wherever the name is written: the
//! ustar name and prefix fields, a pax `path` record, a GNU long name (`././@LongLink`, type
//! `L`); and in front of a hard link's target (its linkname field, pax `linkpath`, GNU long
//! link `K`), which names another entry of the archive. A symbolic link's target is kept as it
//! is. A name that grows past its field gets a long form of the archive's own kind (GNU for a
//! GNU header, pax otherwise). Entries of every type are kept: those who read the stream judge
//! them. The archive's end-of-archive marker is dropped, so that several archives can be put
//! one after the other with one marker at the end ([`END`]).
//!
//! Data passes through as slices of the chunks it came in; only headers, long names and pax
//! records (at most [`MAX_META`] bytes each) are held.

use bytes::Bytes;

const BLOCK: usize = 512;
/// Long names and pax headers are held in memory; the engine's are a few hundred bytes.
pub(crate) const MAX_META: u64 = 64 * 1024;
/// The end-of-archive marker: two zero blocks.
pub(crate) const END: [u8; 1024] = [0u8; 1024];

/// Pax records: (key, value).
type Records = Vec<(Vec<u8>, Vec<u8>)>;
/// A pax header's block and its records.
type Pax = (Box<[u8; BLOCK]>, Records);

#[derive(Debug)]
enum Phase {
    Header,
    /// Collecting the body of a long name, long link or pax header.
    Meta {
        header: Box<[u8; BLOCK]>,
        remaining: u64,
        padding: u64,
    },
    /// Passing an entry's data and padding through.
    Data {
        remaining: u64,
    },
    /// A zero block was seen: only zeros may follow.
    End,
}

/// One archive's renamer: feed it the archive's chunks, then call [`finish`](Rebase::finish).
pub(crate) struct Rebase {
    /// Put in front of every name (`a/`).
    prefix: Vec<u8>,
    /// What every name in the archive is or starts with (`b`).
    base: Vec<u8>,
    phase: Phase,
    block: Vec<u8>,
    meta: Vec<u8>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    /// The pax header's block and records, for the next entry.
    pax: Option<Pax>,
    offset: u64,
}

fn bad(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

impl Rebase {
    /// The renamer of the archive the engine makes of `path` (relative to the output folder):
    /// its entries are named after `path`'s last component and get the rest in front.
    pub(crate) fn new(path: &str) -> Rebase {
        let (prefix, base) = match path.rsplit_once('/') {
            Some((dir, base)) => (format!("{dir}/"), base),
            None => (String::new(), path),
        };
        Rebase {
            prefix: prefix.into_bytes(),
            base: base.as_bytes().to_vec(),
            phase: Phase::Header,
            block: Vec::with_capacity(BLOCK),
            meta: Vec::new(),
            long_name: None,
            long_link: None,
            pax: None,
            offset: 0,
        }
    }

    /// Takes the next chunk of the archive; what comes out is pushed to `out`.
    pub(crate) fn feed(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) -> std::io::Result<()> {
        let mut at = 0;
        while at < chunk.len() {
            let left = chunk.len() - at;
            match &mut self.phase {
                Phase::Data { remaining } => {
                    let n = (*remaining).min(left as u64) as usize;
                    out.push(chunk.slice(at..at + n));
                    *remaining -= n as u64;
                    at += n;
                    if *remaining == 0 {
                        self.phase = Phase::Header;
                    }
                }
                Phase::Meta {
                    remaining, padding, ..
                } => {
                    if *remaining > 0 {
                        let n = (*remaining).min(left as u64) as usize;
                        self.meta.extend_from_slice(&chunk[at..at + n]);
                        *remaining -= n as u64;
                        at += n;
                    } else {
                        let n = (*padding).min(left as u64) as usize;
                        *padding -= n as u64;
                        at += n;
                    }
                    if let Phase::Meta {
                        remaining: 0,
                        padding: 0,
                        ..
                    } = self.phase
                    {
                        let Phase::Meta { header, .. } =
                            std::mem::replace(&mut self.phase, Phase::Header)
                        else {
                            unreachable!("matched above")
                        };
                        self.meta_done(header, out)?;
                    }
                }
                Phase::Header | Phase::End => {
                    let n = (BLOCK - self.block.len()).min(left);
                    self.block.extend_from_slice(&chunk[at..at + n]);
                    at += n;
                    if self.block.len() == BLOCK {
                        let mut block = Box::new([0u8; BLOCK]);
                        block.copy_from_slice(&self.block);
                        self.block.clear();
                        self.header(block, out)?;
                        self.offset += BLOCK as u64;
                    }
                }
            }
        }
        Ok(())
    }

    /// At the end of the archive: it must have been complete.
    pub(crate) fn finish(&self) -> std::io::Result<()> {
        match self.phase {
            Phase::End if self.block.iter().all(|b| *b == 0) => Ok(()),
            Phase::End => Err(bad("the archive has data after its end")),
            _ => Err(bad(format!(
                "the archive ends early (after {} bytes)",
                self.offset
            ))),
        }
    }

    fn header(&mut self, block: Box<[u8; BLOCK]>, out: &mut Vec<Bytes>) -> std::io::Result<()> {
        let at = self.offset;
        if matches!(self.phase, Phase::End) {
            if block.iter().any(|b| *b != 0) {
                return Err(bad("the archive has data after its end"));
            }
            return Ok(());
        }
        if block.iter().all(|b| *b == 0) {
            if self.long_name.is_some() || self.long_link.is_some() || self.pax.is_some() {
                return Err(bad(format!(
                    "an extended header with no entry after it at byte {at}"
                )));
            }
            self.phase = Phase::End;
            return Ok(());
        }
        if checksum_of(&block) != parse_octal(&block[148..156]) {
            return Err(bad(format!(
                "a header's checksum does not match at byte {at}"
            )));
        }
        let flag = block[156];
        let is_meta = matches!(flag, b'L' | b'K' | b'x' | b'g');
        // A pax header's size is the next entry's, not that of another extended header.
        let size = match if is_meta { None } else { self.pax_size()? } {
            Some(s) => s,
            None => parse_number(&block[124..136])
                .ok_or_else(|| bad(format!("a size that is not a number at byte {at}")))?,
        };
        let padding = padding(size);
        if is_meta {
            if size > MAX_META {
                return Err(bad(format!(
                    "an extended header of {size} bytes at byte {at} (at most {MAX_META})"
                )));
            }
            self.meta.clear();
            self.phase = Phase::Meta {
                header: block,
                remaining: size,
                padding,
            };
            if size == 0 {
                let Phase::Meta { header, .. } = std::mem::replace(&mut self.phase, Phase::Header)
                else {
                    unreachable!("set above")
                };
                self.meta_done(header, out)?;
            }
            return Ok(());
        }
        self.entry(block, at, out)?;
        if size + padding > 0 {
            self.phase = Phase::Data {
                remaining: size + padding,
            };
        }
        Ok(())
    }

    /// The size a pending pax header gives the next entry.
    fn pax_size(&self) -> std::io::Result<Option<u64>> {
        let Some((_, records)) = &self.pax else {
            return Ok(None);
        };
        match records.iter().rev().find(|(k, _)| k == b"size") {
            None => Ok(None),
            Some((_, v)) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| bad("a pax size that is not a number")),
        }
    }

    fn meta_done(&mut self, header: Box<[u8; BLOCK]>, out: &mut Vec<Bytes>) -> std::io::Result<()> {
        let meta = std::mem::take(&mut self.meta);
        match header[156] {
            b'L' => self.long_name = Some(cstr(&meta).to_vec()),
            b'K' => self.long_link = Some(cstr(&meta).to_vec()),
            b'x' => self.pax = Some((header, pax_records(&meta)?)),
            // Global records are passed on as they are.
            _ => {
                out.push(Bytes::copy_from_slice(&header[..]));
                let mut body = meta;
                body.resize(body.len() + padding(body.len() as u64) as usize, 0);
                out.push(Bytes::from(body));
            }
        }
        Ok(())
    }

    /// `name` with the prefix in front, once it is checked to be in the archive's folder.
    fn renamed(&self, name: &[u8], what: &str) -> std::io::Result<Vec<u8>> {
        let inside = name
            .strip_prefix(self.base.as_slice())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"));
        if !inside {
            return Err(bad(format!(
                "the engine's archive of `{}` has {what} `{}` outside it",
                String::from_utf8_lossy(&self.base),
                String::from_utf8_lossy(name)
            )));
        }
        let mut renamed = self.prefix.clone();
        renamed.extend_from_slice(name);
        Ok(renamed)
    }

    /// Renames one entry's header (and the long names and pax records before it) and pushes
    /// them out.
    fn entry(
        &mut self,
        mut block: Box<[u8; BLOCK]>,
        at: u64,
        out: &mut Vec<Bytes>,
    ) -> std::io::Result<()> {
        let gnu = &block[257..265] == b"ustar  \0";
        let posix = &block[257..263] == b"ustar\0";
        let mut pax = self.pax.take();
        let long_name = self.long_name.take();
        let long_link = self.long_link.take();
        let pax_value = |pax: &Option<Pax>, key: &[u8]| {
            pax.as_ref().and_then(|(_, r)| {
                r.iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            })
        };

        // The name, from where it is written: pax, GNU long name, then the header's fields.
        let name = match (pax_value(&pax, b"path"), &long_name) {
            (Some(p), _) => p,
            (None, Some(l)) => l.clone(),
            (None, None) => {
                let name = cstr(&block[0..100]);
                let prefix = if posix {
                    cstr(&block[345..500])
                } else {
                    &[][..]
                };
                if prefix.is_empty() {
                    name.to_vec()
                } else {
                    [prefix, b"/", name].concat()
                }
            }
        };
        if name.is_empty() {
            return Err(bad(format!("an entry without a name at byte {at}")));
        }
        let new_name = self.renamed(&name, "the entry")?;
        let mut new_long_name = None;
        // The header's own fields: the whole name when it fits, else its start.
        let fits = fit_ustar(&new_name, posix);
        block[0..100].fill(0);
        if posix {
            block[345..500].fill(0);
        }
        match fits {
            Some((prefix, name)) => {
                block[..name.len()].copy_from_slice(name);
                block[345..345 + prefix.len()].copy_from_slice(prefix);
            }
            None => block[..100].copy_from_slice(&new_name[..100]),
        }
        if pax_value(&pax, b"path").is_some() {
            set_record(&mut pax, b"path", &new_name);
        } else if long_name.is_some() || (fits.is_none() && gnu) {
            new_long_name = Some(new_name.clone());
        } else if fits.is_none() {
            set_record(&mut pax, b"path", &new_name);
        }

        // A hard link's target is another entry of the archive: renamed alike.
        let mut new_long_link = long_link.clone();
        if block[156] == b'1' {
            let link = match (pax_value(&pax, b"linkpath"), &long_link) {
                (Some(l), _) => l,
                (None, Some(l)) => l.clone(),
                (None, None) => cstr(&block[157..257]).to_vec(),
            };
            let new_link = self.renamed(&link, "a hard link to")?;
            block[157..257].fill(0);
            let n = new_link.len().min(100);
            block[157..157 + n].copy_from_slice(&new_link[..n]);
            if pax_value(&pax, b"linkpath").is_some() {
                set_record(&mut pax, b"linkpath", &new_link);
            } else if long_link.is_some() || (new_link.len() > 100 && gnu) {
                new_long_link = Some(new_link);
            } else if new_link.len() > 100 {
                set_record(&mut pax, b"linkpath", &new_link);
            }
        }

        if let Some(name) = new_long_name {
            push_meta(
                out,
                gnu_header(b'L', name.len() as u64 + 1),
                &[&name[..], b"\0"],
            );
        }
        if let Some(link) = new_long_link {
            push_meta(
                out,
                gnu_header(b'K', link.len() as u64 + 1),
                &[&link[..], b"\0"],
            );
        }
        if let Some((mut header, records)) = pax {
            let body: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            set_octal(&mut header[124..136], body.len() as u64);
            set_checksum(&mut header);
            push_meta(out, header, &[&body]);
        }
        set_checksum(&mut block);
        out.push(Bytes::copy_from_slice(&block[..]));
        Ok(())
    }
}

/// A name's place in a ustar header: (prefix, name), split at a `/` for a POSIX header; None
/// when it does not fit.
fn fit_ustar(path: &[u8], posix: bool) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    if !posix || path.len() > 256 {
        return None;
    }
    // The name part is what follows the first `/` that leaves it at most 100 bytes.
    path.iter()
        .enumerate()
        .filter(|(i, b)| **b == b'/' && *i <= 155 && path.len() - i - 1 <= 100 && *i > 0)
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(_, name)| !name.is_empty())
}

/// Sets (or adds) a pax record, making a pax header when there is none.
fn set_record(pax: &mut Option<Pax>, key: &[u8], value: &[u8]) {
    let (_, records) = pax.get_or_insert_with(|| (Box::new(pax_header()), Vec::new()));
    records.retain(|(k, _)| k != key);
    records.push((key.to_vec(), value.to_vec()));
}

fn push_meta(out: &mut Vec<Bytes>, header: Box<[u8; BLOCK]>, body: &[&[u8]]) {
    out.push(Bytes::copy_from_slice(&header[..]));
    let mut b: Vec<u8> = body.concat();
    b.resize(b.len() + padding(b.len() as u64) as usize, 0);
    out.push(Bytes::from(b));
}

/// A header for a pax extended header made here.
fn pax_header() -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..14].copy_from_slice(b"././@PaxHeader");
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'x';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h
}

/// A GNU long name (`L`) or long link (`K`) header for a body of `size` bytes.
fn gnu_header(flag: u8, size: u64) -> Box<[u8; BLOCK]> {
    let mut h = Box::new([0u8; BLOCK]);
    h[..13].copy_from_slice(b"././@LongLink");
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = flag;
    h[257..265].copy_from_slice(b"ustar  \0");
    set_octal(&mut h[124..136], size);
    set_checksum(&mut h);
    h
}

fn set_octal(field: &mut [u8], n: u64) {
    let s = format!("{:0width$o}\0", n, width = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

fn checksum_of(h: &[u8; BLOCK]) -> Option<u64> {
    Some(
        h.iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(*b)
                }
            })
            .sum(),
    )
}

fn set_checksum(h: &mut [u8; BLOCK]) {
    let sum = checksum_of(h).unwrap_or_default();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// `len key=value\n`, where `len` counts itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body_len + 1;
    while len.to_string().len() + body_len != len {
        len = len.to_string().len() + body_len;
    }
    let mut r = len.to_string().into_bytes();
    r.push(b' ');
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn pax_records(mut data: &[u8]) -> std::io::Result<Records> {
    let mut out = Vec::new();
    while !data.is_empty() && !data.iter().all(|b| *b == 0) {
        let space = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("a pax record without a length"))?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("a pax record length that is not a number"))?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad("a pax record with a wrong length"));
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| bad("a pax record without `=`"))?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(cstr(field))
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
            return None;
        }
        let mut n = u64::from(field[0] & 0x3f);
        for b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(n);
    }
    parse_octal(field)
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

#[cfg(test)]
mod tests;
