use super::*;

/// A BGZF block whose deflate data is one stored block holding `data`.
fn bgzf_stored(data: &[u8]) -> Vec<u8> {
    let mut block = vec![
        0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 6, 0, b'B', b'C', 2, 0,
    ];
    let bsize = (18 + 5 + data.len() + 8 - 1) as u16;
    block.extend_from_slice(&bsize.to_le_bytes());
    let len = data.len() as u16;
    block.push(1); // BFINAL, BTYPE 00 (stored)
    block.extend_from_slice(&len.to_le_bytes());
    block.extend_from_slice(&(!len).to_le_bytes());
    block.extend_from_slice(data);
    block.extend_from_slice(&[0; 8]); // CRC32 and ISIZE, not checked
    block
}

/// The empty BGZF block that ends every BGZF file (SAM spec §4.1.2): fixed-Huffman deflate.
const BGZF_EOF: &[u8] = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff\x06\0BC\x02\0\x1b\0\x03\0\0\0\0\0\0\0\0\0";

pub(super) fn png(width: u32, height: u32) -> Vec<u8> {
    let mut p = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    p.extend_from_slice(&width.to_be_bytes());
    p.extend_from_slice(&height.to_be_bytes());
    p.extend_from_slice(&[8, 6, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]);
    p
}

pub(super) fn jpeg() -> Vec<u8> {
    let mut j = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00".to_vec();
    j.extend_from_slice(b"\xff\xdb\x00\x04\x00\x00");
    j.extend_from_slice(
        b"\xff\xc2\x00\x11\x08\x00\x04\x00\x05\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01",
    );
    j.extend_from_slice(b"\xff\xda\x00\x08");
    j
}

pub(super) const PDF: &[u8] =
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R 4 0 R 5 0 R] /Count 3 >>\nendobj\n";

const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\x3e\0";

const VCF_SAMPLES: &[u8] = b"##fileformat=VCFv4.3\n##contig=<ID=1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tNA001\tNA002\n1\t100\trs1\tA\tG\t50\tPASS\t.\tGT\t0/1\t1/1\n";
const VCF_SITES: &[u8] = b"##fileformat=VCFv4.3\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n1\t100\trs1\tA\tG\t50\tPASS\tAF=0.12\n";
const FASTQ: &[u8] = b"@read1 run=1\nACGTNACG\n+\nIIIIHHH#\n@read2\nGGCCAATT\n+read2\n!!!!IIII\n";

/// A table of `rows` distinct codes with safe counts: an identifier by its values.
fn coded(rows: usize) -> Vec<u8> {
    let mut t = b"ref,count\n".to_vec();
    for i in 0..rows {
        t.extend_from_slice(format!("S{i:04}X,{}\n", 10 + i).as_bytes());
    }
    t
}

/// A first line that ends one byte before the sniffing prefix, a line feed, then `tail`.
fn straddle(tail: &[u8]) -> Vec<u8> {
    let mut t = vec![b'a'; SNIFF_BYTES - 2];
    t.push(b'\n');
    t.extend_from_slice(tail);
    t
}

/// A FASTQ record whose sequence runs past the prefix that decides the type.
fn long_read() -> Vec<u8> {
    let seq = "ACGT".repeat(SNIFF_BYTES / 2);
    format!("@read1\n{seq}\n+\n{}\n", "I".repeat(seq.len())).into_bytes()
}

fn small() -> Thresholds {
    Thresholds {
        min_count: 10,
        max_file_bytes: 36,
        max_request_bytes: 60,
        max_table_rows: 3,
    }
}

type Want = (Rule, Outcome, Option<(u64, u64)>);

pub(super) struct Case {
    pub(super) path: &'static str,
    pub(super) bytes: Vec<u8>,
    thresholds: Thresholds,
    content_type: ContentType,
    outcome: Outcome,
    findings: Vec<Want>,
}

fn case(
    path: &'static str,
    bytes: &[u8],
    content_type: ContentType,
    outcome: Outcome,
    findings: &[Want],
) -> Case {
    Case {
        path,
        bytes: bytes.to_vec(),
        thresholds: Thresholds::default(),
        content_type,
        outcome,
        findings: findings.to_vec(),
    }
}

