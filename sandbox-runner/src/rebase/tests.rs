use super::*;

/// A header block: POSIX ustar (`prefix` in its field), or GNU (`gnu`).
fn header(name: &[u8], prefix: &[u8], flag: u8, size: u64, link: &[u8], gnu: bool) -> Vec<u8> {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0001750\0");
    h[116..124].copy_from_slice(b"0001750\0");
    set_octal(&mut h[124..136], size);
    h[136..148].copy_from_slice(b"15117046370\0");
    h[156] = flag;
    h[157..157 + link.len()].copy_from_slice(link);
    if gnu {
        h[257..265].copy_from_slice(b"ustar  \0");
    } else {
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[345..345 + prefix.len()].copy_from_slice(prefix);
    }
    set_checksum(&mut h);
    h.to_vec()
}

fn with_data(mut h: Vec<u8>, data: &[u8]) -> Vec<u8> {
    h.extend_from_slice(data);
    h.resize(h.len() + padding(data.len() as u64) as usize, 0);
    h
}

fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let body: Vec<u8> = records
        .iter()
        .flat_map(|(k, v)| pax_record(k.as_bytes(), v))
        .collect();
    with_data(
        header(
            b"b/PaxHeaders.0/x",
            b"",
            b'x',
            body.len() as u64,
            b"",
            false,
        ),
        &body,
    )
}

fn gnu_long(flag: u8, value: &[u8]) -> Vec<u8> {
    let body = [value, b"\0"].concat();
    with_data(gnu_header(flag, body.len() as u64).to_vec(), &body)
}

/// (name, flag, link, data) of each entry, read by a reader of its own.
fn entries(mut tar: &[u8]) -> Vec<(String, u8, String, Vec<u8>)> {
    let mut out = Vec::new();
    let (mut long, mut long_link, mut pax_path, mut pax_link) = (None, None, None, None);
    loop {
        let h = &tar[..BLOCK];
        tar = &tar[BLOCK..];
        if h.iter().all(|b| *b == 0) {
            assert!(tar.iter().all(|b| *b == 0));
            assert_eq!(tar.len(), BLOCK, "one end-of-archive marker");
            return out;
        }
        let block: &[u8; BLOCK] = h.try_into().unwrap();
        assert_eq!(checksum_of(block), parse_octal(&h[148..156]));
        let size = parse_octal(&h[124..136]).unwrap() as usize;
        let data = tar[..size].to_vec();
        tar = &tar[size + padding(size as u64) as usize..];
        match h[156] {
            b'L' => long = Some(cstr(&data).to_vec()),
            b'K' => long_link = Some(cstr(&data).to_vec()),
            b'x' => {
                for (k, v) in pax_records(&data).unwrap() {
                    match &k[..] {
                        b"path" => pax_path = Some(v),
                        b"linkpath" => pax_link = Some(v),
                        _ => {}
                    }
                }
            }
            flag => {
                let posix = &h[257..263] == b"ustar\0";
                let name = pax_path.take().or(long.take()).unwrap_or_else(|| {
                    let p = if posix { cstr(&h[345..500]) } else { &[][..] };
                    if p.is_empty() {
                        cstr(&h[..100]).to_vec()
                    } else {
                        [p, b"/", cstr(&h[..100])].concat()
                    }
                });
                let link = pax_link
                    .take()
                    .or(long_link.take())
                    .unwrap_or_else(|| cstr(&h[157..257]).to_vec());
                out.push((
                    String::from_utf8(name).unwrap(),
                    flag,
                    String::from_utf8(link).unwrap(),
                    data,
                ));
            }
        }
    }
}

/// `tars` renamed (each as the archive of its path), in chunks of `chunk` bytes, one after
/// the other with one end marker.
fn rebased(tars: &[(&str, &[u8])], chunk: usize) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    for (path, tar) in tars {
        let mut r = Rebase::new(path);
        let mut out = Vec::new();
        for c in tar.chunks(chunk) {
            r.feed(Bytes::copy_from_slice(c), &mut out)?;
        }
        r.finish()?;
        for b in out {
            all.extend_from_slice(&b);
        }
    }
    all.extend_from_slice(&END);
    Ok(all)
}

fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut t = parts.concat();
    t.extend_from_slice(&END);
    t
}

