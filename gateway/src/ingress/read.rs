//! Reading one file out of a stored archive, for reviewers.

use std::path::PathBuf;

use policy::archive::rules::{Rule, Violation};
use policy::archive::tar::{EntryKind, Header, Sink};

use crate::ingress::unpack::Unpacker;

/// Reads one file out of a stored archive (for reviewers). Returns `None` when the archive has
/// no such file, `Err` when it is larger than `max`.
pub fn read_file(
    blob: PathBuf,
    wanted: String,
    max: u64,
) -> anyhow::Result<Option<Result<Vec<u8>, u64>>> {
    use std::io::Read;
    struct Find {
        wanted: String,
        max: u64,
        active: bool,
        found: Option<Result<Vec<u8>, u64>>,
    }
    impl Sink for Find {
        type Error = Violation;
        fn entry(&mut self, h: &Header) -> Result<(), Violation> {
            let p = String::from_utf8_lossy(&h.path);
            let p = p.trim_start_matches("./").trim_end_matches('/');
            self.active = h.kind == EntryKind::File && p == self.wanted && self.found.is_none();
            if self.active {
                self.found = Some(if h.size > self.max {
                    Err(h.size)
                } else {
                    Ok(Vec::with_capacity(h.size as usize))
                });
                if h.size > self.max {
                    self.active = false;
                }
            }
            Ok(())
        }
        fn data(&mut self, bytes: &[u8]) -> Result<(), Violation> {
            if self.active {
                if let Some(Ok(v)) = &mut self.found {
                    v.extend_from_slice(bytes);
                }
            }
            Ok(())
        }
        fn end_entry(&mut self) -> Result<(), Violation> {
            if self.active {
                self.active = false;
                // Found: an error is how a sink stops the reader; the caller knows it is not one.
                return Err(Violation {
                    rule: Rule::Corrupt,
                    entry: None,
                    message: "stop: found".into(),
                });
            }
            Ok(())
        }
    }
    let mut f = std::fs::File::open(&blob)?;
    let mut u = Unpacker::default();
    let mut sink = Find {
        wanted,
        max,
        active: false,
        found: None,
    };
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        match u.feed(&buf[..n], &mut sink, |_, _| Ok(())) {
            Ok(()) => {}
            Err(_) if sink.found.is_some() => break,
            Err(e) => anyhow::bail!("the stored archive does not read back: {e}"),
        }
        if matches!(sink.found, Some(Err(_))) {
            break;
        }
    }
    Ok(sink.found)
}
