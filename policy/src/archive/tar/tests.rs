//! The tar reader against archives from the `tar` crate and hand-made hostile ones, in every
//! chunking; and property tests ("fuzzing") that it never panics and never depends on how the
//! stream was cut.

use proptest::prelude::*;

use super::*;

/// Records what the scanner reports.
#[derive(Default, Debug, PartialEq, Eq)]
pub(crate) struct Collect {
    pub(crate) entries: Vec<(Header, Vec<u8>)>,
    open: bool,
}

impl Sink for Collect {
    type Error = TarError;
    fn entry(&mut self, header: &Header) -> Result<(), TarError> {
        assert!(!self.open, "entry before the previous one ended");
        self.entries.push((header.clone(), Vec::new()));
        self.open = true;
        Ok(())
    }
    fn data(&mut self, bytes: &[u8]) -> Result<(), TarError> {
        assert!(self.open, "data outside an entry");
        self.entries.last_mut().unwrap().1.extend_from_slice(bytes);
        Ok(())
    }
    fn end_entry(&mut self) -> Result<(), TarError> {
        assert!(self.open);
        self.open = false;
        let (h, d) = self.entries.last().unwrap();
        assert_eq!(
            h.size,
            d.len() as u64,
            "an entry ended with the wrong amount of data"
        );
        Ok(())
    }
}

pub(crate) fn scan(bytes: &[u8], chunk: usize) -> Result<Collect, TarError> {
    let mut s = TarScanner::default();
    let mut c = Collect::default();
    for piece in bytes.chunks(chunk.max(1)) {
        s.feed(piece, &mut c)?;
    }
    s.finish()?;
    Ok(c)
}

pub(crate) fn raw_header(path: &[u8], flag: u8, size: u64, mode: u32) -> [u8; 512] {
    ustar_header(path, flag, size, mode)
}

pub(crate) fn fix_checksum(h: &mut [u8; 512]) {
    set_checksum(h)
}

/// Headers and data, padded, with the end-of-archive marker.
pub(crate) fn raw_archive(entries: &[([u8; 512], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, d) in entries {
        out.extend_from_slice(h);
        out.extend_from_slice(d);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn built_by_tar_crate() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let long = format!("{}/deep/file.txt", "d".repeat(150));
    let files: Vec<(String, Vec<u8>)> = vec![
        ("src/main.py".into(), b"print('hello')\n".to_vec()),
        ("empty.txt".into(), Vec::new()),
        ("data/blocks.bin".into(), vec![7u8; 512 * 3]),
        (long, b"long name".to_vec()),
    ];
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    b.append_data(&mut dir, "src/", &[][..]).unwrap();
    for (p, d) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, p, &d[..]).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn reads_the_tar_crates_archives_in_any_chunking() {
    let bytes = built_by_tar_crate();
    let whole = scan(&bytes, bytes.len()).unwrap();
    assert_eq!(whole.entries.len(), 5);
    assert_eq!(whole.entries[0].0.kind, EntryKind::Dir);
    assert_eq!(whole.entries[1].0.path, b"src/main.py");
    assert_eq!(whole.entries[1].1, b"print('hello')\n");
    assert_eq!(whole.entries[3].1.len(), 1536);
    assert!(
        whole.entries[4].0.path.starts_with(&[b'd'; 150]),
        "GNU long names are applied"
    );
    for chunk in [1, 7, 511, 512, 513, 4096] {
        assert_eq!(scan(&bytes, chunk).unwrap(), whole, "chunk {chunk}");
    }
}

#[test]
fn pax_paths_and_sizes_apply() {
    let path = format!("{}/x.txt", "p".repeat(120));
    let record = format!("path={path}\n");
    let len = record.len() + 4; // "NNN " prefix, three digits
    let pax = format!("{len} {record}");
    assert_eq!(pax.len(), len);
    let pax_h = raw_header(b"PaxHeaders/x", b'x', pax.len() as u64, 0o644);
    let file_h = raw_header(b"short", b'0', 3, 0o644);
    let bytes = raw_archive(&[(pax_h, pax.as_bytes()), (file_h, b"abc")]);
    let c = scan(&bytes, 100).unwrap();
    assert_eq!(c.entries.len(), 1);
    assert_eq!(c.entries[0].0.path, path.as_bytes());
}

#[test]
fn entry_headers_round_trip_long_paths_and_sizes() {
    let long = format!("{}/{}", "a".repeat(200), "b".repeat(100));
    for (path, size) in [("short.txt", 3u64), (long.as_str(), 5)] {
        let mut bytes = entry_header(path, EntryKind::File, size, 0o444);
        bytes.extend(std::iter::repeat_n(b'z', size as usize));
        bytes.extend(std::iter::repeat_n(0u8, padding(size)));
        bytes.extend_from_slice(&END);
        let c = scan(&bytes, 77).unwrap();
        assert_eq!(c.entries.len(), 1);
        assert_eq!(c.entries[0].0.path, path.as_bytes());
        assert_eq!(c.entries[0].0.mode, 0o444);
        assert_eq!(c.entries[0].1.len() as u64, size);
    }
    // Records whose length crosses a power of ten count themselves right.
    for n in [1, 90, 91, 92, 995, 996, 997, 998] {
        let r = pax_record("path", &"x".repeat(n));
        assert_eq!(
            r.split(' ').next().unwrap().parse::<usize>().unwrap(),
            r.len(),
            "{n}"
        );
    }
}

#[test]
fn refuses_broken_streams() {
    let good = raw_archive(&[(raw_header(b"a.txt", b'0', 5, 0o644), b"hello")]);
    scan(&good, 64).unwrap();
    // Cut anywhere before the end marker: truncated.
    for cut in [0, 100, 512, 600, 1024] {
        let e = scan(&good[..cut], 64).unwrap_err();
        assert!(
            matches!(e, TarError::Truncated { .. }),
            "cut at {cut}: {e:?}"
        );
    }
    // Damaged header.
    let mut bad = good.clone();
    bad[10] ^= 1;
    assert!(matches!(
        scan(&bad, 64).unwrap_err(),
        TarError::Corrupt { .. }
    ));
    // Garbage.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    assert!(matches!(
        scan(&garbage, 64).unwrap_err(),
        TarError::Corrupt { .. }
    ));
    // Something hidden after the end marker.
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"secret");
    assert!(matches!(
        scan(&trailing, 64).unwrap_err(),
        TarError::Corrupt { .. }
    ));
    // Zero padding after the end is fine (tar pads to 10240-byte records).
    let mut padded = good.clone();
    padded.resize(10240, 0);
    scan(&padded, 333).unwrap();
    // A symlink that claims data.
    let link = raw_archive(&[(raw_header(b"l", b'2', 10, 0o777), b"0123456789")]);
    assert!(matches!(
        scan(&link, 64).unwrap_err(),
        TarError::Corrupt { .. }
    ));
    // Base-256 sizes parse; absurd ones are simply a long entry that is truncated.
    let mut big = raw_header(b"big", b'0', 0, 0o644);
    big[124..136].fill(0);
    big[124] = 0x80;
    big[135] = 3;
    fix_checksum(&mut big);
    let bytes = raw_archive(&[(big, b"abc")]);
    assert_eq!(scan(&bytes, 64).unwrap().entries[0].1, b"abc");
}

