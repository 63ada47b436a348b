//! Applications to the committee: what is asked, how it stands, the votes and attachments.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ingress::Check;
use super::sandboxes::LogVisibility;
use super::{same_values, wire_enum};

wire_enum! {
    /// What an application asks for.
    ApplicationKind: "application kind" {
        Listing = "listing",
        Extension = "extension",
        Access = "access",
        Ingress = "ingress",
        Egress = "egress",
    }
}
same_values!(ApplicationKind <=> policy::review::Kind { Listing, Extension, Access, Ingress, Egress });

wire_enum! {
    /// The kinds of application made through `POST /api/v1/applications`: ingress and egress
    /// applications come with their content, through their own routes.
    NewApplicationKind: "application kind" {
        Listing = "listing",
        Extension = "extension",
        Access = "access",
    }
}

wire_enum! {
    /// Where an application stands: submitted, in review, decided, or the kind's final state.
    ApplicationState: "application state" {
        Submitted = "submitted",
        InReview = "in_review",
        Approved = "approved",
        Rejected = "rejected",
        ChangesRequested = "changes_requested",
        Withdrawn = "withdrawn",
        Staged = "staged",
        Released = "released",
        Listed = "listed",
        Extended = "extended",
    }
}
same_values!(ApplicationState <=> policy::review::State {
    Submitted, InReview, Approved, Rejected, ChangesRequested, Withdrawn, Staged, Released,
    Listed, Extended,
});

wire_enum! {
    /// One reviewer's vote.
    DecisionChoice: "decision" {
        Approve = "approve",
        Reject = "reject",
        RequestChanges = "request_changes",
    }
}
same_values!(DecisionChoice <=> policy::review::Choice { Approve, Reject, RequestChanges });

