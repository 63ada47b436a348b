//! The authorization matrix: every route of the router, called by every kind of caller, against
//! the status the policy promises, on every engine.
//!
//! [`table`] is the whole policy at a glance: one row per route (routes whose body selects a
//! different rule, such as the kind of an application or attachment, get one row per kind), one
//! column per caller. Each cell runs against objects in the state its route needs (a project,
//! an application `submitted` or `changes_requested`, an attachment with a file), so a 2xx means
//! the action itself was allowed. Each cell also checks the audit chain: a refused request
//! leaves no trace in it, and an allowed write appends to it. That check is what lets cells of
//! one row share their objects until one of them changes something: from then on the row's next
//! cell gets freshly prepared ones.
//!
//! The sandbox rows need a container engine (their fixtures are real sandboxes and runs): where
//! no Docker engine answers they are skipped, and the rest of the matrix still runs. They stay
//! in the table either way, so the coverage check sees every route.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Engine, TEST_IMAGE, TestApp, docker_available, engines};

mod prepare;
use prepare::*;

/// Who calls. Members are members of the project the called object belongs to; everyone else
/// is a member of no project, except the outsider, who is an analyst in another one. For a
/// dataset the institution stands for the project: the steward member speaks for the dataset's
/// institution, the lone steward for another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// No `Authorization` header at all.
    Anon,
    /// A valid token that carries no role.
    NoRole,
    Analyst,
    Reviewer,
    Operator,
    Steward,
    Auditor,
    Admin,
    /// An analyst member of the project, and the requester of its application.
    Requester,
    /// An analyst member of the project who did not make the application.
    Colleague,
    /// A steward member of the project.
    StewardMember,
    /// An analyst member of another project.
    Outsider,
}

/// The columns of [`table`], in order.
const WHO: [Who; 12] = [
    Who::Anon,
    Who::NoRole,
    Who::Analyst,
    Who::Reviewer,
    Who::Operator,
    Who::Steward,
    Who::Auditor,
    Who::Admin,
    Who::Requester,
    Who::Colleague,
    Who::StewardMember,
    Who::Outsider,
];

impl Who {
    /// Subject and global roles of the caller's token.
    fn identity(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Who::Anon => return None,
            Who::NoRole => ("nobody", ""),
            Who::Analyst => ("lone-analyst", "analyst"),
            Who::Reviewer => ("rev", "reviewer"),
            Who::Operator => ("op", "operator"),
            Who::Steward => ("lone-steward", "steward"),
            Who::Auditor => ("aud", "auditor"),
            Who::Admin => ("root", "admin"),
            Who::Requester => ("ana", "analyst"),
            Who::Colleague => ("cole", "analyst"),
            Who::StewardMember => ("sue", "steward"),
            Who::Outsider => ("bob", "analyst"),
        })
    }

    /// The institution the caller's token names.
    fn institution(self) -> Option<&'static str> {
        match self {
            Who::Steward => Some(OTHER_INSTITUTION),
            Who::StewardMember => Some(INSTITUTION),
            _ => None,
        }
    }
}

