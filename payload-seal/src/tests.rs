//! The sealed payload against the `age` crate and Debian's `age` command (a missing `age`
//! skips its checks with a note, unless `VRE_TEST_REQUIRE_TOOLS=1`): whole files, continued
//! streams, the header, the reader, the stored keys.

use std::io::Cursor;
use std::process::Command;

use age::secrecy::ExposeSecret;

use super::*;

/// Deterministic bytes that differ from chunk to chunk.
fn plaintext(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An identity, its recipient, and its identity file's text.
fn identity() -> (age::x25519::Identity, String, String) {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!("{}\n", id.to_string().expose_secret());
    (id, recipient, text)
}

/// Feeds `plain` to `sealer` in writes of the sizes `pieces` (cycled), checking what it
/// holds back and hands out after each.
fn feed(sealer: &mut ChunkSealer, plain: &[u8], pieces: &[usize], file: &mut Vec<u8>) {
    let mut rest = plain;
    for &n in pieces.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, more) = rest.split_at(n.min(rest.len()));
        sealer
            .write(piece, &mut |b: &[u8]| {
                assert_eq!(b.len() % SEALED_CHUNK, 0, "whole chunks only");
                file.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        rest = more;
        assert!((1..=CHUNK).contains(&sealer.held().len()));
    }
}

/// The age file of `plain` for `recipient`, sealed in writes of the sizes `pieces`.
fn age_file(keys: &PayloadKeys, recipient: &str, plain: &[u8], pieces: &[usize]) -> Vec<u8> {
    let mut file = keys.header(recipient).unwrap();
    file.extend_from_slice(keys.nonce());
    let mut sealer = ChunkSealer::new(keys.clone(), 0, Vec::new());
    feed(&mut sealer, plain, pieces, &mut file);
    sealer
        .finish(&mut |b: &[u8]| {
            file.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
    file
}

fn age_crate_decrypts(file: &[u8], id: &age::x25519::Identity) -> Vec<u8> {
    let decryptor = age::Decryptor::new(file).unwrap();
    let mut reader = decryptor
        .decrypt(std::iter::once(id as &dyn age::Identity))
        .unwrap();
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).unwrap();
    plain
}

/// Whether Debian's `age` runs; a note, or a failure when `VRE_TEST_REQUIRE_TOOLS=1`.
fn have_age_cli() -> bool {
    let runs = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        assert!(
            std::env::var("VRE_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "`age` is not installed and VRE_TEST_REQUIRE_TOOLS=1"
        );
        eprintln!("note: `age` is not installed: the age command's checks are skipped");
    }
    runs
}

fn age_cli_decrypts(dir: &std::path::Path, file: &[u8], identity_text: &str) -> Vec<u8> {
    let key = dir.join("key.txt");
    let path = dir.join("p.age");
    std::fs::write(&key, identity_text).unwrap();
    std::fs::write(&path, file).unwrap();
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `file` decrypts to `plain` with the `age` crate, and with the `age` command in `cli_dir`
/// when given.
fn assert_age_decrypts(
    file: &[u8],
    plain: &[u8],
    id: &age::x25519::Identity,
    identity_text: &str,
    cli_dir: Option<&std::path::Path>,
    what: &str,
) {
    assert!(age_crate_decrypts(file, id) == plain, "age crate, {what}");
    if let Some(dir) = cli_dir {
        assert!(
            age_cli_decrypts(dir, file, identity_text) == plain,
            "age command, {what}"
        );
    }
}

const LENGTHS: [usize; 7] = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5];

#[test]
fn pieces_make_an_age_file_that_age_decrypts() {
    let cli = have_age_cli();
    let tmp = tempfile::tempdir().unwrap();
    let (id, recipient, text) = identity();
    for len in LENGTHS {
        let keys = PayloadKeys::generate();
        let plain = plaintext(len);
        let file = age_file(
            &keys,
            &recipient,
            &plain,
            &[1, 7, CHUNK - 3, 2 * CHUNK + 11],
        );
        let chunks = len.div_ceil(CHUNK).max(1);
        assert_eq!(
            file.len() as u64,
            PREFIX_LEN + (len + chunks * TAG_LEN) as u64,
            "{len}"
        );
        assert_eq!(&file[HEADER_LEN..PREFIX_LEN as usize], keys.nonce());
        let cli_dir = cli.then_some(tmp.path());
        assert_age_decrypts(&file, &plain, &id, &text, cli_dir, &format!("{len} bytes"));
    }
}

#[test]
fn a_stream_continued_from_its_parts_decrypts_whole() {
    let cli = have_age_cli();
    let tmp = tempfile::tempdir().unwrap();
    let (id, recipient, text) = identity();
    let master = [7u8; 32];
    let plain = plaintext(5 * CHUNK + 123);
    for split in [1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 4 * CHUNK + 9] {
        // At request time: a payload begun, its keys and held tail stored aside.
        let keys = PayloadKeys::generate();
        let stored_keys = seal_keys(&master, "round 1", &keys);
        let mut payload = Vec::new();
        let mut sealer = ChunkSealer::new(keys.clone(), 0, Vec::new());
        feed(&mut sealer, &plain[..split], &[4096, 999], &mut payload);
        let (counter, held) = sealer.into_parts();
        assert_eq!(counter as usize, (split - 1) / CHUNK, "{split}");
        assert_eq!(payload.len(), counter as usize * SEALED_CHUNK);
        let stored_held = keys.seal_chunk(counter, false, &held);

        // At approval: everything reopened, continued and ended.
        let keys = open_keys(&master, "round 1", &stored_keys).unwrap();
        let held_again = keys.open_chunk(counter, false, &stored_held).unwrap();
        assert_eq!(held_again, held);
        let mut sealer = ChunkSealer::new(keys.clone(), counter, held_again);
        feed(&mut sealer, &plain[split..], &[CHUNK + 17], &mut payload);
        sealer
            .finish(&mut |b: &[u8]| {
                payload.extend_from_slice(b);
                Ok(())
            })
            .unwrap();

        let mut file = keys.header(&recipient).unwrap();
        file.extend_from_slice(keys.nonce());
        file.extend_from_slice(&payload);
        let cli_dir = cli.then_some(tmp.path());
        assert_age_decrypts(
            &file,
            &plain,
            &id,
            &text,
            cli_dir,
            &format!("split at {split}"),
        );
    }
}

#[test]
fn a_continued_stream_never_ends_with_an_empty_chunk() {
    let keys = PayloadKeys::generate();
    let err = ChunkSealer::new(keys.clone(), 3, Vec::new())
        .finish(&mut |_: &[u8]| Ok(()))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    // An empty payload is one empty final chunk.
    let mut out = Vec::new();
    ChunkSealer::new(keys.clone(), 0, Vec::new())
        .finish(&mut |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
    assert_eq!(out, keys.seal_chunk(0, true, &[]));
}

#[test]
fn the_header_has_header_len_bytes_and_takes_x25519_recipients_only() {
    for _ in 0..8 {
        let (_, recipient, _) = identity();
        let header = PayloadKeys::generate().header(&recipient).unwrap();
        assert_eq!(header.len(), HEADER_LEN);
        let text = String::from_utf8(header).unwrap();
        assert!(
            text.starts_with("age-encryption.org/v1\n-> X25519 "),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4, "{text}");
    }
    let refused = [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@example",
        "scrypt",
        "-> scrypt c2FsdA 18",
        "not a key at all",
        "",
        "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX",
        "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t",
        "age1qqqqqqqq",
    ];
    let keys = PayloadKeys::generate();
    for r in refused {
        let why = keys.header(r).unwrap_err();
        assert!(!why.is_empty(), "{r}");
    }
}

/// A quarantined payload as the reader finds it: the space for the header, the nonce,
/// `full` chunks on disk, and the held tail sealed aside.
fn quarantined(keys: &PayloadKeys, plain: &[u8]) -> (Vec<u8>, u64, Vec<u8>) {
    let mut file = vec![0u8; HEADER_LEN];
    file.extend_from_slice(keys.nonce());
    let mut sealer = ChunkSealer::new(keys.clone(), 0, Vec::new());
    feed(&mut sealer, plain, &[300_000], &mut file);
    let (full, held) = sealer.into_parts();
    let seed = keys.seal_chunk(full, false, &held);
    (file, full, seed)
}

fn read_from(
    file: &[u8],
    keys: &PayloadKeys,
    full: u64,
    seed: Option<Vec<u8>>,
    offset: u64,
) -> io::Result<Vec<u8>> {
    let mut reader = PayloadReader::new(Cursor::new(file), keys.clone(), full, seed, offset)?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out)?;
    Ok(out)
}

fn chunk_error(e: &io::Error) -> ChunkError {
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    e.get_ref()
        .and_then(|e| e.downcast_ref::<ChunkError>())
        .unwrap_or_else(|| panic!("not a chunk's error: {e}"))
        .clone()
}

#[test]
fn the_reader_starts_anywhere() {
    let keys = PayloadKeys::generate();
    let plain = plaintext(3 * CHUNK + 1000);
    let (file, full, seed) = quarantined(&keys, &plain);
    assert_eq!(full, 3);
    let end = plain.len() as u64;
    for offset in [
        0,
        1,
        777,
        CHUNK as u64,
        2 * CHUNK as u64,
        3 * CHUNK as u64 + 10,
        end - 1,
        end,
    ] {
        let got = read_from(&file, &keys, full, Some(seed.clone()), offset).unwrap();
        assert!(got == plain[offset as usize..], "offset {offset}");
    }
    let past = read_from(&file, &keys, full, Some(seed.clone()), end + 1).unwrap_err();
    assert_eq!(past.kind(), io::ErrorKind::InvalidInput);

    // Without a seed the payload ends after its full chunks.
    let plain = plaintext(2 * CHUNK);
    let (file, full, _) = quarantined(&keys, &plain[..CHUNK + 1]);
    let mut file = file;
    file.extend_from_slice(&keys.seal_chunk(1, false, &plain[CHUNK..]));
    for offset in [0, CHUNK as u64 + 3, 2 * CHUNK as u64] {
        let got = read_from(&file, &keys, full + 1, None, offset).unwrap();
        assert!(got == plain[offset as usize..], "offset {offset}");
    }
}

#[test]
fn the_reader_authenticates_every_chunk_before_its_bytes() {
    let keys = PayloadKeys::generate();
    let plain = plaintext(3 * CHUNK + 1000);
    let (file, full, seed) = quarantined(&keys, &plain);
    let at = |i: usize| PREFIX_LEN as usize + i * SEALED_CHUNK;

    // A flipped bit in chunk 1: chunk 0 comes out whole, then the error, and it stays.
    let mut flipped = file.clone();
    flipped[at(1) + 100] ^= 0x10;
    let mut reader = PayloadReader::new(
        Cursor::new(&flipped),
        keys.clone(),
        full,
        Some(seed.clone()),
        0,
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 50_000];
    let err = loop {
        match reader.read(&mut buf) {
            Ok(0) => panic!("the forged chunk was read to the end"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(chunk_error(&err), ChunkError::Forged { counter: 1 });
    assert!(err.to_string().contains("chunk 1 "), "{err}");
    assert!(got == plain[..CHUNK]);
    assert_eq!(
        reader.read(&mut buf).unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    // Starting inside it fails at once.
    let err = read_from(&flipped, &keys, full, Some(seed.clone()), CHUNK as u64 + 5).unwrap_err();
    assert_eq!(chunk_error(&err), ChunkError::Forged { counter: 1 });

    // Chunks 0 and 2 swapped: each is where another should be.
    let mut swapped = file.clone();
    let (a, b) = swapped.split_at_mut(at(2));
    a[at(0)..at(1)].swap_with_slice(&mut b[..SEALED_CHUNK]);
    let err = read_from(&swapped, &keys, full, Some(seed.clone()), 0).unwrap_err();
    assert_eq!(chunk_error(&err), ChunkError::Forged { counter: 0 });
    let err = read_from(&swapped, &keys, full, Some(seed.clone()), 2 * CHUNK as u64).unwrap_err();
    assert_eq!(chunk_error(&err), ChunkError::Forged { counter: 2 });

    // The seed: flipped, sealed as another chunk, sealed as final, too short.
    let mut bad_seed = seed.clone();
    bad_seed[0] ^= 1;
    let err = read_from(&file, &keys, full, Some(bad_seed), 0).unwrap_err();
    assert_eq!(chunk_error(&err), ChunkError::Forged { counter: full });
    let held = &plain[full as usize * CHUNK..];
    for other in [
        keys.seal_chunk(full + 1, false, held),
        keys.seal_chunk(full, true, held),
    ] {
        let err = read_from(&file, &keys, full, Some(other), 3 * CHUNK as u64).unwrap_err();
        assert_eq!(chunk_error(&err), ChunkError::Forged { counter: full });
    }
    let err = read_from(&file, &keys, full, Some(vec![0; 15]), 0).unwrap_err();
    assert_eq!(
        chunk_error(&err),
        ChunkError::TooShort {
            counter: full,
            len: 15
        }
    );

    // Another payload's keys open nothing; a truncated file is told apart.
    let err = read_from(&file, &PayloadKeys::generate(), full, Some(seed.clone()), 0).unwrap_err();
    assert_eq!(chunk_error(&err), ChunkError::Forged { counter: 0 });
    let err = read_from(&file[..at(2) + 10], &keys, full, Some(seed), 0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn single_chunks_open_only_as_sealed() {
    let keys = PayloadKeys::generate();
    let sealed = keys.seal_chunk(5, false, b"held back");
    assert_eq!(keys.open_chunk(5, false, &sealed).unwrap(), b"held back");
    assert_eq!(
        keys.open_chunk(6, false, &sealed),
        Err(ChunkError::Forged { counter: 6 })
    );
    assert_eq!(
        keys.open_chunk(5, true, &sealed),
        Err(ChunkError::Forged { counter: 5 })
    );
    let again = PayloadKeys::from_bytes(&keys.to_bytes());
    assert_eq!(again.open_chunk(5, false, &sealed).unwrap(), b"held back");
    // A failed open leaves nothing in the buffer.
    let mut buf = sealed.clone();
    buf[3] ^= 4;
    let altered = buf.clone();
    assert!(keys.open_chunk_in_place(5, false, &mut buf).is_err());
    assert!(buf.is_empty());
    let buf = altered;
    assert_eq!(
        keys.open_chunk(0, false, &[1, 2, 3]),
        Err(ChunkError::TooShort { counter: 0, len: 3 })
    );
    // Opened onto a buffer: appended once it authenticates, nothing added otherwise.
    let mut out = b"before:".to_vec();
    keys.open_chunk_onto(5, false, &sealed, &mut out).unwrap();
    assert_eq!(out, b"before:held back");
    assert_eq!(
        keys.open_chunk_onto(5, false, &buf, &mut out),
        Err(ChunkError::Forged { counter: 5 })
    );
    assert_eq!(out, b"before:held back");
}

#[test]
fn payload_keys_sealed_for_the_database_open_only_as_sealed() {
    let master = [42u8; 32];
    let keys = PayloadKeys::generate();
    let sealed = seal_keys(&master, "application 7 round 2", &keys);
    assert!(!sealed.contains('\n'));
    assert_ne!(
        sealed,
        seal_keys(&master, "application 7 round 2", &keys),
        "a fresh nonce"
    );
    let opened = open_keys(&master, "application 7 round 2", &sealed).unwrap();
    assert_eq!(opened.to_bytes(), keys.to_bytes());

    let mut other_master = master;
    other_master[31] ^= 1;
    assert!(open_keys(&other_master, "application 7 round 2", &sealed).is_err());
    assert!(open_keys(&master, "application 7 round 3", &sealed).is_err());
    let mut raw = STANDARD.decode(&sealed).unwrap();
    for i in [0, 12, 40, raw.len() - 1] {
        raw[i] ^= 0x80;
        assert!(open_keys(&master, "application 7 round 2", &STANDARD.encode(&raw)).is_err());
        raw[i] ^= 0x80;
    }
    assert!(
        open_keys(
            &master,
            "application 7 round 2",
            &sealed[..sealed.len() - 4]
        )
        .is_err()
    );
    assert!(open_keys(&master, "application 7 round 2", "not base64!").is_err());
}

#[test]
fn sealing_reuses_one_buffer_for_its_output() {
    let keys = PayloadKeys::generate();
    let mut sealer = ChunkSealer::new(keys, 0, Vec::new());
    let piece = plaintext(1 << 20);
    let mut seen = Vec::new();
    for _ in 0..8 {
        sealer
            .write(&piece, &mut |b: &[u8]| {
                seen.push((b.as_ptr(), b.len()));
                Ok(())
            })
            .unwrap();
    }
    assert!(seen.iter().all(|&(p, _)| p == seen[0].0), "{seen:?}");
    assert!(
        seen.iter()
            .all(|&(_, n)| (SEALED_CHUNK..=BATCH * SEALED_CHUNK).contains(&n))
    );
    assert_eq!(sealer.counter(), 8 * 16 - 1);
    assert_eq!(sealer.held().len(), CHUNK);
}

#[test]
fn a_resumable_sha256_is_sha256_however_it_is_cut_and_kept() {
    use sha2::Digest;
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    for len in [0, 1, 55, 56, 63, 64, 65, 119, 128, 4096, 65_537, 300_000] {
        let whole = &data[..len];
        let want: [u8; 32] = sha2::Sha256::digest(whole).into();
        for cut in [0, 1, 63, 64, 100, len / 2, len] {
            let cut = cut.min(len);
            let mut h = ResumableSha256::new();
            h.update(&whole[..cut]);
            let kept = h.to_bytes();
            let mut h = ResumableSha256::from_bytes(&kept).expect("a kept state");
            for piece in whole[cut..].chunks(777) {
                h.update(piece);
            }
            assert_eq!(h.finalize(), want, "len {len}, cut {cut}");
        }
    }
    // What is not a kept state is refused.
    assert!(ResumableSha256::from_bytes(&[0u8; 39]).is_none());
    let mut kept = ResumableSha256::new();
    kept.update(b"abc");
    let mut bytes = kept.to_bytes();
    bytes.push(1);
    assert!(ResumableSha256::from_bytes(&bytes).is_none());
}

#[test]
fn sealed_bytes_open_only_as_sealed() {
    let master = [7u8; 32];
    let sealed = seal_bytes(&master, "p-1/header", b"a header");
    assert_eq!(
        open_bytes(&master, "p-1/header", &sealed).unwrap(),
        b"a header"
    );
    assert!(open_bytes(&master, "p-2/header", &sealed).is_err());
    assert!(open_bytes(&[8u8; 32], "p-1/header", &sealed).is_err());
    assert!(open_bytes(&master, "p-1/header", "not base64!").is_err());
    assert!(open_bytes(&master, "p-1/header", "AAAA").is_err());
}
