//! What the gateway hands a run's launcher on its standard input: the command and the run's
//! own environment, length-prefixed (no separator can be confused with an argument).
//!
//! `VRE-LAUNCH 1\n`, then the number of arguments and of environment entries (`KEY=value`),
//! then each of them as its length and its bytes; numbers are 4 bytes, big-endian. Shared by
//! the launcher (which reads it) and the backend (which writes it).

#![allow(dead_code)]

use std::io::Read;

pub(crate) const MAGIC: &[u8] = b"VRE-LAUNCH 1\n";
/// The most a payload may hold, all strings together (Linux's own limit is about 2 MiB).
pub(crate) const MAX_BYTES: usize = 1 << 20;
pub(crate) const MAX_ITEMS: usize = 1 << 16;

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Launch {
    pub(crate) args: Vec<Vec<u8>>,
    pub(crate) env: Vec<Vec<u8>>,
}

pub(crate) fn encode(args: &[&[u8]], env: &[&[u8]]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(args.len() as u32).to_be_bytes());
    out.extend_from_slice(&(env.len() as u32).to_be_bytes());
    for s in args.iter().chain(env) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s);
    }
    out
}

fn number(r: &mut impl Read) -> std::io::Result<usize> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b) as usize)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads exactly one payload, nothing past it.
pub(crate) fn read(r: &mut impl Read) -> std::io::Result<Launch> {
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(invalid("not a launch payload"));
    }
    let nargs = number(r)?;
    let nenv = number(r)?;
    if nargs == 0 || nargs + nenv > MAX_ITEMS {
        return Err(invalid("no command, or too many items"));
    }
    let mut total = 0usize;
    let mut items = Vec::with_capacity(nargs + nenv);
    for _ in 0..nargs + nenv {
        let len = number(r)?;
        total += len;
        if total > MAX_BYTES {
            return Err(invalid("the command is too long"));
        }
        let mut s = vec![0u8; len];
        r.read_exact(&mut s)?;
        if s.contains(&0) {
            return Err(invalid("a NUL byte in the command"));
        }
        items.push(s);
    }
    let env = items.split_off(nargs);
    if env
        .iter()
        .any(|e| !e.contains(&b'=') || e.first() == Some(&b'='))
    {
        return Err(invalid("an environment entry is not KEY=value"));
    }
    Ok(Launch { args: items, env })
}