/// The institution of the datasets the table's rows act on, and another.
const INSTITUTION: &str = "matrix-u";
const OTHER_INSTITUTION: &str = "other-u";
/// The dataset access applications name (`TestApp::support_dataset`).
const SUPPORT_DATASET: &str = "ds-support";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// What a cell needs to exist before its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prep {
    Nothing,
    /// A project with the members (requester, colleague, steward member, and `leaver`).
    Project,
    /// The project and an access application of the requester's, `submitted`.
    Submitted,
    /// The same application, sent back by a reviewer: `changes_requested`.
    ChangesRequested,
    /// The submitted application with an institution review that has a file.
    WithFile,
    /// The project and an ingress application of the requester's (an archive with `main.py`).
    Ingress,
    /// The project, and the test image allowed for sandboxes.
    Allowed,
    /// A sandbox of the project, on the allowed image.
    Sandbox,
    /// The sandbox and an ingress application of the requester's, approved (ready to stage).
    Staging,
    /// The sandbox and a run of the requester's in it, finished.
    Run,
    /// The sandbox and a run of the requester's in it, running (for a minute).
    LiveRun,
    /// Every analyst caller (the lone analyst, the requester, the colleague, the outsider) has
    /// registered an age recipient for releases.
    Keys,
    /// A sandbox whose output folder holds `counts.csv`, written by a finished run of the
    /// requester's; the requester and the colleague have registered recipients.
    Output,
    /// That output, asked for by the requester: an egress application, `submitted`.
    Egress,
    /// The same egress application, sent back by a reviewer: `changes_requested`.
    EgressChangesRequested,
    /// The same egress application, approved by two reviewers and `released` (its package
    /// built).
    Released,
    /// A dataset of the steward member's institution, registered by them, and its listing
    /// application (`submitted`).
    Dataset,
    /// The same, its listing approved by the committee: the dataset awaits its content.
    ListingApproved,
}

impl Prep {
    /// Whether the fixture lives on the container engine.
    fn needs_engine(self) -> bool {
        matches!(
            self,
            Prep::Allowed
                | Prep::Sandbox
                | Prep::Staging
                | Prep::Run
                | Prep::LiveRun
                | Prep::Output
                | Prep::Egress
                | Prep::EgressChangesRequested
                | Prep::Released
        )
    }
}

/// The archive ingress rows upload (and the one `Prep::Ingress` submits).
fn small_tar() -> Vec<u8> {
    use policy::archive::tar::{END, EntryKind, entry_header, padding};
    let data = b"print('hello')\n";
    let mut t = entry_header("main.py", EntryKind::File, data.len() as u64, 0o644);
    t.extend_from_slice(data);
    t.extend(std::iter::repeat_n(0u8, padding(data.len() as u64)));
    t.extend_from_slice(&END);
    t
}

/// Whether an allowed request appends to the audit log. A refused one never does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Reads,
    Writes,
    /// Writes, and starts a run whose supervisor goes on appending (its start and its end):
    /// the cell waits for the run to finish before it reads the audit log's head, so the next
    /// cell starts from a quiet log.
    Starts,
}

/// The objects one cell was prepared with; `n` makes its names unique.
struct World {
    n: usize,
    project: String,
    dataset: String,
    app: String,
    attachment: String,
    sandbox: String,
    run: String,
}

type Body = fn(&World) -> Option<Value>;

struct Row {
    method: Method,
    /// The route as the router (and the OpenAPI document) spells it; `{id}` is the project, the
    /// application, the sandbox or the run, `{subject}` the member to remove, `{attachment}`
    /// the attachment.
    path: &'static str,
    prep: Prep,
    body: Body,
    effect: Effect,
    /// One status per caller, in the order of [`WHO`].
    expect: [u16; 12],
}

impl Row {
    /// Whether the row needs a container engine: its fixtures are on one, or its allowed
    /// request asks one (allowing an image pins the ID the engine has for it).
    fn needs_engine(&self) -> bool {
        self.prep.needs_engine() || (self.method == Method::Post && self.path == "/api/v1/images")
    }
}

fn row(
    method: Method,
    path: &'static str,
    prep: Prep,
    body: Body,
    effect: Effect,
    expect: [u16; 12],
) -> Row {
    Row {
        method,
        path,
        prep,
        body,
        effect,
        expect,
    }
}

