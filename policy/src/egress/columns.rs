//! What a table's header and cells look like: identifiers, counts, labels, codes.
//!
//! Headers are compared after [`normalize`] (lower case, camelCase split, punctuation to `_`),
//! so `PatientID`, `patient id` and `patient_id` are one name. Japanese headers are matched by
//! the words they contain (患者, 被験者, 氏名, 生年月日; a name ending in 数 is a count).

/// What a header says about its column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Header {
    Identifier,
    Count,
    /// A label or a measure: never taken for a count by its values alone.
    Label,
    Other,
}

/// Lower case, words joined by `_` (camelCase split), other punctuation dropped.
pub(crate) fn normalize(name: &str) -> String {
    let chars: Vec<char> = name.trim().chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1);
            let boundary = c.is_uppercase()
                && prev.is_some_and(|p| {
                    p.is_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
                });
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

const ID_NAMES: &[&str] = &[
    "id",
    "uuid",
    "guid",
    "iid",
    "fid",
    "patient",
    "subject",
    "sample",
    "participant",
    "person",
    "individual",
    "mrn",
    "nhs",
    "nhs_number",
    "nhs_no",
    "ssn",
    "name",
    "first_name",
    "last_name",
    "full_name",
    "given_name",
    "family_name",
    "surname",
    "forename",
    "dob",
    "date_of_birth",
    "birth_date",
    "birthdate",
    "birthday",
    "postcode",
    "post_code",
    "postal_code",
    "zip",
    "zip_code",
    "zipcode",
    "email",
    "e_mail",
    "email_address",
    "phone",
    "phone_number",
    "telephone",
    "tel",
    "mobile",
    "address",
];
const COUNT_NAMES: &[&str] = &[
    "n",
    "count",
    "counts",
    "freq",
    "frequency",
    "cases",
    "patients",
    "events",
    "total",
    "number",
    "num",
    "数",
    "度数",
    "頻度",
];
const COUNT_PREFIXES: &[&str] = &["num_", "n_", "count_", "number_of_"];
const COUNT_SUFFIXES: &[&str] = &[
    "_count",
    "_counts",
    "_n",
    "_total",
    "_cases",
    "_events",
    "_patients",
    "_freq",
    "件数",
    "人数",
    "例数",
    "患者数",
    "被験者数",
];
const LABEL_NAMES: &[&str] = &[
    "year",
    "month",
    "week",
    "day",
    "date",
    "time",
    "hour",
    "quarter",
    "period",
    "age",
    "age_group",
    "age_band",
    "sex",
    "gender",
    "chr",
    "chrom",
    "chromosome",
    "pos",
    "position",
    "bp",
    "start",
    "end",
    "stop",
    "rank",
    "group",
    "band",
    "decile",
    "quintile",
    "quartile",
    "percentile",
    "index",
    "idx",
    "level",
    "stage",
    "grade",
    "code",
    "category",
    "cluster",
    "stratum",
    "strata",
    "wave",
    "visit",
    "cycle",
    "dose",
    "order",
    "region",
    "site",
    "version",
    "pct",
    "percent",
    "percentage",
    "rate",
    "ratio",
    "prop",
    "proportion",
    "mean",
    "median",
    "sd",
    "se",
    "min",
    "max",
    "score",
    "value",
    "p",
    "beta",
    "df",
    "年",
    "年度",
    "月",
    "年齢",
    "性別",
    "群",
    "区分",
    "染色体",
    "位置",
];
const LABEL_SUFFIXES: &[&str] = &[
    "_year",
    "_month",
    "_week",
    "_day",
    "_date",
    "_time",
    "_age",
    "_code",
    "_group",
    "_band",
    "_index",
    "_level",
    "_pos",
    "_position",
    "_start",
    "_end",
    "_rank",
    "_pct",
    "_percent",
    "_rate",
    "_ratio",
    "_mean",
    "_median",
    "_sd",
    "_min",
    "_max",
    "_score",
];

pub(super) fn classify_header(name: &str) -> Header {
    let h = normalize(name);
    let h = h.as_str();
    let count = COUNT_NAMES.contains(&h)
        || COUNT_PREFIXES.iter().any(|p| h.starts_with(p))
        || COUNT_SUFFIXES.iter().any(|s| h.ends_with(s));
    let japanese_id = ["氏名", "生年月日", "住所", "電話"]
        .iter()
        .any(|w| h.contains(w))
        || (["患者", "被験者"].iter().any(|w| h.contains(w)) && !count);
    if ID_NAMES.contains(&h) || h.ends_with("_id") || h.ends_with("_uuid") || japanese_id {
        Header::Identifier
    } else if count {
        Header::Count
    } else if LABEL_NAMES.contains(&h) || LABEL_SUFFIXES.iter().any(|s| h.ends_with(s)) {
        Header::Label
    } else {
        Header::Other
    }
}

/// A cell as a count: a whole number, a marker of a missing or redacted value, or neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Number {
    Whole(u64),
    Marker,
    Other,
}

pub(super) fn number(v: &str) -> Number {
    let lower = v.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "na" | "n/a"
            | "nan"
            | "null"
            | "none"
            | "."
            | "-"
            | "*"
            | "[redacted]"
            | "redacted"
            | "suppressed"
            | "masked"
    ) || ((v.starts_with('<') || v.starts_with('≤')) && v.len() <= 8)
    {
        return Number::Marker;
    }
    let v = v.strip_prefix('+').unwrap_or(v);
    let (whole, fraction) = v.split_once('.').unwrap_or((v, ""));
    // Thousands separators: "1,234,567".
    let grouped: Vec<&str> = whole.split(',').collect();
    let whole = if grouped.len() > 1
        && (1..=3).contains(&grouped[0].len())
        && grouped[1..].iter().all(|g| g.len() == 3)
    {
        grouped.concat()
    } else {
        whole.to_owned()
    };
    if !whole.is_empty()
        && whole.len() <= 19
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b == b'0')
    {
        return whole.parse().map_or(Number::Other, Number::Whole);
    }
    Number::Other
}

fn uuid(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Public identifiers of variants and genes (dbSNP `rs…`, Ensembl `ENS…`): codes, but not of
/// people.
fn public_id(v: &str) -> bool {
    let digits_after = |p: &str| {
        v.strip_prefix(p).is_some_and(|rest| {
            let rest = rest.split_once('.').map_or(rest, |(a, _)| a);
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
        })
    };
    digits_after("rs") || (v.starts_with("ENS") && v.len() >= 15 && v.len() <= 24)
}

/// Shaped like a code that names something: four or more letters and digits (with `-` or `_`)
/// having both, a digit string of six or more, or a UUID.
pub(crate) fn code_like(v: &str) -> bool {
    if uuid(v) {
        return true;
    }
    if v.len() >= 6 && v.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    !public_id(v)
        && (4..=64).contains(&v.len())
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes().any(|b| b.is_ascii_alphabetic())
}

/// 64-bit FNV-1a.
pub(super) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