pub(super) fn cases() -> Vec<Case> {
    use ContentType as C;
    use Outcome::{Fail, Pass, Review};
    let mut bam = b"BAM\x01\0\0\0\0\0\0\0\0".to_vec();
    bam.extend_from_slice(b"more");
    let mut oversize = case(
        "tables/big.csv",
        b"group,count\nA,25\nB,31\nC,44\nD,52\nE,61\n",
        C::Csv,
        Fail,
        &[
            (Rule::FileSize, Fail, None),
            (Rule::TableRows, Review, None),
        ],
    );
    oversize.thresholds = small();
    vec![
        case(
            "tables/clean.csv",
            b"group,count\nA,25\nB,31\n",
            C::Csv,
            Pass,
            &[],
        ),
        case(
            "tables/small.csv",
            b"group,count\nA,25\nB,3\nC,0\n",
            C::Csv,
            Fail,
            &[
                (Rule::SmallCount, Fail, Some((3, 2))),
                (Rule::ZeroCount, Review, Some((4, 2))),
            ],
        ),
        case(
            "tables/zero.tsv",
            b"sex\tn\nF\t0\nM\t12\n",
            C::Tsv,
            Review,
            &[(Rule::ZeroCount, Review, Some((2, 2)))],
        ),
        // An integer column beside the labels counts even without a count header.
        case(
            "tables/years.txt",
            b"age_band,2019,2020\n40-49,12,5\n50-59,30,44\n",
            C::Csv,
            Fail,
            &[(Rule::SmallCount, Fail, Some((2, 3)))],
        ),
        // A quoted cell spanning lines: rows count records, not lines.
        case(
            "tables/quoted.csv",
            b"group,count\n\"A, with comma\",12\n\"multi\nline\",3\r\n",
            C::Csv,
            Fail,
            &[(Rule::SmallCount, Fail, Some((3, 2)))],
        ),
        case(
            "tables/ids.csv",
            b"PatientID,count\nP1,12\n",
            C::Csv,
            Fail,
            &[(Rule::IdentifierHeader, Fail, Some((1, 1)))],
        ),
        case(
            "tables/jp.csv",
            "地域,患者ID,件数\n東北,A1,12\n".as_bytes(),
            C::Csv,
            Fail,
            &[(Rule::IdentifierHeader, Fail, Some((1, 2)))],
        ),
        case(
            "tables/jp_counts.csv",
            "地域,患者数\n東北,120\n".as_bytes(),
            C::Csv,
            Pass,
            &[],
        ),
        case(
            "tables/coded.csv",
            &coded(12),
            C::Csv,
            Fail,
            &[(Rule::IdentifierValues, Fail, Some((1, 1)))],
        ),
        // Nine distinct codes are not enough to call a column an identifier.
        case("tables/nine.csv", &coded(9), C::Csv, Pass, &[]),
        case(
            "tables/ragged.csv",
            b"group,count\nA,25,x\nB,31\n",
            C::Csv,
            Review,
            &[(Rule::TableShape, Review, Some((2, 0)))],
        ),
        case(
            "results/cohort.vcf",
            VCF_SAMPLES,
            C::Vcf,
            Fail,
            &[(Rule::GenotypeSamples, Fail, Some((3, 0)))],
        ),
        case(
            "results/sites.vcf",
            VCF_SITES,
            C::Vcf,
            Review,
            &[(Rule::SitesOnlyVcf, Review, Some((2, 0)))],
        ),
        case(
            "notes.txt",
            &bgzf_stored(&bam),
            C::Bam,
            Fail,
            &[(Rule::SequenceReads, Fail, None)],
        ),
        case(
            "x.vcf.gz",
            BGZF_EOF,
            C::Bgzf,
            Fail,
            &[(Rule::ContentType, Fail, None)],
        ),
        case(
            "raw.bam",
            &bam,
            C::Bam,
            Fail,
            &[(Rule::SequenceReads, Fail, None)],
        ),
        case(
            "a.cram",
            b"CRAM\x03\x01xxxx",
            C::Cram,
            Fail,
            &[(Rule::SequenceReads, Fail, None)],
        ),
        case(
            "a.bcf",
            b"BCF\x02\x02",
            C::Bcf,
            Fail,
            &[(Rule::ContentType, Fail, None)],
        ),
        case(
            "a.csv.gz",
            b"\x1f\x8b\x08\0\0\0\0\0\0\x03",
            C::Gzip,
            Fail,
            &[(Rule::ContentType, Fail, None)],
        ),
        case(
            "a.zip",
            b"PK\x03\x04\x14\0",
            C::Zip,
            Fail,
            &[(Rule::ContentType, Fail, None)],
        ),
        case(
            "reads.txt",
            FASTQ,
            C::Fastq,
            Fail,
            &[(Rule::SequenceReads, Fail, None)],
        ),
        case(
            "geno.bed",
            b"\x6c\x1b\x01\xff\x00",
            C::PlinkBed,
            Fail,
            &[(Rule::PlinkData, Fail, None)],
        ),
        case(
            "geno.bim",
            b"1\trs123\t0\t10583\tA\tG\n",
            C::PlinkBim,
            Fail,
            &[(Rule::PlinkData, Fail, None)],
        ),
        // Without the name, three lines of the shape.
        case(
            "variants.txt",
            b"1 rs1 0 100 A G\n1 rs2 0.5 200 C T\nX rs3 0 300 G A\n",
            C::PlinkBim,
            Fail,
            &[(Rule::PlinkData, Fail, None)],
        ),
        case(
            "people.txt",
            b"F1 I1 0 0 1 -9\nF1 I2 0 0 2 -9\nF1 I3 I1 I2 1 2\n",
            C::PlinkFam,
            Fail,
            &[(Rule::PlinkData, Fail, None)],
        ),
        case(
            "geno.fam",
            b"F1 I1 0 0 1 -9\n",
            C::PlinkFam,
            Fail,
            &[(Rule::PlinkData, Fail, None)],
        ),
        // The name .fam does not make a table a .fam: content must agree.
        case("summary.fam", b"group,count\nA,25\n", C::Csv, Pass, &[]),
        case(
            "figures/plot.png",
            &png(2, 3),
            C::Png,
            Review,
            &[(Rule::Image, Review, None)],
        ),
        case(
            "figures/plot.jpg",
            &jpeg(),
            C::Jpeg,
            Review,
            &[(Rule::Image, Review, None)],
        ),
        case(
            "report.pdf",
            PDF,
            C::Pdf,
            Review,
            &[(Rule::Document, Review, None)],
        ),
        case(
            "tables/counts.csv",
            ELF,
            C::Elf,
            Fail,
            &[(Rule::ContentType, Fail, None)],
        ),
        oversize,
        case(
            "notes.txt",
            b"line one\nline two\nthree \xff\n",
            C::Binary,
            Fail,
            &[(Rule::ContentType, Fail, Some((3, 0)))],
        ),
        case(
            "tables/nul.csv",
            b"group,count\nA,25\nB,3\0\n",
            C::Binary,
            Fail,
            &[(Rule::ContentType, Fail, Some((3, 0)))],
        ),
        // A character cut by the end of the file.
        case(
            "cut.txt",
            b"ok \xe6\x97",
            C::Binary,
            Fail,
            &[(Rule::ContentType, Fail, Some((1, 0)))],
        ),
        case(
            "empty.csv",
            b"",
            C::Empty,
            Review,
            &[(Rule::Empty, Review, None)],
        ),
        case(
            "notes.txt",
            "所見: 問題なし\n".as_bytes(),
            C::Text,
            Review,
            &[(Rule::FreeText, Review, None)],
        ),
        case(
            "model.json",
            b"{\"beta\": 0.2}",
            C::Json,
            Review,
            &[(Rule::FreeText, Review, None)],
        ),
        case(
            "model.out",
            b"[1, 2]\n",
            C::Json,
            Review,
            &[(Rule::FreeText, Review, None)],
        ),
        case(
            "aln.txt",
            b"@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:1\tLN:248956422\nr1\t0\t1\t100\t60\t4M\t*\t0\t0\tACGT\tIIII\n",
            C::Sam,
            Fail,
            &[(Rule::SequenceReads, Fail, None)],
        ),
        case(
            "aln.tsv",
            b"r1\t0\t1\t100\t60\t4M\t*\t0\t0\tACGT\tIIII\nr2\t16\t1\t180\t60\t2S2M\t*\t0\t0\tACGT\tIIII\n",
            C::Sam,
            Fail,
            &[(Rule::SequenceReads, Fail, None)],
        ),
        // The shape wins over the name: commas in a .tsv are read as CSV.
        case(
            "tables/misnamed.tsv",
            b"group,count\nA,25\nB,3\n",
            C::Csv,
            Fail,
            &[(Rule::SmallCount, Fail, Some((3, 2)))],
        ),
        case("long_read.txt", &long_read(), C::Fastq, Fail, &[(Rule::SequenceReads, Fail, None)]),
        // A character across the end of the prefix that decides the type is still text.
        case("straddle.txt", &straddle(b"\xc3\xa9 ok\n"), C::Text, Review, &[(Rule::FreeText, Review, None)]),
        // A bad byte far past that prefix still makes the file binary, and says where.
        case(
            "late.txt",
            &straddle(b"\nline two\xff\n"),
            C::Binary,
            Fail,
            &[(Rule::ContentType, Fail, Some((3, 0)))],
        ),
        case("header.csv", b"group,count\n", C::Csv, Review, &[(Rule::Empty, Review, None)]),
        // One line of codes is a header with no rows, and its names look like samples.
        case(
            "one_line.csv",
            b"P0001,P0002,P0003,P0004,P0005,P0006,P0007,P0008,P0009,P0010,P0011",
            C::Csv,
            Review,
            &[(Rule::Empty, Review, None), (Rule::IdentifierValues, Review, Some((1, 0)))],
        ),
        // Thousands separators and redaction markers keep a column a count column.
        case(
            "tables/sep.csv",
            b"group,count\nA,\"1,234\"\nB,[REDACTED]\nC,<10\nD,7\n",
            C::Csv,
            Fail,
            &[(Rule::SmallCount, Fail, Some((5, 2)))],
        ),
        case(
            "log.txt",
            b"done\nok \x1b[2K\n",
            C::Text,
            Review,
            &[
                (Rule::FreeText, Review, None),
                (Rule::ControlCharacters, Review, Some((2, 0))),
            ],
        ),
    ]
}

