use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::release::tests::noise;
use crate::release::{self, Approved, BuildError, Built, new_identity};

/// A payload written as a request writes one: what the writer answered, and what the
/// database would keep of it, opened (through which the payload is read: `made.at()`).
pub(crate) struct Made {
    pub written: Written,
    pub unsealed: Unsealed,
}

impl std::ops::Deref for Made {
    type Target = Unsealed;
    fn deref(&self) -> &Unsealed {
        &self.unsealed
    }
}

/// Writes `files` (name, bytes) into a new payload `dir/p.age`, each in several writes.
pub(crate) fn write(dir: &Path, files: &[(String, Vec<u8>)], mtime: u64) -> Made {
    write_for(dir, files, mtime, None)
}

/// [`write`], its release prepared for `recipient` when given.
pub(crate) fn write_for(
    dir: &Path,
    files: &[(String, Vec<u8>)],
    mtime: u64,
    recipient: Option<&str>,
) -> Made {
    let path = dir.join("p.age");
    let file = std::fs::File::create_new(&path).unwrap();
    let keys = PayloadKeys::generate();
    let header = recipient.map(|r| keys.header(r).unwrap());
    let mut w = PayloadWriter::start(file, keys.clone(), mtime, header.as_deref()).unwrap();
    for (name, bytes) in files {
        w.begin(name, bytes.len() as u64).unwrap();
        for piece in bytes.chunks(100_003) {
            w.data(piece).unwrap();
        }
        w.end().unwrap();
    }
    let written = w.finish().unwrap();
    let seed = keys.seal_chunk(written.full_chunks, false, &written.held);
    let prepared = match (recipient, header, &written.package_hash) {
        (Some(r), Some(h), Some(state)) => Some((
            r.to_owned(),
            h,
            sealed::ResumableSha256::from_bytes(state).unwrap(),
        )),
        (None, None, None) => None,
        other => panic!("prepared for {:?} but not whole", other.0),
    };
    Made {
        unsealed: Unsealed {
            path,
            keys,
            full_chunks: written.full_chunks,
            seed,
            prepared,
        },
        written,
    }
}

pub(crate) fn approved(files: &[(String, Vec<u8>)]) -> Vec<Approved> {
    files
        .iter()
        .map(|(name, bytes)| Approved {
            name: name.clone(),
            sha256: crate::sha256_hex(bytes),
            size: bytes.len() as u64,
        })
        .collect()
}

pub(crate) fn metadata() -> serde_json::Value {
    serde_json::json!({"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": []})
}

/// Finishes `made` for `recipient`, as the builder does.
pub(crate) fn finish(
    made: &Made,
    files: &[(String, Vec<u8>)],
    recipient: &str,
) -> Result<Built, BuildError> {
    release::finish(
        &made.at(),
        &approved(files),
        &metadata(),
        recipient,
        1_764_777_600,
        &AtomicBool::new(false),
    )
}

/// Files that cross every boundary: one larger than a frame and many chunks, a table, an
/// empty file, folders several deep, a name long enough for a GNU long-name entry.
pub(crate) fn sample() -> Vec<(String, Vec<u8>)> {
    let table: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("{},{}\n", i % 47, i % 13).into_bytes())
        .collect();
    vec![
        ("big.bin".into(), noise(3 * FRAME + 12_345, 7)),
        ("tables/by age/counts.csv".into(), table),
        ("tables/empty.txt".into(), Vec::new()),
        (
            format!("deep/{}/x.txt", "long-name".repeat(20)),
            b"x\n".to_vec(),
        ),
        (
            "r\u{e9}sum\u{e9}.txt".into(),
            "données\n".as_bytes().to_vec(),
        ),
    ]
}

fn read_back(made: &Made, i: usize, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    file_reader(
        std::fs::File::open(&made.path).unwrap(),
        made.keys.clone(),
        made.written.full_chunks,
        made.seed.clone(),
        made.written.locations[i],
        size,
    )
    .unwrap()
    .read_to_end(&mut out)
    .unwrap();
    out
}