wire_enum! {
    /// What an attachment is: an institution's review result (stewards) or a committee
    /// opinion (reviewers).
    AttachmentKind: "attachment kind" {
        InstitutionReview = "institution_review",
        CommitteeOpinion = "committee_opinion",
    }
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Application {
    pub id: String,
    pub kind: ApplicationKind,
    /// The project it belongs to; `null` for a dataset's listing or extension.
    pub project: Option<String>,
    /// The dataset it belongs to (a dataset's listing or extension); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    pub requester: String,
    pub title: String,
    pub description: String,
    /// Kind-specific details.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// submitted, in_review, approved, rejected, changes_requested, withdrawn, or the kind's
    /// final state (staged, released, listed, extended).
    pub state: ApplicationState,
    /// Starts at 1; each resubmission opens a new round of votes.
    #[schema(minimum = 1)]
    pub round: i64,
    /// Approvals this kind needs.
    pub quorum: u32,
    /// Approvals counted in the current round.
    pub approvals: u32,
    pub created_at: String,
    pub updated_at: String,
}

impl Application {
    /// What it belongs to: its project or its dataset.
    pub fn belongs_to(&self) -> &str {
        self.project
            .as_deref()
            .or(self.dataset.as_deref())
            .unwrap_or("")
    }
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Decision {
    pub round: i64,
    pub reviewer: String,
    pub decision: DecisionChoice,
    pub comment: String,
    pub decided_at: String,
    /// The conditions set with an approval of an access application, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
}

/// Conditions an approving reviewer sets on an access application; each may only tighten what
/// it asks, and the strictest of the approving votes applies to its grants. Refused 400
/// `bad_conditions` on other kinds of application, with other decisions, or where they would
/// loosen what is asked.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// An earlier last day of access (`YYYY-MM-DD`, UTC): not past, not after the one asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Date)]
    pub until: Option<String>,
    /// `false`: no commercial use. `true` only where the application asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commercial: Option<bool>,
    /// `hidden`: runs of sandboxes mounting the datasets show the analysts only their
    /// output's size and digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogVisibility>,
}

/// What an approved access application grants its project on one dataset, with the
/// conditions that apply.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Grant {
    pub application: String,
    pub project: String,
    pub dataset: String,
    /// The last day in force (`YYYY-MM-DD`, UTC); none: until revoked.
    pub until: Option<String>,
    /// Whether commercial use is allowed.
    pub commercial: bool,
    /// Whether runs mounting the dataset show their output to the analysts.
    pub logs: LogVisibility,
    pub granted_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Attachment {
    pub id: String,
    pub kind: AttachmentKind,
    pub author: String,
    pub text: String,
    pub file_name: Option<String>,
    pub file_sha256: Option<String>,
    pub file_size: Option<i64>,
    pub created_at: String,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct ApplicationDetail {
    #[serde(flatten)]
    pub application: Application,
    pub decisions: Vec<Decision>,
    pub attachments: Vec<Attachment>,
    /// Automatic checks attached to the application (ingress archives, egress files).
    pub checks: Vec<Check>,
    /// What an approved access application grants, one per dataset; empty for other kinds.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// Filters of the list of applications. Kinds and states are parsed by the handler, so an
/// unknown one is answered `bad_filter`.
#[derive(Serialize, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = Option<ApplicationKind>)]
    pub kind: Option<String>,
    #[param(value_type = Option<ApplicationState>)]
    pub state: Option<String>,
    pub project: Option<String>,
    pub requester: Option<String>,
}

/// The kind is parsed by the handler, so an unknown one is answered `bad_kind`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApplication {
    /// listing, extension or access. Ingress and egress applications are made by uploading
    /// their content to their own routes, and an extension through its dataset's
    /// (`POST /api/v1/datasets/{id}/extension`): refused `wrong_route` here.
    #[schema(value_type = NewApplicationKind)]
    pub kind: String,
    pub project: String,
    /// Not blank; at most 500 bytes.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub title: String,
    /// At most 64 KiB.
    #[serde(default)]
    #[schema(max_length = 65536)]
    pub description: String,
    /// Kind-specific details, a JSON object. An access application's (required):
    /// `{"datasets": [ID...], "purpose": TEXT, "until": "YYYY-MM-DD", "commercial": BOOL}`
    /// (registered datasets; `until` and `commercial` optional), refused `bad_payload` or
    /// `bad_dataset` (naming the unknown ones) otherwise.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Option<serde_json::Value>,
}

/// The decision is parsed by the handler, so an unknown one is answered `bad_decision`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDecision {
    #[schema(value_type = DecisionChoice)]
    pub decision: String,
    /// Why; kept with the decision and in the audit log. Not blank; at most 64 KiB.
    #[schema(min_length = 1, max_length = 65536, pattern = r"\S")]
    pub comment: String,
    /// Conditions set with an approval of an access application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
}

#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    /// At most 64 KiB.
    #[serde(default)]
    #[schema(max_length = 65536)]
    pub comment: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resubmission {
    /// What changed. Not blank; at most 64 KiB.
    #[schema(min_length = 1, max_length = 65536, pattern = r"\S")]
    pub comment: String,
    /// A new description, replacing the old one. At most 64 KiB.
    #[serde(default)]
    #[schema(max_length = 65536)]
    pub description: Option<String>,
}

/// The kind is parsed by the handler, so an unknown one is answered `bad_attachment_kind`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAttachment {
    /// institution_review (stewards) or committee_opinion (reviewers).
    #[schema(value_type = AttachmentKind)]
    pub kind: String,
    /// Not blank; at most 256 KiB.
    #[schema(min_length = 1, max_length = 262144, pattern = r"\S")]
    pub text: String,
    /// The file's name, when a file comes with the text: 1 to 255 bytes, no slashes or
    /// control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255)]
    pub file_name: Option<String>,
    /// The file, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Byte)]
    pub file_base64: Option<String>,
}

/// What revoking an access application ended.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct AccessRevoked {
    pub application: String,
    /// The datasets whose access ended.
    pub datasets: Vec<String>,
    /// Live runs asked to stop: their sandbox mounts a dataset the project no longer has
    /// access to.
    pub cancelled_runs: Vec<String>,
}