pub(super) fn summary(r: &FileReport) -> Vec<Want> {
    r.findings
        .iter()
        .map(|f| (f.rule, f.outcome, f.location.map(|l| (l.row, l.column))))
        .collect()
}

#[test]
fn files_are_judged_by_content() {
    for c in cases() {
        let r = check_bytes(c.path, &c.bytes, &c.thresholds);
        assert_eq!(r.content_type, c.content_type, "{}: {r:#?}", c.path);
        assert_eq!(summary(&r), c.findings, "{}: {r:#?}", c.path);
        assert_eq!(r.outcome, c.outcome, "{}", c.path);
        assert_eq!(r.size, c.bytes.len() as u64);
        assert!(r.findings.iter().all(|f| !f.message.is_empty()));
        // One byte at a time gives the same report.
        let mut one = FileChecker::new(c.path, &c.thresholds);
        for b in &c.bytes {
            one.update(std::slice::from_ref(b));
        }
        assert_eq!(one.finish(), r, "{} byte by byte", c.path);
    }
}

#[test]
fn reports_say_what_was_found() {
    let t = Thresholds::default();
    let r = check_bytes("t.csv", b"group,count\nA,25\nB,3\n", &t);
    assert_eq!((r.rows, r.columns), (Some(2), Some(2)));
    assert_eq!(
        r.findings[0].message,
        "the count in column 2, row 3, is below the threshold of 10"
    );
    let r = check_bytes("p.png", &png(640, 480), &t);
    assert!(
        r.findings[0].message.contains("640x480 8-bit RGBA"),
        "{r:?}"
    );
    let r = check_bytes("r.pdf", PDF, &t);
    assert!(r.findings[0].message.contains("PDF 1.7, 3 pages"), "{r:?}");
    let r = check_bytes("c.csv", &coded(20), &t);
    assert!(r.findings[0].message.contains("20 values"), "{r:?}");
    assert!(r.findings[0].message.contains("all 20 data rows"), "{r:?}");
    let r = check_bytes("v.vcf", VCF_SAMPLES, &t);
    assert!(
        r.findings[0].message.contains("2 sample column(s)"),
        "{r:?}"
    );
    assert_eq!((r.rows, r.columns), (Some(1), Some(11)));
}

