//! The archives the ingress tests send: builders of tar entries (ustar, raw headers, pax,
//! zstd), the upload helper, and the corpus of hostile archives with the code each is refused
//! with.

use super::*;

pub(super) fn tar_of(entries: &[(&str, EntryKind, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, mode, data) in entries {
        out.extend(entry_header(path, *kind, data.len() as u64, *mode));
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0u8, padding(data.len() as u64)));
    }
    out.extend_from_slice(&END);
    out
}

/// A raw header (any name bytes, any type flag) followed by data.
pub(super) fn raw(name: &[u8], flag: u8, mode: u32, data: &[u8]) -> Vec<u8> {
    let mut out = ustar_header(name, flag, data.len() as u64, mode).to_vec();
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(0u8, padding(data.len() as u64)));
    out
}

pub(super) fn with_end(mut v: Vec<u8>) -> Vec<u8> {
    v.extend_from_slice(&END);
    v
}

pub(super) fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}

pub(super) fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let inner = [b" ".as_slice(), k.as_bytes(), b"=", v, b"\n"].concat();
        let mut len = inner.len() + 1;
        while len.to_string().len() + inner.len() != len {
            len = len.to_string().len() + inner.len();
        }
        body.extend_from_slice(len.to_string().as_bytes());
        body.extend_from_slice(&inner);
    }
    raw(b"././@PaxHeader", b'x', 0o644, &body)
}

pub(super) const F: EntryKind = EntryKind::File;
pub(super) const D: EntryKind = EntryKind::Dir;

pub(super) async fn upload(
    app: &TestApp,
    token: &str,
    project: &str,
    name: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let resp = app
        .http
        .post(format!(
            "{}/api/v1/ingress?project={project}&name={name}",
            app.url
        ))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("the gateway answers");
    let st = resp.status();
    let text = resp.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// 256 MiB of zeros in one file: a few KiB once compressed.
pub(super) fn zstd_bomb() -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.write_all(&entry_header("zeros.bin", F, 256 << 20, 0o644))
        .unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&block).unwrap();
    }
    enc.write_all(&END).unwrap();
    enc.finish().unwrap()
}