#[test]
fn entries_are_named_relative_to_the_output_folder_in_every_chunking() {
    let long = "n".repeat(150);
    let b = archive(&[
        header(b"b/", b"", b'5', 0, b"", false),
        with_data(header(b"b/f.txt", b"", b'0', 5, b"", false), b"hello"),
        header(b"b/hard", b"", b'1', 0, b"b/f.txt", false),
        header(b"b/sym", b"", b'2', 0, b"../../etc/passwd", false),
        header(b"b/fifo", b"", b'6', 0, b"", false),
        // Docker's long names: pax path and linkpath.
        pax(&[("path", format!("b/{long}").as_bytes()), ("mtime", b"1.5")]),
        with_data(
            header(
                &format!("b/{long}").as_bytes()[..100],
                b"",
                b'0',
                3,
                b"",
                false,
            ),
            b"abc",
        ),
        pax(&[
            ("path", format!("b/{long}2").as_bytes()),
            ("linkpath", format!("b/{long}").as_bytes()),
        ]),
        header(b"b/n2", b"", b'1', 0, b"b/nn", false),
        // GNU long name and long link.
        gnu_long(b'L', format!("b/{long}3").as_bytes()),
        gnu_long(b'K', format!("b/{long}").as_bytes()),
        header(b"b/n3", b"", b'1', 0, b"b/nn", true),
        // A POSIX name split into prefix and name.
        with_data(
            header(
                b"deep.csv",
                format!("b/{}", "d".repeat(120)).as_bytes(),
                b'0',
                1,
                b"",
                false,
            ),
            b"z",
        ),
    ]);
    let top = archive(&[with_data(
        header(b"top.txt", b"", b'0', 2, b"", false),
        b"hi",
    )]);
    let want = rebased(&[("x/y/b", &b), ("top.txt", &top)], 1 << 20).unwrap();
    for chunk in [1, 7, 511, 512, 513, 4096] {
        assert_eq!(
            rebased(&[("x/y/b", &b), ("top.txt", &top)], chunk).unwrap(),
            want,
            "{chunk}"
        );
    }
    let got = entries(&want);
    let names: Vec<(&str, u8, &str)> = got
        .iter()
        .map(|(n, f, l, _)| (n.as_str(), *f, l.as_str()))
        .collect();
    let p = |s: &str| format!("x/y/b/{s}");
    assert_eq!(
        names,
        [
            ("x/y/b/", b'5', ""),
            (&p("f.txt")[..], b'0', ""),
            (&p("hard")[..], b'1', &p("f.txt")[..]),
            (&p("sym")[..], b'2', "../../etc/passwd"),
            (&p("fifo")[..], b'6', ""),
            (&p(&long)[..], b'0', ""),
            (&p(&format!("{long}2"))[..], b'1', &p(&long)[..]),
            (&p(&format!("{long}3"))[..], b'1', &p(&long)[..]),
            (&format!("x/y/b/{}/deep.csv", "d".repeat(120))[..], b'0', ""),
            ("top.txt", b'0', ""),
        ]
    );
    assert_eq!(got[1].3, b"hello");
    assert_eq!(got[5].3, b"abc");
    assert_eq!(got[8].3, b"z");
    assert_eq!(got[9].3, b"hi");
    // Other pax records stay.
    assert!(want.windows(10).any(|w| w == b"mtime=1.5\n"));
}

#[test]
fn names_that_grow_past_their_field_get_a_long_form() {
    let name = format!("b/{}", "m".repeat(95));
    let link = format!("b/{}", "l".repeat(95));
    for gnu in [false, true] {
        let t = archive(&[
            with_data(header(name.as_bytes(), b"", b'0', 1, b"", gnu), b"1"),
            header(b"b/h", b"", b'1', 0, link.as_bytes(), gnu),
        ]);
        let dir = "o".repeat(200);
        let out = rebased(&[(&format!("{dir}/b"), &t)], 100).unwrap();
        let got = entries(&out);
        assert_eq!(got[0].0, format!("{dir}/{name}"), "gnu: {gnu}");
        assert_eq!(got[1].0, format!("{dir}/b/h"), "gnu: {gnu}");
        assert_eq!(got[1].2, format!("{dir}/{link}"), "gnu: {gnu}");
        let gnu_long = out.windows(13).any(|w| w == b"././@LongLink");
        assert_eq!(gnu_long, gnu, "a long form of the archive's own kind");
    }
}

#[test]
fn what_is_not_a_whole_archive_of_the_path_is_an_error() {
    let ok = archive(&[with_data(header(b"b", b"", b'0', 2, b"", false), b"hi")]);
    assert!(rebased(&[("a/b", &ok)], 512).is_ok());
    // An entry outside the path's archive, and a hard link to one.
    let outside = archive(&[header(b"c", b"", b'0', 0, b"", false)]);
    let e = rebased(&[("a/b", &outside)], 512).unwrap_err();
    assert!(e.to_string().contains("outside"), "{e}");
    let prefix_only = archive(&[header(b"bb", b"", b'0', 0, b"", false)]);
    assert!(rebased(&[("a/b", &prefix_only)], 512).is_err());
    let link_out = archive(&[header(b"b/h", b"", b'1', 0, b"etc/passwd", false)]);
    assert!(rebased(&[("a/b", &link_out)], 512).is_err());
    // Cut short, anywhere.
    for cut in [1, 512, 600, ok.len() - 1024] {
        let e = rebased(&[("a/b", &ok[..cut])], 512).unwrap_err();
        assert!(e.to_string().contains("ends early"), "{cut}: {e}");
    }
    // Data after the end, a damaged header.
    let mut after = ok.clone();
    after.extend_from_slice(&[1u8; 512]);
    assert!(rebased(&[("a/b", &after)], 512).is_err());
    let mut damaged = ok.clone();
    damaged[10] ^= 1;
    assert!(rebased(&[("a/b", &damaged)], 512).is_err());
    // An extended header larger than allowed.
    let big = header(b"././@LongLink", b"", b'L', MAX_META + 1, b"", true);
    assert!(rebased(&[("a/b", &big)], 512).is_err());
}