#[test]
fn files_read_back_from_their_place_and_the_finished_payload_is_their_release() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample();
    let made = write(tmp.path(), &files, 1_764_777_600);
    assert_eq!(made.written.locations.len(), files.len());
    assert!(
        made.written.full_chunks > 40,
        "the payload spans many chunks"
    );
    // The header's space is kept, zero, until the release is made.
    let before = std::fs::read(&made.path).unwrap();
    assert!(before[..sealed::HEADER_LEN].iter().all(|&b| b == 0));
    for (i, (name, bytes)) in files.iter().enumerate() {
        assert!(
            read_back(&made, i, bytes.len() as u64) == *bytes,
            "{name} reads back byte-exact"
        );
    }

    let (identity, recipient) = new_identity();
    let built = finish(&made, &files, &recipient).unwrap();
    let package = std::fs::read(&made.path).unwrap();
    assert_eq!(built.size, package.len() as u64);
    assert_eq!(built.sha256, crate::sha256_hex(&package));
    // The whole chunks were not written again: only the header before them and the tail.
    let body =
        sealed::PREFIX_LEN as usize + made.written.full_chunks as usize * sealed::SEALED_CHUNK;
    assert!(package[sealed::HEADER_LEN..body] == before[sealed::HEADER_LEN..body]);

    let dest = tmp.path().join("opened");
    let opened = release::open(&package[..], &identity, &dest).unwrap();
    assert_eq!(opened.files.len(), files.len());
    for (name, bytes) in &files {
        let got = std::fs::read(dest.join("files").join(name)).unwrap();
        assert!(got == *bytes, "{name}");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("ro-crate-metadata.json")).unwrap())
            .unwrap();
    assert_eq!(meta, metadata());
    // Previews still read from the released file.
    assert!(read_back(&made, 1, files[1].1.len() as u64) == files[1].1);
}

