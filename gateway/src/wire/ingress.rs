//! Ingress: archives uploaded for review, their manifest and automatic checks.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::applications::Application;
use super::{same_values, wire_enum};
pub use crate::store::ingress::ManifestEntry;

wire_enum! {
    /// The result of an automatic check: `review` asks a reviewer to look closer.
    CheckOutcome: "check outcome" {
        Pass = "pass",
        Review = "review",
        Fail = "fail",
    }
}
same_values!(CheckOutcome <=> policy::archive::checks::Outcome { Pass, Review, Fail });

/// Where an upload goes; the archive itself is the request body.
#[derive(Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngressQuery {
    /// The project the archive is for; the caller must be one of its analysts.
    pub project: String,
    /// A name for the archive (the application's title): 1 to 200 printable characters.
    #[param(min_length = 1, max_length = 200)]
    pub name: String,
    /// Why it is needed, for the committee. At most 64 KiB, and the whole query string, percent-encoded,
    /// at most 64 KiB too (longer ones are answered 414): 4096 characters always fit.
    #[serde(default)]
    #[param(max_length = 4096)]
    pub description: Option<String>,
}

/// An upload's body: the archive's bytes (tar, or tar compressed with zstd), streamed.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ArchiveUpload(pub Vec<u8>);

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Check {
    pub check: String,
    pub outcome: CheckOutcome,
    pub reasons: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct ArchiveInfo {
    pub name: String,
    /// SHA-256 of the upload as sent.
    pub sha256: String,
    /// tar or tar.zst
    pub format: String,
    pub upload_bytes: u64,
    /// SHA-256 of the uncompressed tar stream.
    pub tar_sha256: String,
    pub unpacked_bytes: u64,
    pub entries: u64,
    pub files: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct IngressReceipt {
    pub application: Application,
    pub archive: ArchiveInfo,
    /// The worst outcome of the checks.
    pub checks_outcome: CheckOutcome,
    pub checks: Vec<Check>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Manifest {
    pub archive: ArchiveInfo,
    pub checks: Vec<Check>,
    pub entries: Vec<ManifestEntry>,
}

#[derive(Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The file's path in the manifest.
    pub path: String,
}
