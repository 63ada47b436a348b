//! Error answers: every error body carries one of a fixed set of codes, listed in the OpenAPI
//! document, so clients can act on them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::wire_enum;

wire_enum! {
    /// Stable and machine-readable: what went wrong, independent of the message's wording.
    ErrorCode: "error code" {
        // Who is asking, and what they may do.
        Unauthenticated = "unauthenticated",
        Forbidden = "forbidden",
        SeparationOfDuties = "separation_of_duties",
        NotRequester = "not_requester",
        NotFound = "not_found",
        // Requests that do not parse or break a rule of their route.
        BadRequest = "bad_request",
        BadFilter = "bad_filter",
        BadKind = "bad_kind",
        BadDecision = "bad_decision",
        BadPayload = "bad_payload",
        BadAttachmentKind = "bad_attachment_kind",
        BadFile = "bad_file",
        BadFileName = "bad_file_name",
        BadMember = "bad_member",
        BadProjectId = "bad_project_id",
        BadTitle = "bad_title",
        BadName = "bad_name",
        BadImage = "bad_image",
        BadClass = "bad_class",
        BadDataset = "bad_dataset",
        /// The project has no approved access to a dataset it asked to mount.
        NoAccess = "no_access",
        /// The project's access to a dataset has expired or was revoked.
        AccessExpired = "access_expired",
        /// A dataset cannot be mounted: it is not listed (its content is not in the STORE).
        DatasetUnavailable = "dataset_unavailable",
        /// A DMP that breaks its rules: the message names every bad field.
        BadDmp = "bad_dmp",
        BadCommand = "bad_command",
        BadTimeout = "bad_timeout",
        MissingText = "missing_text",
        TooLong = "too_long",
        WrongRoute = "wrong_route",
        /// A `HEAD`: reads are `GET`s only, so that an audited read is always one that sent
        /// its bytes.
        MethodNotAllowed = "method_not_allowed",
        NotIngress = "not_ingress",
        NotApproved = "not_approved",
        ArchiveTampered = "archive_tampered",
        ImageNotAllowed = "image_not_allowed",
        /// A run's command broke the project's command policy (the message names the rule).
        CommandRefused = "command_refused",
        NotText = "not_text",
        NotImage = "not_image",
        /// A path of an egress request is not one under the output folder.
        BadPath = "bad_path",
        /// An exception names no file of the request, or is empty.
        BadException = "bad_exception",
        /// An age recipient that is not an X25519 `age1…` key.
        BadRecipient = "bad_recipient",
        /// Releases need the requester's registered age recipient (`vre keys init`).
        NoRecipient = "no_recipient",
        NotEgress = "not_egress",
        /// What was asked to leave is not regular files and folders (links, devices, …).
        OutputRefused = "output_refused",
        /// A file failed the disclosure checks and carries no exception.
        DisclosureCheckFailed = "disclosure_check_failed",
        TooLarge = "too_large",
        // Requests that come at the wrong time.
        AlreadyVoted = "already_voted",
        WrongState = "wrong_state",
        ConcurrentChange = "concurrent_change",
        ProjectExists = "project_exists",
        RunFinished = "run_finished",
        RunsActive = "runs_active",
        /// A run of the sandbox is writing its output folder.
        SandboxBusy = "sandbox_busy",
        /// Files are being copied out of the sandbox.
        SandboxHeld = "sandbox_held",
        ReleaseNotReady = "release_not_ready",
        ReleaseRevoked = "release_revoked",
        ReleaseExpired = "release_expired",
        /// The release could not be built (a quarantined file changed).
        ReleaseRefused = "release_refused",
        QueueFull = "queue_full",
        LogsHidden = "logs_hidden",
        /// A dataset's content is in the STORE already; it is uploaded once.
        DatasetListed = "dataset_listed",
        /// Conditions on an approval that do not tighten what an access application asks (or
        /// on another kind of application, or on another decision).
        BadConditions = "bad_conditions",
        /// An extension's new end of restricted sharing that is not a date after the current
        /// one, or a dataset that is not in restricted sharing.
        BadExtension = "bad_extension",
        // Archives refused by `policy::archive::rules`.
        ArchivePathAbsolute = "archive_path_absolute",
        ArchivePathTraversal = "archive_path_traversal",
        ArchivePathNul = "archive_path_nul",
        ArchivePathNotUtf8 = "archive_path_not_utf8",
        ArchivePathControlChar = "archive_path_control_char",
        ArchivePathBackslash = "archive_path_backslash",
        ArchivePathEmpty = "archive_path_empty",
        ArchivePathNotCanonical = "archive_path_not_canonical",
        ArchivePathTooDeep = "archive_path_too_deep",
        ArchivePathTooLong = "archive_path_too_long",
        ArchiveDuplicateEntry = "archive_duplicate_entry",
        ArchiveNameCollision = "archive_name_collision",
        ArchivePathConflict = "archive_path_conflict",
        ArchiveEntryType = "archive_entry_type",
        ArchiveSpecialBits = "archive_special_bits",
        ArchiveEntryTooLarge = "archive_entry_too_large",
        ArchiveTooManyEntries = "archive_too_many_entries",
        ArchiveUnpackedTooLarge = "archive_unpacked_too_large",
        ArchiveUploadTooLarge = "archive_upload_too_large",
        ArchiveCompressionRatio = "archive_compression_ratio",
        ArchiveTruncated = "archive_truncated",
        ArchiveCorrupt = "archive_corrupt",
        ArchiveNoFiles = "archive_no_files",
        // The gateway's side.
        EngineUnavailable = "engine_unavailable",
        EngineMisconfigured = "engine_misconfigured",
        Unavailable = "unavailable",
        Busy = "busy",
        Internal = "internal",
        /// A return from the identity provider that belongs to no sign-in this browser started
        /// (a forged or unknown state, one already used or expired, no binding cookie).
        BadSignIn = "bad_sign_in",
        /// The identity provider refused the sign-in, or its answer did not verify.
        SignInRefused = "sign_in_refused",
    }
}

