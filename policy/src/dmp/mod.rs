//! A dataset's data management plan (DMP): parsed from JSON or TOML, checked field by field,
//! exported as our own JSON and in GakuNin RDM's shape.
//!
//! A DMP carries the Cabinet Office's common metadata items ([`fields::FIELDS`], each with its
//! Japanese and English label) and AMED's entries: the [`Category`] of management, the end of
//! a restricted-sharing period with the category that follows it, the consent and its scope,
//! and the data-providing institution. [`parse`] reads the whole document and returns *every*
//! bad field, each naming its key, rather than the first: a steward fixes a DMP in one pass.

pub mod catalog;
pub mod fields;
mod gakunin;
mod read;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use fields::{FIELDS, Field, Label, label_of};
pub use gakunin::{SCHEMA as GAKUNIN_SCHEMA, to_gakunin};

/// A fieldless enum of a DMP's: its JSON spelling (snake_case), every value in order, and
/// its label in Japanese and English.
macro_rules! labelled {
    ($(#[$meta:meta])* $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $s:literal, $ja:literal, $en:literal;)+
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s,)+
                }
            }

            pub fn label(self) -> Label {
                match self {
                    $($name::$variant => Label { ja: $ja, en: $en },)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("unknown {} `{s}`", stringify!($name)))
            }
        }
    };
}

labelled! {
    /// AMED's management categories (管理区分), from the least to the most open.
    Category {
        /// Not shared.
        Unshared = "unshared", "非共有", "Unshared";
        /// Shared among the plan's researchers and approved applicants, by agreement.
        RestrictedClosedSharing = "restricted_closed_sharing", "制限共有", "Restricted closed sharing";
        /// Provided to third parties after review (controlled access).
        RestrictedOpenSharing = "restricted_open_sharing", "制限公開", "Restricted open sharing";
        /// Open to anyone.
        UnrestrictedOpenSharing = "unrestricted_open_sharing", "非制限公開", "Unrestricted open sharing";
    }
}

impl Category {
    /// Sharing under restrictions, which last until an end date.
    pub fn is_restricted(self) -> bool {
        matches!(
            self,
            Category::RestrictedClosedSharing | Category::RestrictedOpenSharing
        )
    }

    /// Whether the DMP allows secondary use (AMED's category [B]): every category but unshared.
    pub fn allows_secondary_use(self) -> bool {
        self != Category::Unshared
    }
}

labelled! {
    /// アクセス権 (item 14).
    AccessRights {
        Open = "open", "公開", "Open";
        Restricted = "restricted", "共有", "Restricted";
        /// Metadata only.
        MetadataOnly = "metadata_only", "非共有・非公開", "Metadata only";
        /// Embargoed until the scheduled publication date.
        Embargoed = "embargoed", "公開期間猶予", "Embargoed";
    }
}

labelled! {
    /// Whether informed consent was obtained (AMED's `gotInformedConsent`).
    ConsentObtained {
        Yes = "yes", "取得済み", "Yes";
        No = "no", "未取得", "No";
        Unknown = "unknown", "不明", "Unknown";
    }
}

labelled! {
    /// The consent form used (AMED's `informedConsentFormat`).
    ConsentForm {
        Amed = "amed", "AMED の様式", "AMED's form";
        Other = "other", "その他", "Other";
    }
}

/// A calendar date, `YYYY-MM-DD`; its text sorts as time does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Date(String);

impl Date {
    /// Parses `YYYY-MM-DD` (years 1900–9999, real days only).
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = &s[r];
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        ((1900..=9999).contains(&y) && (1..=days).contains(&d)).then(|| Date(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A data creator (item 18).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erad_researcher_number: Option<String>,
}

/// The data manager's contact (item 23).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub organisation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub email: String,
}

/// What the research participants consented to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub obtained: ConsentObtained,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<ConsentForm>,
    /// The uses consented to, in the consent form's words.
    pub scope: String,
}

/// The data-providing institution: its identifier (what a steward's token names) and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Institution {
    pub id: String,
    pub name: String,
}