fn none(_: &World) -> Option<Value> {
    None
}
fn new_project(w: &World) -> Option<Value> {
    Some(json!({"id": format!("new-{}", w.n), "title": "A new project"}))
}
fn new_member(_: &World) -> Option<Value> {
    Some(json!({"subject": "newcomer", "role": "analyst"}))
}
fn access_app(w: &World) -> Option<Value> {
    Some(json!({
        "kind": "access",
        "project": w.project,
        "title": "Access, please",
        "payload": {"datasets": [SUPPORT_DATASET], "purpose": "a cohort study"},
    }))
}
fn listing_app(w: &World) -> Option<Value> {
    Some(json!({"kind": "listing", "project": w.project, "title": "List our dataset"}))
}
fn approve(_: &World) -> Option<Value> {
    Some(json!({"decision": "approve", "comment": "fine"}))
}
fn withdrawal(_: &World) -> Option<Value> {
    Some(json!({"comment": "not needed any more"}))
}
fn resubmission(_: &World) -> Option<Value> {
    Some(json!({"comment": "clarified", "description": "a better why"}))
}
fn institution_review(_: &World) -> Option<Value> {
    Some(
        json!({"kind": "institution_review", "text": "Approved.", "file_name": "r.txt", "file_base64": "aGk="}),
    )
}
fn committee_opinion(_: &World) -> Option<Value> {
    Some(json!({"kind": "committee_opinion", "text": "No concerns."}))
}
fn test_image(_: &World) -> Option<Value> {
    Some(json!({"name": TEST_IMAGE}))
}
fn new_sandbox(w: &World) -> Option<Value> {
    Some(json!({"project": w.project, "image": TEST_IMAGE}))
}
fn staging(w: &World) -> Option<Value> {
    Some(json!({"application": w.app}))
}
fn new_run(_: &World) -> Option<Value> {
    Some(json!({"cmd": ["true"]}))
}
fn new_egress(w: &World) -> Option<Value> {
    Some(
        json!({"sandbox": w.sandbox, "paths": [OUTPUT_FILE], "justification": "aggregates for the paper"}),
    )
}
fn egress_round(_: &World) -> Option<Value> {
    Some(json!({"paths": [OUTPUT_FILE], "comment": "checked again"}))
}
fn revocation(_: &World) -> Option<Value> {
    Some(json!({"reason": "sent to the wrong place"}))
}
fn new_dataset(_: &World) -> Option<Value> {
    Some(json!({"dmp": crate::datasets::example_dmp(INSTITUTION)}))
}
fn new_extension(_: &World) -> Option<Value> {
    Some(json!({"until": "2036-03-31", "justification": "the follow-up study"}))
}
fn recipient(_: &World) -> Option<Value> {
    Some(json!({"recipient": gateway::release::new_identity().1}))
}

/// The file `Prep::Output` writes into the sandbox's output folder, and what it holds.
const OUTPUT_FILE: &str = "counts.csv";
const OUTPUT_SCRIPT: &str = "printf 'group,count\\nA,25\\n' > /vre/output/counts.csv";