fn arb_entry() -> impl Strategy<Value = (Vec<u8>, u8, Vec<u8>, u32)> {
    (
        proptest::collection::vec(
            prop_oneof![
                Just(b'a'),
                Just(b'/'),
                Just(b'.'),
                Just(0u8),
                Just(0xffu8),
                Just(b'\n')
            ],
            0..12,
        ),
        prop_oneof![
            Just(b'0'),
            Just(b'5'),
            Just(b'2'),
            Just(b'1'),
            Just(b'3'),
            Just(b'6'),
            Just(b'x'),
            Just(b'L'),
            Just(b'S')
        ],
        proptest::collection::vec(any::<u8>(), 0..700),
        prop_oneof![Just(0o644u32), Just(0o4755), Just(0o1777), Just(0o755)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random bytes: an answer, never a panic.
    #[test]
    fn never_panics_on_noise(bytes in proptest::collection::vec(any::<u8>(), 0..3000), chunk in 1..600usize) {
        let _ = scan(&bytes, chunk);
    }

    /// Generated headers of every type, with mutations: the same answer in every chunking, and
    /// whatever is accepted by the rules is a safe relative path to a file or directory.
    #[test]
    fn headers_of_every_kind(entries in proptest::collection::vec(arb_entry(), 1..6),
                             flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
                             chunk in 1..1100usize) {
        let headers: Vec<([u8; 512], Vec<u8>)> = entries.iter().map(|(p, f, d, m)| {
            let size = if matches!(f, b'0' | b'x' | b'L' | b'S') { d.len() as u64 } else { 0 };
            let data = if size == 0 { Vec::new() } else { d.clone() };
            (raw_header(p, *f, size, *m), data)
        }).collect();
        let refs: Vec<([u8; 512], &[u8])> = headers.iter().map(|(h, d)| (*h, &d[..])).collect();
        let mut bytes = raw_archive(&refs);
        for (at, x) in flips {
            let len = bytes.len();
            bytes[at % len] ^= x;
        }
        let whole = scan(&bytes, bytes.len());
        let pieces = scan(&bytes, chunk);
        prop_assert_eq!(&whole, &pieces);
        if let Ok(c) = whole {
            let mut v = crate::archive::rules::Validator::new(Default::default());
            for (h, _) in &c.entries {
                match v.check_entry(h) {
                    Ok(Some(a)) => {
                        prop_assert!(matches!(a.kind, EntryKind::File | EntryKind::Dir));
                        prop_assert!(!a.path.starts_with('/'));
                        prop_assert!(a.path.split('/').all(|p| !p.is_empty() && p != "." && p != ".."));
                        prop_assert!(!a.path.contains('\0') && !a.path.chars().any(char::is_control));
                        prop_assert_eq!(a.mode & 0o7000, 0);
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
    }
}