impl From<policy::archive::rules::Rule> for ErrorCode {
    fn from(rule: policy::archive::rules::Rule) -> Self {
        use policy::archive::rules::Rule as R;
        match rule {
            R::PathAbsolute => ErrorCode::ArchivePathAbsolute,
            R::PathTraversal => ErrorCode::ArchivePathTraversal,
            R::PathNul => ErrorCode::ArchivePathNul,
            R::PathNotUtf8 => ErrorCode::ArchivePathNotUtf8,
            R::PathControlChar => ErrorCode::ArchivePathControlChar,
            R::PathBackslash => ErrorCode::ArchivePathBackslash,
            R::PathEmpty => ErrorCode::ArchivePathEmpty,
            R::PathNotCanonical => ErrorCode::ArchivePathNotCanonical,
            R::PathTooDeep => ErrorCode::ArchivePathTooDeep,
            R::PathTooLong => ErrorCode::ArchivePathTooLong,
            R::DuplicateEntry => ErrorCode::ArchiveDuplicateEntry,
            R::NameCollision => ErrorCode::ArchiveNameCollision,
            R::PathConflict => ErrorCode::ArchivePathConflict,
            R::EntryType => ErrorCode::ArchiveEntryType,
            R::SpecialBits => ErrorCode::ArchiveSpecialBits,
            R::EntryTooLarge => ErrorCode::ArchiveEntryTooLarge,
            R::TooManyEntries => ErrorCode::ArchiveTooManyEntries,
            R::UnpackedTooLarge => ErrorCode::ArchiveUnpackedTooLarge,
            R::UploadTooLarge => ErrorCode::ArchiveUploadTooLarge,
            R::CompressionRatio => ErrorCode::ArchiveCompressionRatio,
            R::Truncated => ErrorCode::ArchiveTruncated,
            R::Corrupt => ErrorCode::ArchiveCorrupt,
            R::NoFiles => ErrorCode::ArchiveNoFiles,
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// For a person to read.
    pub message: String,
    /// Each bad field of a document (a DMP: `bad_dmp`), when the refusal is about its fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldProblem>>,
}

/// One bad field of a document, named by its key and labelled in Japanese and English.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct FieldProblem {
    /// Its key: `title`, `consent.scope`, `creators[1].name`.
    pub field: String,
    pub label_ja: String,
    pub label_en: String,
    /// What is wrong with it, in English.
    pub problem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive rule's code and its error code are one string.
    #[test]
    fn archive_rules_keep_their_codes() {
        use policy::archive::rules::Rule as R;
        for rule in [
            R::PathAbsolute,
            R::PathTraversal,
            R::PathNul,
            R::PathNotUtf8,
            R::PathControlChar,
            R::PathBackslash,
            R::PathEmpty,
            R::PathNotCanonical,
            R::PathTooDeep,
            R::PathTooLong,
            R::DuplicateEntry,
            R::NameCollision,
            R::PathConflict,
            R::EntryType,
            R::SpecialBits,
            R::EntryTooLarge,
            R::TooManyEntries,
            R::UnpackedTooLarge,
            R::UploadTooLarge,
            R::CompressionRatio,
            R::Truncated,
            R::Corrupt,
            R::NoFiles,
        ] {
            assert_eq!(ErrorCode::from(rule).as_str(), rule.code());
        }
    }
}
