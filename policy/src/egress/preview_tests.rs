//! The previews: flagged cells, terminal safety, bounds, image headers.

use super::preview::{image_info, table_preview, text_preview};
use super::tests::{PDF, jpeg, png};
use super::*;

#[test]
fn the_table_preview_marks_flagged_cells() {
    let csv = b"patient_id,count\nP1,25\nP2,3\nP3,40\n";
    let r = check_bytes("t.csv", csv, &Thresholds::default());
    let mut findings = r.findings.clone();
    findings.push(Finding::new(Rule::TableShape, Outcome::Review, "x").at(4, 0));
    let p = table_preview(csv, b',', 10, 10, &findings);
    assert!(!p.truncated);
    assert_eq!(p.rows.len(), 4);
    let flags: Vec<Vec<Option<Outcome>>> = p
        .rows
        .iter()
        .map(|r| r.iter().map(|c| c.flagged).collect())
        .collect();
    use Outcome::{Fail, Review};
    assert_eq!(
        flags,
        vec![
            vec![Some(Fail), None],
            vec![None, None],
            vec![None, Some(Fail)],
            vec![Some(Review), Some(Review)],
        ]
    );
    // The identifier column is flagged in the header; the small count at its cell.
    assert_eq!(p.rows[0][0].text, "patient_id");

    let r = check_bytes("t.csv", b"group,count\nA,25\nB,3\n", &Thresholds::default());
    let p = table_preview(b"group,count\nA,25\nB,3\n", b',', 10, 10, &r.findings);
    assert_eq!(p.rows[2][1].flagged, Some(Outcome::Fail));
    assert_eq!(p.rows[2][0].flagged, None);

    let p = table_preview(b"a,b,c\n1,2,3\n4,5,6\n7,8,9\n", b',', 2, 2, &[]);
    assert!(p.truncated);
    assert_eq!(p.rows.len(), 2);
    assert!(p.rows.iter().all(|r| r.len() == 2));
    let p = table_preview(b"a\tb\n\"x\x1by\"\t2", b'\t', 5, 5, &[]);
    assert!(!p.truncated);
    assert_eq!(p.rows[1][0].text, "x\\u{1b}y");
    assert_eq!(p.rows[1][1].text, "2");
    let long = format!("a\n{}\n", "x".repeat(1000));
    let p = table_preview(long.as_bytes(), b',', 5, 5, &[]);
    assert_eq!(p.rows[1][0].text.chars().count(), MAX_CELL_BYTES + 1);
    assert!(p.rows[1][0].text.ends_with('…'));
}

#[test]
fn the_text_preview_is_safe_on_a_terminal_and_bounded() {
    assert_eq!(
        text_preview(b"a\x1b[2Kb\tc\n", 10, 100),
        "a\\u{1b}[2Kb\tc\n"
    );
    assert_eq!(text_preview("é中\r\n".as_bytes(), 10, 100), "é中\\u{d}\n");
    assert_eq!(
        text_preview("x\u{202e}y".as_bytes(), 10, 100),
        "x\\u{202e}y"
    );
    assert_eq!(text_preview("\u{85}".as_bytes(), 10, 100), "\\u{85}");
    assert_eq!(text_preview(b"a\xffb", 10, 100), "a\\x{ff}b");
    assert_eq!(text_preview(b"a\nb\nc\n", 2, 100), "a\nb\n");
    assert_eq!(text_preview(b"a\nb\nc\n", 0, 100), "");
    assert_eq!(text_preview("éé".as_bytes(), 10, 3), "é");
    assert_eq!(text_preview(b"ab\x1b", 10, 6), "ab");
    // A character the prefix cuts is left out.
    assert_eq!(text_preview(b"a\xe4\xb8", 10, 100), "a");
    let big = "行".repeat(10_000);
    let p = text_preview(big.as_bytes(), 5, 1000);
    assert!(p.len() <= 1000 && p.len() > 990);
}

#[test]
fn image_info_reads_headers() {
    let png_info = image_info(&png(640, 480)).unwrap();
    assert_eq!(
        (
            png_info.format,
            png_info.width,
            png_info.height,
            png_info.detail.as_str()
        ),
        (ContentType::Png, 640, 480, "8-bit RGBA")
    );
    let j = image_info(&jpeg()).unwrap();
    assert_eq!(
        (j.format, j.width, j.height, j.detail.as_str()),
        (ContentType::Jpeg, 5, 4, "8-bit, 3 components, progressive")
    );
    let p = image_info(PDF).unwrap();
    assert_eq!(
        (p.format, p.detail.as_str()),
        (ContentType::Pdf, "PDF 1.7, 3 pages")
    );
    assert_eq!(image_info(b"%PDF-2.0\n").unwrap().detail, "PDF 2.0");
    assert_eq!(image_info(&png(1, 1)[..20]), None);
    assert_eq!(image_info(b"\xff\xd8\xff\xe0\x00"), None);
    assert_eq!(image_info(b"GIF89a"), None);
}
