//! Egress: what an analyst asks to take out, what the checks found, what reviewers preview, and
//! the release that comes of it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use super::applications::Application;
pub use super::ingress::CheckOutcome;
use super::wire_enum;

wire_enum! {
    /// Where a release stands.
    ReleaseState: "release state" {
        Pending = "pending",
        Built = "built",
        Refused = "refused",
        Revoked = "revoked",
    }
}

/// A path of the output folder as the schema describes it: relative, its components separated
/// by one `/`, none of them empty, `.` or `..`, no NUL byte and no backslash, at most 4096 bytes
/// (`PATH_MAX`). The gateway also takes the same path with `.` components, doubled or trailing
/// slashes, and normalises it ([`sandbox_runner::output_path`]); the schema names the normal form
/// only, so two different names here are two different paths.
pub const OUTPUT_PATH_PATTERN: &str = concat!(
    r"^(?:[^\x00/\\.][^\x00/\\]*|\.[^\x00/\\.][^\x00/\\]*|\.\.[^\x00/\\]+)",
    r"(?:/(?:[^\x00/\\.][^\x00/\\]*|\.[^\x00/\\.][^\x00/\\]*|\.\.[^\x00/\\]+))*$"
);

/// The longest path of the output folder a request may name, in bytes.
pub const MAX_OUTPUT_PATH: usize = 4096;

/// The most paths one request or round names.
pub const MAX_PATHS: usize = 1000;

/// The longest reason for an exception, in bytes.
pub const MAX_EXCEPTION: usize = 16 * 1024;

fn output_path_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_OUTPUT_PATH))
        .pattern(Some(OUTPUT_PATH_PATTERN))
        .build()
}

/// `paths`: 1 to 1000 paths of the output folder.
fn paths_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(output_path_schema())
        .min_items(Some(1))
        .max_items(Some(MAX_PATHS))
        .description(Some(
            "Relative to `/vre/output`; a folder means the files under it.",
        ))
}

/// `exceptions`: a reason (1 to 16384 bytes, not blank) by path of the output folder.
fn exceptions_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(output_path_schema()))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_EXCEPTION))
                .pattern(Some(r"\S")),
        ))
        .max_properties(Some(MAX_PATHS))
        .description(Some(
            "Why a file that fails the checks should still go to the reviewers, by its path.",
        ))
        .build()
}

/// Files to take out of a sandbox's output folder.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NewEgress {
    #[schema(min_length = 1, max_length = 200)]
    pub sandbox: String,
    /// Relative to `/vre/output`; a folder means the files under it.
    #[schema(schema_with = paths_schema)]
    pub paths: Vec<String>,
    /// Why these results should leave: not blank, at most 65536 bytes.
    #[schema(min_length = 1, max_length = 65536, pattern = r"\S")]
    pub justification: String,
    /// Why a file that fails the checks should still go to the reviewers, by its path.
    #[serde(default)]
    #[schema(schema_with = exceptions_schema)]
    pub exceptions: BTreeMap<String, String>,
}

/// A new round of an egress application sent back for changes: new files.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct EgressResubmission {
    #[schema(schema_with = paths_schema)]
    pub paths: Vec<String>,
    /// The answer to the reviewers: not blank, at most 65536 bytes.
    #[schema(min_length = 1, max_length = 65536, pattern = r"\S")]
    pub comment: String,
    /// A new justification, if it changed: not blank, at most 65536 bytes.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 65536, pattern = r"\S")]
    pub justification: Option<String>,
    #[serde(default)]
    #[schema(schema_with = exceptions_schema)]
    pub exceptions: BTreeMap<String, String>,
}

/// One finding of a check, with where it is (row and column count from 1; in a table row 1 is
/// the header, column 0 the whole row).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct EgressFinding {
    pub rule: String,
    pub outcome: CheckOutcome,
    pub message: String,
    pub row: Option<u64>,
    pub column: Option<u64>,
}

/// One quarantined file.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct EgressFile {
    pub round: i64,
    /// Relative to `/vre/output`.
    pub path: String,
    pub size: i64,
    pub sha256: String,
    /// By content, not by name.
    pub content_type: String,
    pub outcome: CheckOutcome,
    pub findings: Vec<EgressFinding>,
    /// The analyst's reason why it should leave although it failed a check.
    pub exception: Option<String>,
}

/// One round: what was asked for and what the checks said of the request as a whole.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct EgressRound {
    pub round: i64,
    pub paths: Vec<String>,
    pub total_bytes: i64,
    pub outcome: CheckOutcome,
    pub findings: Vec<EgressFinding>,
    pub rules_version: String,
    pub requested_at: String,
}

/// An earlier egress application of the same project, released or rejected, with its files
/// (for differencing).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct EarlierEgress {
    pub application: String,
    pub state: String,
    pub at: String,
    pub files: Vec<EgressFile>,
}

/// A release: the encrypted package of an approved egress application.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Release {
    pub state: ReleaseState,
    pub round: i64,
    /// The age recipient it is encrypted to (registered when it was approved).
    pub recipient: String,
    pub approved_at: String,
    pub package_sha256: Option<String>,
    pub package_size: Option<i64>,
    pub built_at: Option<String>,
    pub expires_at: Option<String>,
    pub downloads: i64,
    pub detail: Option<String>,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<String>,
}

/// An egress application as reviewers read it: every round's files and checks, the project's
/// earlier releases and rejections, and the release.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct EgressDetail {
    pub application: Application,
    pub sandbox: String,
    pub rounds: Vec<EgressRound>,
    pub files: Vec<EgressFile>,
    pub history: Vec<EarlierEgress>,
    pub release: Option<Release>,
}

/// A new egress application or round, with what the checks found.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct EgressReceipt {
    pub id: String,
    pub application: Application,
    pub round: EgressRound,
    pub files: Vec<EgressFile>,
}

#[derive(Deserialize, IntoParams, Debug)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// The file, relative to `/vre/output`.
    pub path: String,
    /// The round (default: the current one).
    pub round: Option<i64>,
}

/// A cell of a table preview; `flagged` says which check marked it.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct PreviewCell {
    pub text: String,
    pub flagged: Option<CheckOutcome>,
}

/// What a reviewer sees of a file: the first rows of a table with flagged cells marked, the
/// start of a text, or an image's metadata.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Preview {
    pub file: EgressFile,
    /// `table`, `text`, `image` or `none`.
    pub kind: String,
    pub rows: Option<Vec<Vec<PreviewCell>>>,
    pub truncated: Option<bool>,
    pub text: Option<String>,
    pub image: Option<ImageMeta>,
    /// Why there is no preview.
    pub note: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct ImageMeta {
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub detail: String,
}

/// Why a release or an access is revoked.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// Not blank; at most 16384 bytes.
    #[schema(min_length = 1, max_length = 16384, pattern = r"\S")]
    pub reason: String,
}

/// The age recipient releases are encrypted to.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// An X25519 age recipient: `age1` and 58 characters of Bech32 (lowercase; its checksum
    /// is checked too).
    #[schema(
        min_length = 62,
        max_length = 62,
        pattern = r"^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$",
        example = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
    )]
    pub recipient: String,
}

/// A registered recipient, and the one it replaced.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct KeyRegistered {
    pub recipient: String,
    pub replaced: Option<String>,
}