#[test]
fn cell_findings_are_capped_with_a_summary() {
    let mut t = b"group,count\n".to_vec();
    for i in 0..120 {
        t.extend_from_slice(format!("g{},{}\n", i % 7, 1 + i % 9).as_bytes());
    }
    let r = check_bytes("t.csv", &t, &Thresholds::default());
    let small: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.rule == Rule::SmallCount)
        .collect();
    assert_eq!(small.len(), MAX_CELL_FINDINGS + 1);
    assert_eq!(small[0].location, Some(Location::new(2, 2)));
    assert_eq!(small[49].location, Some(Location::new(51, 2)));
    assert_eq!(small[50].location, None);
    assert!(
        small[50].message.starts_with("70 more count cells"),
        "{}",
        small[50].message
    );
}

#[test]
fn big_tables_keep_memory_bounded_and_say_what_was_checked() {
    // Wide enough that each column tracks only DISTINCT_ROWS / ... rows: 4096 columns -> 1000.
    let cols = 4096;
    let mut header: Vec<String> = (0..cols).map(|i| format!("c{i}")).collect();
    header[0] = "ref".into();
    let mut t = header.join(",").into_bytes();
    t.push(b'\n');
    for r in 0..1200 {
        let mut row = vec!["1.5".to_string(); cols];
        row[0] = format!("S{r:05}X");
        t.extend_from_slice(row.join(",").as_bytes());
        t.push(b'\n');
    }
    let r = check_bytes("wide.csv", &t, &Thresholds::default());
    let id = r
        .findings
        .iter()
        .find(|f| f.location == Some(Location::new(1, 1)))
        .unwrap();
    assert_eq!(id.rule, Rule::IdentifierValues, "{r:?}");
    assert!(
        id.message.contains("the first 1000 data rows"),
        "{}",
        id.message
    );
}