/// The hostile corpus: each archive, the code it must be refused with, and why it is hostile.
pub(super) fn corpus() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let ok = b"print(1)\n".as_slice();
    let mut bad_sum = ustar_header(b"main.py", b'0', 9, 0o644);
    bad_sum[0] = b'x'; // checksum no longer matches
    let good = tar_of(&[("main.py", F, 0o644, ok), ("lib/util.py", F, 0o644, ok)]);
    let good_zst = zst(&good);
    let many: Vec<(String, EntryKind, u32, Vec<u8>)> = (0..30)
        .map(|i| (format!("f{i}.txt"), F, 0o644, b"x".to_vec()))
        .collect();
    let many_refs: Vec<(&str, EntryKind, u32, &[u8])> = many
        .iter()
        .map(|(p, k, m, d)| (p.as_str(), *k, *m, d.as_slice()))
        .collect();
    vec![
        (
            "traversal",
            tar_of(&[("../evil.sh", F, 0o644, ok)]),
            "archive_path_traversal",
        ),
        (
            "nested traversal",
            tar_of(&[("a/../../evil.sh", F, 0o644, ok)]),
            "archive_path_traversal",
        ),
        (
            "absolute path",
            tar_of(&[("/etc/cron.d/evil", F, 0o644, ok)]),
            "archive_path_absolute",
        ),
        (
            "symlink out of the tree",
            with_end(raw(b"passwd", b'2', 0o777, b"")),
            "archive_entry_type",
        ),
        (
            "hardlink",
            with_end(
                [
                    raw(b"a.py", b'0', 0o644, ok),
                    raw(b"b.py", b'1', 0o644, b""),
                ]
                .concat(),
            ),
            "archive_entry_type",
        ),
        (
            "character device",
            with_end(raw(b"null", b'3', 0o666, b"")),
            "archive_entry_type",
        ),
        (
            "block device",
            with_end(raw(b"sda", b'4', 0o660, b"")),
            "archive_entry_type",
        ),
        (
            "fifo",
            with_end(raw(b"pipe", b'6', 0o644, b"")),
            "archive_entry_type",
        ),
        (
            "GNU sparse file",
            with_end(raw(b"sparse", b'S', 0o644, b"")),
            "archive_entry_type",
        ),
        (
            "pax sparse records",
            with_end(
                [
                    pax(&[("GNU.sparse.map", b"0,1")]),
                    raw(b"s", b'0', 0o644, ok),
                ]
                .concat(),
            ),
            "archive_corrupt",
        ),
        (
            "setuid binary",
            tar_of(&[("bin/su", F, 0o4755, ok)]),
            "archive_special_bits",
        ),
        (
            "setgid directory",
            tar_of(&[("shared", D, 0o2775, b"")]),
            "archive_special_bits",
        ),
        (
            "sticky directory",
            tar_of(&[("tmp", D, 0o1777, b"")]),
            "archive_special_bits",
        ),
        (
            "duplicate names",
            tar_of(&[("run.py", F, 0o644, ok), ("run.py", F, 0o644, b"evil")]),
            "archive_duplicate_entry",
        ),
        (
            "case collision",
            tar_of(&[("README", F, 0o644, ok), ("readme", F, 0o644, ok)]),
            "archive_name_collision",
        ),
        (
            "unicode collision (NFC/NFD)",
            tar_of(&[
                ("caf\u{e9}.py", F, 0o644, ok),
                ("cafe\u{301}.py", F, 0o644, ok),
            ]),
            "archive_name_collision",
        ),
        (
            "fullwidth collision",
            tar_of(&[("ｄａｔａ.csv", F, 0o644, ok), ("data.csv", F, 0o644, ok)]),
            "archive_name_collision",
        ),
        (
            "file used as a directory",
            tar_of(&[("lib", F, 0o644, ok), ("lib/x.py", F, 0o644, ok)]),
            "archive_path_conflict",
        ),
        (
            "not UTF-8",
            with_end(raw(b"caf\xe9.py", b'0', 0o644, ok)),
            "archive_path_not_utf8",
        ),
        (
            "NUL in a pax path",
            with_end(
                [
                    pax(&[("path", b"ok.py\0../../evil")]),
                    raw(b"x", b'0', 0o644, ok),
                ]
                .concat(),
            ),
            "archive_path_nul",
        ),
        (
            "newline in a name",
            tar_of(&[("a\nb.py", F, 0o644, ok)]),
            "archive_path_control_char",
        ),
        (
            "backslash traversal",
            tar_of(&[("..\\..\\evil.bat", F, 0o644, ok)]),
            "archive_path_backslash",
        ),
        (
            "too deep",
            tar_of(&[("d/d/d/d/d/d/d/d/d/d/d/deep.py", F, 0o644, ok)]),
            "archive_path_too_deep",
        ),
        (
            "too long",
            tar_of(&[(&"n".repeat(300), F, 0o644, ok)]),
            "archive_path_too_long",
        ),
        (
            "too many entries",
            tar_of(&many_refs),
            "archive_too_many_entries",
        ),
        (
            "entry too large",
            tar_of(&[("big.bin", F, 0o644, &vec![1u8; 300_000])]),
            "archive_entry_too_large",
        ),
        (
            "unpacked too large",
            tar_of(&[
                ("a.bin", F, 0o644, &vec![1u8; 200_000]),
                ("b.bin", F, 0o644, &vec![1u8; 200_000]),
                ("c.bin", F, 0o644, &vec![1u8; 200_000]),
            ]),
            "archive_unpacked_too_large",
        ),
        (
            "upload too large",
            vec![0u8; 3 << 20],
            "archive_upload_too_large",
        ),
        ("truncated tar", good[..700].to_vec(), "archive_truncated"),
        (
            "tar without its end marker",
            good[..good.len() - 1024].to_vec(),
            "archive_truncated",
        ),
        (
            "truncated zstd",
            good_zst[..good_zst.len() - 5].to_vec(),
            "archive_truncated",
        ),
        (
            "garbage",
            (0..5000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            "archive_corrupt",
        ),
        (
            "bad header checksum",
            with_end([bad_sum.to_vec(), ok.to_vec(), vec![0u8; 503]].concat()),
            "archive_corrupt",
        ),
        (
            "data hidden after the end",
            [good.clone(), b"exfiltrate me".to_vec()].concat(),
            "archive_corrupt",
        ),
        (
            "gzip",
            vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3],
            "archive_corrupt",
        ),
        ("empty upload", Vec::new(), "archive_truncated"),
        (
            "no files",
            tar_of(&[("empty-dir", D, 0o755, b"")]),
            "archive_no_files",
        ),
    ]
}