/// The policy. Reads of one object answer 404 to callers who may not see it (they must not
/// learn it exists); callers who may see it but not act on it get 403; no token is 401.
///
/// Columns ([`Who`]): no token; a token without roles; one role each, member of no project;
/// the requester (an analyst member of the object's project), an analyst colleague and a
/// steward member of that project; an analyst member of another project.
#[rustfmt::skip]
fn table() -> Vec<Row> {
    use Effect::*;
    use Method::*;
    use Prep::*;
    vec![
        //                                                                                                                    -------- member of no project ---------   - its project -  another
        //                                                                                                                    anon none anal revw oper stew audi admn   reqr coll stwm   proj
        row(Get,    "/healthz",                                                Nothing,          none,               Reads,  [200, 200, 200, 200, 200, 200, 200, 200,   200, 200, 200,   200]),
        row(Get,    "/openapi.json",                                           Nothing,          none,               Reads,  [200, 200, 200, 200, 200, 200, 200, 200,   200, 200, 200,   200]),
        row(Get,    "/.well-known/jwks.json",                                  Nothing,          none,               Reads,  [200, 200, 200, 200, 200, 200, 200, 200,   200, 200, 200,   200]),
        row(Get,    "/api/v1/catalog",                                         Nothing,          none,               Reads,  [200, 200, 200, 200, 200, 200, 200, 200,   200, 200, 200,   200]),
        row(Get,    "/metrics",                                                Nothing,          none,               Reads,  [401, 403, 403, 403, 200, 403, 200, 200,   403, 403, 403,   403]),
        row(Get,    "/api/v1/whoami",                                          Nothing,          none,               Reads,  [401, 200, 200, 200, 200, 200, 200, 200,   200, 200, 200,   200]),
        row(Get,    "/api/v1/audit",                                           Nothing,          none,               Reads,  [401, 403, 403, 403, 403, 403, 200, 200,   403, 403, 403,   403]),
        row(Get,    "/api/v1/audit/verify",                                    Nothing,          none,               Reads,  [401, 403, 403, 403, 403, 403, 200, 200,   403, 403, 403,   403]),
        row(Get,    "/api/v1/projects",                                        Nothing,          none,               Reads,  [401, 403, 200, 200, 200, 200, 200, 200,   200, 200, 200,   200]),
        row(Post,   "/api/v1/projects",                                        Nothing,          new_project,        Writes, [401, 403, 403, 403, 403, 403, 403, 201,   403, 403, 403,   403]),
        row(Get,    "/api/v1/projects/{id}",                                   Project,          none,               Reads,  [401, 404, 404, 200, 200, 404, 200, 200,   200, 200, 200,   404]),
        row(Post,   "/api/v1/projects/{id}/members",                           Project,          new_member,         Writes, [401, 403, 403, 403, 403, 403, 403, 200,   403, 403, 403,   403]),
        row(Delete, "/api/v1/projects/{id}/members/{subject}",                 Project,          none,               Writes, [401, 403, 403, 403, 403, 403, 403, 200,   403, 403, 403,   403]),
        row(Get,    "/api/v1/applications",                                    Nothing,          none,               Reads,  [401, 403, 200, 200, 200, 200, 200, 200,   200, 200, 200,   200]),
        row(Post,   "/api/v1/applications",                                    Project,          access_app,         Writes, [401, 403, 403, 403, 403, 403, 403, 403,   201, 201, 403,   403]),
        row(Post,   "/api/v1/applications",                                    Project,          listing_app,        Writes, [401, 403, 403, 403, 403, 403, 403, 403,   403, 403, 201,   403]),
        row(Get,    "/api/v1/applications/{id}",                               Submitted,        none,               Reads,  [401, 404, 404, 200, 404, 200, 200, 200,   200, 200, 200,   404]),
        row(Post,   "/api/v1/applications/{id}/decisions",                     Submitted,        approve,            Writes, [401, 403, 403, 200, 403, 403, 403, 403,   403, 403, 403,   403]),
        row(Post,   "/api/v1/applications/{id}/withdraw",                      Submitted,        withdrawal,         Writes, [401, 403, 404, 403, 403, 403, 403, 403,   200, 403, 403,   404]),
        row(Post,   "/api/v1/applications/{id}/resubmit",                      ChangesRequested, resubmission,       Writes, [401, 403, 404, 403, 403, 403, 403, 403,   200, 403, 403,   404]),
        row(Post,   "/api/v1/applications/{id}/attachments",                   Submitted,        institution_review, Writes, [401, 403, 403, 403, 403, 201, 403, 403,   403, 403, 201,   403]),
        row(Post,   "/api/v1/applications/{id}/attachments",                   Submitted,        committee_opinion,  Writes, [401, 403, 403, 201, 403, 403, 403, 403,   403, 403, 403,   403]),
        row(Get,    "/api/v1/applications/{id}/attachments/{attachment}/file", WithFile,         none,               Writes, [401, 404, 404, 200, 404, 403, 403, 403,   200, 200, 200,   404]),
        row(Post,   "/api/v1/ingress",                                         Project,          none,               Writes, [401, 403, 403, 403, 403, 403, 403, 403,   201, 201, 403,   403]),
        row(Get,    "/api/v1/applications/{id}/manifest",                      Ingress,          none,               Reads,  [401, 404, 404, 200, 404, 200, 200, 200,   200, 200, 200,   404]),
        row(Get,    "/api/v1/applications/{id}/file",                          Ingress,          none,               Writes, [401, 404, 404, 200, 404, 403, 403, 403,   200, 200, 200,   404]),
        row(Get,    "/api/v1/images",                                          Nothing,          none,               Reads,  [401, 403, 200, 200, 200, 200, 200, 200,   200, 200, 200,   200]),
        row(Post,   "/api/v1/images",                                          Nothing,          test_image,         Writes, [401, 403, 403, 403, 200, 403, 403, 403,   403, 403, 403,   403]),
        row(Get,    "/api/v1/sandboxes",                                       Nothing,          none,               Reads,  [401, 403, 200, 200, 200, 200, 200, 200,   200, 200, 200,   200]),
        row(Post,   "/api/v1/sandboxes",                                       Allowed,          new_sandbox,        Writes, [401, 403, 403, 403, 201, 403, 403, 403,   201, 201, 403,   403]),
        row(Get,    "/api/v1/sandboxes/{id}",                                  Sandbox,          none,               Reads,  [401, 404, 404, 404, 200, 404, 200, 200,   200, 200, 404,   404]),
        row(Post,   "/api/v1/sandboxes/{id}/ingress",                          Staging,          staging,            Writes, [401, 403, 404, 403, 200, 403, 403, 403,   200, 200, 403,   404]),
        row(Get,    "/api/v1/sandboxes/{id}/runs",                             Run,              none,               Reads,  [401, 404, 404, 404, 200, 404, 200, 200,   200, 200, 404,   404]),
        row(Post,   "/api/v1/sandboxes/{id}/runs",                             Sandbox,          new_run,            Starts, [401, 403, 404, 403, 403, 403, 403, 403,   202, 202, 403,   404]),
        row(Get,    "/api/v1/runs/{id}",                                       Run,              none,               Reads,  [401, 404, 404, 404, 200, 404, 200, 200,   200, 200, 404,   404]),
        row(Get,    "/api/v1/runs/{id}/logs",                                  Run,              none,               Writes, [401, 404, 404, 404, 403, 404, 403, 403,   200, 200, 404,   404]),
        row(Post,   "/api/v1/runs/{id}/cancel",                                LiveRun,          none,               Starts, [401, 404, 404, 404, 202, 404, 403, 403,   202, 202, 404,   404]),
        row(Delete, "/api/v1/sandboxes/{id}",                                  Sandbox,          none,               Writes, [401, 404, 404, 404, 200, 404, 403, 403,   200, 200, 404,   404]),
        row(Put,    "/api/v1/keys/me",                                         Nothing,          recipient,          Writes, [401, 403, 200, 403, 403, 403, 403, 403,   200, 200, 403,   200]),
        row(Get,    "/api/v1/keys/me",                                         Keys,             none,               Reads,  [401, 403, 200, 403, 403, 403, 403, 403,   200, 200, 403,   200]),
        row(Post,   "/api/v1/egress",                                          Output,           new_egress,         Writes, [401, 403, 404, 403, 403, 403, 403, 403,   201, 201, 403,   404]),
        row(Get,    "/api/v1/applications/{id}/egress",                        Egress,           none,               Reads,  [401, 404, 404, 200, 404, 404, 200, 200,   200, 200, 200,   404]),
        row(Post,   "/api/v1/applications/{id}/egress",                        EgressChangesRequested, egress_round, Writes, [401, 403, 404, 403, 403, 403, 403, 403,   200, 403, 403,   404]),
        row(Get,    "/api/v1/applications/{id}/egress/preview",                Egress,           none,               Writes, [401, 404, 404, 200, 404, 403, 403, 403,   403, 403, 403,   404]),
        row(Get,    "/api/v1/applications/{id}/release",                       Released,         none,               Writes, [401, 404, 404, 403, 404, 403, 403, 403,   200, 403, 403,   404]),
        row(Post,   "/api/v1/applications/{id}/release/revoke",                Released,         revocation,         Writes, [401, 403, 403, 403, 200, 403, 403, 200,   403, 403, 403,   403]),
        row(Post,   "/api/v1/applications/{id}/access/revoke",                 Submitted,        revocation,         Writes, [401, 403, 403, 403, 403, 403, 403, 409,   403, 403, 403,   403]),
        // Datasets: the steward member is the dataset's institution's, the lone steward another's.
        row(Get,    "/api/v1/datasets",                                        Nothing,          none,               Reads,  [401, 403, 403, 200, 403, 200, 200, 200,   403, 403, 200,   403]),
        row(Post,   "/api/v1/datasets",                                        Nothing,          new_dataset,        Writes, [401, 403, 403, 403, 403, 403, 403, 403,   403, 403, 201,   403]),
        row(Get,    "/api/v1/datasets/{id}",                                   Dataset,          none,               Reads,  [401, 404, 404, 200, 404, 404, 200, 200,   404, 404, 200,   404]),
        row(Get,    "/api/v1/datasets/{id}/dmp",                               Dataset,          none,               Reads,  [401, 404, 404, 200, 404, 404, 200, 200,   404, 404, 200,   404]),
        row(Get,    "/api/v1/datasets/{id}/history",                           Dataset,          none,               Reads,  [401, 404, 404, 200, 404, 404, 200, 200,   404, 404, 200,   404]),
        row(Post,   "/api/v1/datasets/{id}/extension",                         Dataset,          new_extension,      Writes, [401, 403, 403, 403, 403, 404, 403, 403,   403, 403, 201,   403]),
        // A dataset's listing application: its institution's steward applied (the requester).
        row(Get,    "/api/v1/applications/{id}",                               Dataset,          none,               Reads,  [401, 404, 404, 200, 404, 200, 200, 200,   404, 404, 200,   404]),
        row(Post,   "/api/v1/applications/{id}/decisions",                     Dataset,          approve,            Writes, [401, 403, 403, 200, 403, 403, 403, 403,   403, 403, 403,   403]),
        row(Post,   "/api/v1/applications/{id}/withdraw",                      Dataset,          withdrawal,         Writes, [401, 403, 404, 403, 403, 403, 403, 403,   404, 404, 200,   404]),
        // Its content, once the listing is approved: that institution's stewards only.
        row(Post,   "/api/v1/datasets/{id}/content",                           ListingApproved,  none,               Writes, [401, 403, 403, 403, 403, 404, 403, 403,   403, 403, 201,   403]),
    ]
}