#[test]
fn a_request_fails_when_too_big_and_its_outcome_is_the_worst() {
    let t = small();
    let a = check_bytes("a.csv", b"group,count\nA,25\n", &t);
    let b = check_bytes("b.png", &png(1, 1), &t);
    let c = check_bytes("c.csv", b"group,count\nA,26\nB,27\nC,28\n", &t);
    assert_eq!(overall(std::slice::from_ref(&a), &[]), Outcome::Pass);
    assert_eq!(overall(&[a.clone(), b.clone()], &[]), Outcome::Review);
    assert!(check_request(&[a.clone(), b.clone()], &t).is_empty());
    let req = check_request(&[a.clone(), b.clone(), c.clone()], &t);
    assert_eq!(req.len(), 1);
    assert_eq!(
        (req[0].rule, req[0].outcome),
        (Rule::RequestSize, Outcome::Fail)
    );
    assert_eq!(overall(&[a, c], &req), Outcome::Fail);
    assert_eq!(overall(&[], &[]), Outcome::Pass);
}

#[test]
fn names_round_trip() {
    for o in Outcome::ALL {
        assert_eq!(o.as_str().parse::<Outcome>(), Ok(*o));
    }
    for c in ContentType::ALL {
        assert_eq!(c.as_str().parse::<ContentType>(), Ok(*c));
    }
    let codes: std::collections::HashSet<&str> = Rule::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(codes.len(), Rule::ALL.len());
    for r in Rule::ALL {
        assert_eq!(r.code().parse::<Rule>(), Ok(*r));
    }
    assert_eq!(ContentType::PlinkBim.as_str(), "plink_bim");
    assert!("worse".parse::<Outcome>().is_err());
    assert!(Outcome::Fail > Outcome::Review && Outcome::Review > Outcome::Pass);
}

#[test]
fn headers_are_read_as_people_write_them() {
    use super::columns::{code_like, normalize};
    assert_eq!(normalize("PatientID"), "patient_id");
    assert_eq!(normalize("NHSNumber"), "nhs_number");
    assert_eq!(normalize(" Date of Birth "), "date_of_birth");
    assert_eq!(normalize("n (patients)"), "n_patients");
    for code in [
        "P0001",
        "ab12cd",
        "123456",
        "123e4567-e89b-12d3-a456-426614174000",
    ] {
        assert!(code_like(code), "{code}");
    }
    for not in [
        "A",
        "G10",
        "40-49",
        "12345",
        "0.25",
        "rs12345",
        "ENSG00000139618",
        "male",
    ] {
        assert!(!code_like(not), "{not}");
    }
}