#[test]
fn an_altered_payload_is_refused_and_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample();
    let (_, recipient) = new_identity();

    // One bit of the second chunk.
    let made = write(tmp.path(), &files, 0);
    let mut bytes = std::fs::read(&made.path).unwrap();
    bytes[sealed::PREFIX_LEN as usize + sealed::SEALED_CHUNK + 100] ^= 1;
    std::fs::write(&made.path, &bytes).unwrap();
    match finish(&made, &files, &recipient) {
        Err(BuildError::Altered(why)) => assert!(why.contains("chunk 1"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(
        std::fs::read(&made.path).unwrap() == bytes,
        "nothing written"
    );
    // A preview of the file in that chunk fails too, rather than show other bytes.
    let mut out = Vec::new();
    let read = file_reader(
        std::fs::File::open(&made.path).unwrap(),
        made.keys.clone(),
        made.written.full_chunks,
        made.seed.clone(),
        made.written.locations[0],
        files[0].1.len() as u64,
    )
    .unwrap()
    .read_to_end(&mut out);
    assert_eq!(read.unwrap_err().kind(), io::ErrorKind::InvalidData);

    // Cut short.
    std::fs::remove_file(&made.path).unwrap();
    let made = write(tmp.path(), &files, 0);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&made.path)
        .unwrap();
    f.set_len(sealed::PREFIX_LEN + 3 * sealed::SEALED_CHUNK as u64)
        .unwrap();
    match finish(&made, &files, &recipient) {
        Err(BuildError::Altered(why)) => assert!(why.contains("ends before"), "{why}"),
        other => panic!("{other:?}"),
    }

    // Whole, but not what was approved: another file's content, or a file it never held.
    std::fs::remove_file(&made.path).unwrap();
    let made = write(tmp.path(), &files, 0);
    let mut other = files.clone();
    other[1].1[5] ^= 1;
    match finish(&made, &other, &recipient) {
        Err(BuildError::Mismatch {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, files[1].0);
            assert_eq!(expected, crate::sha256_hex(&other[1].1));
            assert_eq!(found, crate::sha256_hex(&files[1].1));
        }
        other => panic!("{other:?}"),
    }
    let mut more = files.clone();
    more.push(("never.csv".into(), b"1\n".to_vec()));
    match finish(&made, &more, &recipient) {
        Err(BuildError::Altered(why)) => assert!(why.contains("never.csv"), "{why}"),
        other => panic!("{other:?}"),
    }
    let fewer = &files[1..];
    match finish(&made, fewer, &recipient) {
        Err(BuildError::Altered(why)) => assert!(why.contains("big.bin"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_finish_cut_short_is_done_again_for_the_recipient_of_the_time() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample();
    let made = write(tmp.path(), &files, 0);
    let (first_identity, first) = new_identity();
    let (identity, recipient) = new_identity();
    let once = finish(&made, &files, &first).unwrap();
    // What a crash could leave: the tail half written, then garbage after it.
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&made.path)
        .unwrap();
    std::io::Write::write_all(&mut &f, &[0xAB; 70_000]).unwrap();
    drop(f);
    let again = finish(&made, &files, &recipient).unwrap();
    assert_ne!(once.sha256, again.sha256, "a header of its own");
    let package = std::fs::read(&made.path).unwrap();
    assert_eq!(again.size, package.len() as u64);
    let dest = tmp.path().join("opened");
    let opened = release::open(&package[..], &identity, &dest).unwrap();
    assert_eq!(opened.files.len(), files.len());
    assert!(release::open(&package[..], &first_identity, &tmp.path().join("no")).is_err());
}

/// A release prepared at the request for the recipient it is approved for ends the digest
/// begun then (the chunks are not hashed again) and comes to the file's SHA-256; one approved
/// for another recipient (registered since) gets a header of its own and is hashed whole.
#[test]
fn a_release_prepared_at_the_request_is_the_same_release() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample();
    let (identity, recipient) = new_identity();
    let made = write_for(tmp.path(), &files, 0, Some(&recipient));
    let before = std::fs::read(&made.path).unwrap();
    assert!(
        before[..sealed::HEADER_LEN].iter().all(|&b| b == 0),
        "the header waits for the approval: the file holds none before"
    );
    let built = finish(&made, &files, &recipient).unwrap();
    let package = std::fs::read(&made.path).unwrap();
    assert_eq!(built.sha256, crate::sha256_hex(&package));
    assert_eq!(
        &package[..sealed::HEADER_LEN],
        &made.prepared.as_ref().unwrap().1[..]
    );
    let opened = release::open(&package[..], &identity, &tmp.path().join("a")).unwrap();
    assert_eq!(opened.files.len(), files.len());

    std::fs::remove_file(&made.path).unwrap();
    let made = write_for(tmp.path(), &files, 0, Some(&recipient));
    let (other_identity, other) = new_identity();
    let built = finish(&made, &files, &other).unwrap();
    let package = std::fs::read(&made.path).unwrap();
    assert_eq!(built.sha256, crate::sha256_hex(&package));
    assert_ne!(
        &package[..sealed::HEADER_LEN],
        &made.prepared.as_ref().unwrap().1[..]
    );
    release::open(&package[..], &other_identity, &tmp.path().join("b")).unwrap();
    assert!(release::open(&package[..], &identity, &tmp.path().join("c")).is_err());

    // Prepared or not, every chunk is authenticated: an altered one refuses the release.
    std::fs::remove_file(&made.path).unwrap();
    let made = write_for(tmp.path(), &files, 0, Some(&recipient));
    let mut bytes = std::fs::read(&made.path).unwrap();
    bytes[sealed::PREFIX_LEN as usize + 10] ^= 1;
    std::fs::write(&made.path, &bytes).unwrap();
    assert!(matches!(
        finish(&made, &files, &recipient),
        Err(BuildError::Altered(_))
    ));
}

#[test]
fn a_writer_refuses_what_a_tar_could_not_say() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = PayloadKeys::generate();
    let file = std::fs::File::create_new(tmp.path().join("p.age")).unwrap();
    let mut w = PayloadWriter::start(file, keys, 0, None).unwrap();
    assert!(w.data(b"x").is_err(), "data outside a file");
    w.begin("a.txt", 3).unwrap();
    assert!(w.begin("b.txt", 1).is_err(), "a file inside a file");
    assert!(w.data(b"abcd").is_err(), "longer than its header");
    let mut w = PayloadWriter::start(
        std::fs::File::create_new(tmp.path().join("q.age")).unwrap(),
        PayloadKeys::generate(),
        0,
        None,
    )
    .unwrap();
    w.begin("a.txt", 3).unwrap();
    w.data(b"ab").unwrap();
    assert!(w.end().is_err(), "shorter than its header");
    let mut w = PayloadWriter::start(
        std::fs::File::create_new(tmp.path().join("r.age")).unwrap(),
        PayloadKeys::generate(),
        0,
        None,
    )
    .unwrap();
    assert!(w.begin("bad\nname", 0).is_err());
    assert!(w.begin("../up", 0).is_err());
}