/// A checked DMP. Its JSON (serde) is our own export, and what [`parse`] reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dmp {
    pub funder: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding_stream_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_name: Option<String>,
    pub japan_grant_number: String,
    pub project_name: String,
    pub data_no: String,
    pub title: String,
    pub date_issued: Date,
    pub description: String,
    pub research_field: String,
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_size: Option<String>,
    pub utilisation_policy: String,
    pub access_rights: AccessRights,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication_date: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub creators: Vec<Creator>,
    pub hosting_institution: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosting_institution_id: Option<String>,
    pub data_manager: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_manager_erad_number: Option<String>,
    pub data_manager_contact: Contact,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    pub management_category: Category,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted_sharing_ends: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_after: Option<Category>,
    pub consent: Consent,
    pub providing_institution: Institution,
}

/// What is wrong with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A mandatory field is absent or blank.
    Missing,
    /// Present where the DMP says it has no place.
    NotAllowed(String),
    /// Of the wrong JSON type.
    WrongType(&'static str),
    /// Longer than the field takes.
    TooLong(usize),
    /// Not one of the values the field takes.
    NotOneOf(Vec<&'static str>),
    /// Breaks the field's rule.
    Invalid(String),
    /// A field of no DMP.
    Unknown,
}

/// One bad field: its key (`consent.scope`, `creators[1].name`) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub problem: Problem,
}

impl FieldError {
    pub fn label(&self) -> Label {
        label_of(&self.field)
    }

    /// The problem in English.
    pub fn message(&self) -> String {
        match &self.problem {
            Problem::Missing => "is required".to_owned(),
            Problem::NotAllowed(why) => format!("must not be given: {why}"),
            Problem::WrongType(t) => format!("must be {t}"),
            Problem::TooLong(max) => format!("is longer than {max} characters"),
            Problem::NotOneOf(values) => format!("must be one of {}", values.join(", ")),
            Problem::Invalid(why) => why.clone(),
            Problem::Unknown => "is not a field of a DMP".to_owned(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.label();
        write!(
            f,
            "{} ({} / {}): {}",
            self.field,
            l.ja,
            l.en,
            self.message()
        )
    }
}

/// Why a document is not a DMP: it does not parse at all, or these fields are bad.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DmpError {
    #[error("not {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    #[error("the DMP has {} bad field(s): {}", .0.len(), list(.0))]
    Fields(Vec<FieldError>),
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The formats a DMP arrives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
}

/// Parses a DMP from its text and checks every field; `today` is the date the restricted
/// sharing must end after.
pub fn parse(text: &str, format: Format, today: &Date) -> Result<Dmp, DmpError> {
    from_value(&json_of(text, format)?, today)
}

/// A DMP's text as the JSON value [`from_value`] checks (and the API takes). TOML's own dates
/// (`date_issued = 2026-04-01`, unquoted) become the `YYYY-MM-DD` strings JSON spells them as.
pub fn json_of(text: &str, format: Format) -> Result<serde_json::Value, DmpError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| DmpError::Syntax {
            format: "JSON",
            message: e.to_string(),
        }),
        Format::Toml => toml::from_str::<toml::Value>(text)
            .map(toml_to_json)
            .map_err(|e| DmpError::Syntax {
                format: "TOML",
                message: e.to_string(),
            }),
    }
}

fn toml_to_json(v: toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s),
        toml::Value::Integer(i) => J::from(i),
        toml::Value::Float(f) => J::from(f),
        toml::Value::Boolean(b) => J::Bool(b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            J::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

/// Checks a DMP already read as a JSON value.
pub fn from_value(value: &serde_json::Value, today: &Date) -> Result<Dmp, DmpError> {
    read::read(value, today).map_err(DmpError::Fields)
}

/// `today` for tests and callers that have a clock: the date part of an RFC 3339 time.
pub fn date_of(rfc3339: &str) -> Option<Date> {
    Date::parse(rfc3339.get(..10)?)
}
