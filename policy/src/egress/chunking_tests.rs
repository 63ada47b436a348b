//! The property that a report does not depend on where the chunks of a file begin and end.

use proptest::prelude::*;

use super::tests::cases;
use super::*;

/// Inputs for the chunking property: the table's files, one past the sniffing prefix, and
/// random bytes behind the magics.
fn inputs() -> impl Strategy<Value = (String, Vec<u8>)> {
    let mut fixed: Vec<(String, Vec<u8>)> = cases()
        .into_iter()
        .map(|c| (c.path.to_owned(), c.bytes))
        .collect();
    let mut big = b"group,count,ref\n".to_vec();
    let mut i = 0;
    while big.len() < SNIFF_BYTES + 5000 {
        big.extend_from_slice(format!("g{},{},R{i:06}A\n", i % 50, i % 30).as_bytes());
        i += 1;
    }
    big.extend_from_slice("末尾,3,x\n".as_bytes());
    fixed.push(("big.csv".into(), big));
    let magic = prop::sample::select(vec![
        &b""[..],
        b"##fileformat=VCFv4.2\n",
        b"\x89PNG\r\n\x1a\n",
        b"\x1f\x8b\x08\x04",
        b"a,b\n",
    ]);
    let random = (
        magic,
        prop::collection::vec(
            prop::sample::select(vec![
                b'a', b',', b'\n', b'\r', b'"', b'\t', 0xe6, 0x97, 0xa5, 0, 0xff, b'1',
            ]),
            0..400,
        ),
    )
        .prop_map(|(m, rest)| ("x.csv".to_owned(), [m, &rest[..]].concat()));
    prop_oneof![prop::sample::select(fixed), random]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn reports_do_not_depend_on_chunking(
        (path, bytes) in inputs(),
        sizes in prop::collection::vec(1usize..3000, 1..20),
    ) {
        let whole = check_bytes(&path, &bytes, &Thresholds::default());
        let mut c = FileChecker::new(&path, &Thresholds::default());
        let mut rest = &bytes[..];
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*size).min(rest.len()));
            c.update(chunk);
            rest = tail;
        }
        prop_assert_eq!(c.finish(), whole);
    }
}