/// The error code every refusal of a status carries.
fn code_of(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("unauthenticated"),
        403 => Some("forbidden"),
        404 => Some("not_found"),
        _ => None,
    }
}

/// Runs every cell of the table against one gateway; returns the cells that went wrong. The
/// rows that need a container engine run only when `engine` is set.
async fn run_matrix(app: &TestApp, engine: bool) -> Vec<String> {
    app.project("elsewhere", &[("bob", "analyst")]).await;
    assert_eq!(app.support_dataset().await, SUPPORT_DATASET);
    let tokens: Vec<Option<String>> = WHO
        .iter()
        .map(|w| {
            w.identity()
                .map(|(sub, roles)| app.token_for(sub, roles, w.institution()))
        })
        .collect();
    let mut failures = Vec::new();
    let mut n = 0;
    for row in table() {
        if row.needs_engine() && !engine {
            continue;
        }
        let mut world = None;
        for (col, who) in WHO.iter().enumerate() {
            n += 1;
            let w = match world.take() {
                Some(w) => w,
                None => prepare(app, n, row.prep).await,
            };
            let path = path_of(&row, &w);
            let method = match row.method {
                Method::Get => reqwest::Method::GET,
                Method::Post => reqwest::Method::POST,
                Method::Put => reqwest::Method::PUT,
                Method::Delete => reqwest::Method::DELETE,
            };
            let before = audit_seq(app).await;
            let raw = ["/api/v1/ingress", "/api/v1/datasets/{id}/content"];
            let (status, body) = if raw.contains(&row.path) {
                app.request_raw(method.clone(), &path, tokens[col].as_deref(), small_tar())
                    .await
            } else {
                app.request(
                    method.clone(),
                    &path,
                    tokens[col].as_deref(),
                    (row.body)(&w).as_ref(),
                )
                .await
            };
            if row.effect == Effect::Starts && status.is_success() {
                let run = body["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no run id: {body}"));
                finished_run(app, run).await;
            }
            let after = audit_seq(app).await;
            let cell = format!("{method} {} as {who:?}", row.path);
            let want = row.expect[col];
            if status.as_u16() != want {
                failures.push(format!("{cell}: got {status}, want {want}: {body}"));
            } else if let Some(code) = code_of(want).filter(|c| body["code"] != *c) {
                failures.push(format!("{cell}: code {}, want {code}", body["code"]));
            }
            let wrote = after > before;
            let should_write = status.is_success() && row.effect != Effect::Reads;
            if wrote != should_write {
                failures.push(format!(
                    "{cell}: the audit log went from {before} to {after} on a {status}"
                ));
            }
            // Untouched objects serve the row's next caller; touched ones are prepared anew.
            if !wrote {
                world = Some(w);
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_the_policy_says() {
    let docker = docker_available();
    // Every gateway is stopped, whatever happens to it or to the others (stopping removes the
    // sandboxes and containers it made on the engine): a panic is caught where it happens and
    // raised again only once all engines are done.
    let runs = engines().into_iter().map(|engine| {
        AssertUnwindSafe(async move {
            let app = TestApp::spawn(engine).await;
            let failures = AssertUnwindSafe(run_matrix(&app, docker))
                .catch_unwind()
                .await;
            app.stop().await;
            failures
        })
        .catch_unwind()
        .map(move |r| (engine, r.and_then(|f| f)))
    });
    let mut panics = Vec::new();
    let mut differ = Vec::new();
    for (engine, outcome) in futures_util::future::join_all(runs).await {
        match outcome {
            Ok(failures) if failures.is_empty() => {}
            Ok(failures) => differ.push(format!(
                "{engine:?}: {} cells differ from the table:\n{}",
                failures.len(),
                failures.join("\n")
            )),
            Err(panic) => panics.push(panic),
        }
    }
    if let Some(panic) = panics.into_iter().next() {
        std::panic::resume_unwind(panic);
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// The table cannot silently fall behind the router: its routes are exactly the OpenAPI
/// document's operations plus the two routes the document does not describe.
#[tokio::test]
async fn the_table_covers_every_route() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let (st, doc) = app.get("/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    let mut routed: Vec<(String, String)> = vec![
        ("get".into(), "/openapi.json".into()),
        ("get".into(), "/.well-known/jwks.json".into()),
    ];
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            routed.push((method.clone(), path.clone()));
        }
    }
    let mut tabled: Vec<(String, String)> = table()
        .iter()
        .map(|r| (format!("{:?}", r.method).to_lowercase(), r.path.to_owned()))
        .collect();
    routed.sort();
    tabled.sort();
    tabled.dedup();
    assert_eq!(tabled, routed);
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_under_the_api_are_json_404s() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let admin = app.token("root", "admin");
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/nope"),
        (reqwest::Method::GET, "/api/v1/projects/p1/secrets"),
        (reqwest::Method::POST, "/api/v1/applications/x/approve"),
        (reqwest::Method::DELETE, "/api/v1"),
    ] {
        for token in [None, Some(admin.as_str())] {
            let (st, body) = app.request(method.clone(), path, token, None).await;
            assert_eq!(st, StatusCode::NOT_FOUND, "{method} {path}: {body}");
            assert_eq!(body["code"], "not_found", "{method} {path}: {body}");
            assert!(body["message"].is_string(), "{body}");
        }
    }
    app.stop().await;
}

/// What each caller sees in a list: [their own project's, the other project's] object.
type Sees = [bool; 2];

/// Who sees which projects, applications and sandboxes, by [`policy::access::scope`]: the
/// same rule for lists and single reads.
fn expected_sight(who: Who) -> Option<(Sees, Sees, Sees)> {
    const BOTH: Sees = [true, true];
    const NONE: Sees = [false, false];
    const OWN: Sees = [true, false];
    const OTHER: Sees = [false, true];
    Some(match who {
        Who::Anon | Who::NoRole => return None,
        Who::Analyst => (NONE, NONE, NONE),
        Who::Reviewer => (BOTH, BOTH, NONE),
        // Operators run the host: every project and sandbox, no application.
        Who::Operator => (BOTH, NONE, BOTH),
        // Stewards see every application (to attach their institution's review results), and
        // only their own projects.
        Who::Steward => (NONE, BOTH, NONE),
        Who::Auditor | Who::Admin => (BOTH, BOTH, BOTH),
        Who::Requester | Who::Colleague => (OWN, OWN, OWN),
        Who::StewardMember => (OWN, BOTH, NONE),
        Who::Outsider => (OTHER, OTHER, OTHER),
    })
}

/// The ids a list answers with.
async fn listed(app: &TestApp, path: &str, token: &str) -> Vec<String> {
    let (st, b) = app.get(path, Some(token)).await;
    assert_eq!(st, StatusCode::OK, "{path}: {b}");
    let mut ids: Vec<String> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Lists hold exactly what each caller may open, and what the visibility rule says they see:
/// nobody lists an object whose read answers 404, nor misses one they may read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_hold_exactly_what_each_caller_may_open() {
    let docker = docker_available();
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let outcome = AssertUnwindSafe(async {
            let prep = if docker { Prep::Sandbox } else { Prep::Project };
            let own = prepare(&app, 1, prep).await;
            let own_app = app
                .application("access", &own.project, "ana", "analyst")
                .await;
            app.project("elsewhere", &[("bob", "analyst")]).await;
            let other_app = app
                .application("access", "elsewhere", "bob", "analyst")
                .await;
            let other_sandbox = if docker {
                let bob = app.token("bob", "analyst");
                app.new_sandbox(&bob, "elsewhere").await
            } else {
                String::new()
            };
            let resources = [
                (
                    "/api/v1/projects",
                    [own.project.clone(), "elsewhere".into()],
                ),
                ("/api/v1/applications", [own_app.clone(), other_app.clone()]),
                ("/api/v1/sandboxes", [own.sandbox.clone(), other_sandbox]),
            ];
            for who in WHO {
                let Some((sub, roles)) = who.identity() else {
                    continue;
                };
                let token = app.token(sub, roles);
                let Some(sight) = expected_sight(who) else {
                    for (list, _) in &resources {
                        let (st, b) = app.get(list, Some(&token)).await;
                        assert_eq!(st, StatusCode::FORBIDDEN, "{who:?} {list}: {b}");
                    }
                    continue;
                };
                let sights = [sight.0, sight.1, sight.2];
                for ((list, ids), sees) in resources.iter().zip(sights) {
                    if list.ends_with("sandboxes") && !docker {
                        continue;
                    }
                    let mut readable = Vec::new();
                    for (id, seen) in ids.iter().zip(sees) {
                        let (st, b) = app.get(&format!("{list}/{id}"), Some(&token)).await;
                        let want = if seen {
                            StatusCode::OK
                        } else {
                            StatusCode::NOT_FOUND
                        };
                        assert_eq!(st, want, "{who:?} reads {list}/{id}: {b}");
                        if seen {
                            readable.push(id.clone());
                        }
                    }
                    readable.sort();
                    assert_eq!(
                        listed(&app, list, &token).await,
                        readable,
                        "{who:?} lists {list}"
                    );
                }
            }
        })
        .catch_unwind()
        .await;
        app.stop().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}
