//! Applications to the committee: the machinery every kind shares.
//!
//! Votes, withdrawals and resubmissions run the same way: in one write transaction, load the
//! facts, ask `policy::review::next_state`, store the answer with its audit events, commit. The
//! write transaction holds the chain lock, so two reviewers voting at once are counted one after
//! the other and a quorum is reached exactly once.

use policy::access::{Action, Resource, Standing};
use policy::review::{CastVote, Choice, Event, Facts, Kind, Refusal, State};
use serde_json::json;

use super::page::{Page, PageAsk, Window};
use super::{Allowed, Error, Narrow, Result, Seen, allow, check_text, narrow, see};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store::{self, AppFilter, AppRow, AttachmentRow, CheckRow, DecisionRow};

/// An application with the votes of every round.
#[derive(Debug, Clone)]
pub struct Summary {
    pub row: AppRow,
    pub decisions: Vec<DecisionRow>,
}

/// An application with everything a reviewer reads about it.
#[derive(Debug)]
pub struct Detail {
    pub row: AppRow,
    pub decisions: Vec<DecisionRow>,
    pub attachments: Vec<AttachmentRow>,
    pub checks: Vec<CheckRow>,
    /// An access application's grants (once approved) and its reviewers' conditions.
    pub grants: Vec<crate::store::access::GrantRow>,
    pub conditions: Vec<crate::store::access::ConditionRow>,
}

/// What a list asks for.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub kind: Option<Kind>,
    pub state: Option<State>,
    pub project: Option<String>,
    pub requester: Option<String>,
    /// The page, newest first.
    pub page: PageAsk,
}

/// Applications the caller may see, newest first: exactly those [`show`] opens for them.
/// Two queries a page, whatever its size: the applications, then their votes (and, for a
/// member, their projects first).
pub async fn list(state: &AppState, caller: &Caller, f: ListFilter) -> Result<Page<Summary>> {
    allow(caller, Action::AppList, Standing::default())?;
    let window = Window::of("applications", &f.page)?;
    let visible_to = match narrow(caller, Resource::Application) {
        Narrow::Everything => None,
        Narrow::MemberOf(sub) => Some(sub.to_owned()),
        Narrow::Nothing => return Ok(Page::empty()),
    };
    let filter = AppFilter {
        kind: f.kind,
        state: f.state,
        project: f.project,
        requester: f.requester,
        visible_to,
        after: window.after.clone(),
        limit: window.fetch(),
    };
    let mut conn = state.db.pool().acquire().await?;
    let rows = store::applications(&mut conn, &filter).await?;
    let page = window.page(rows, |r| (r.created_at.clone(), r.id.clone()));
    let ids: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
    let mut decisions = store::decisions_of(&mut conn, &ids).await?;
    Ok(page.map(|row| Summary {
        decisions: decisions.remove(&row.id).unwrap_or_default(),
        row,
    }))
}

/// A new application of a kind made through the generic route (listing, extension, access).
#[derive(Debug)]
pub struct NewApplication {
    pub kind: Kind,
    pub project: String,
    pub title: String,
    pub description: String,
    /// Kind-specific details; a JSON object.
    pub payload: Option<serde_json::Value>,
}

/// Applies to the committee.
pub async fn create(state: &AppState, caller: &Caller, new: NewApplication) -> Result<AppRow> {
    check_text("the title", &new.title, 500, true)?;
    check_text("the description", &new.description, 64 * 1024, false)?;
    let payload = new.payload.unwrap_or_else(|| json!({}));
    if !payload.is_object() {
        return Err(Error::invalid(
            ErrorCode::BadPayload,
            "the payload must be a JSON object",
        ));
    }
    let payload_text = payload.to_string();
    check_text("the payload", &payload_text, 256 * 1024, false)?;

    let mut tx = state.db.begin_write().await?;
    let standing = super::standing_in(tx.conn(), &new.project, caller).await?;
    let allowed = allow(caller, Action::AppCreate(new.kind), standing)?;
    if matches!(new.kind, Kind::Ingress | Kind::Egress) {
        return Err(Error::invalid(
            ErrorCode::WrongRoute,
            format!(
                "{} applications are made by uploading their content, not through this route",
                new.kind
            ),
        ));
    }
    if new.kind == Kind::Extension {
        return Err(Error::invalid(
            ErrorCode::WrongRoute,
            "an extension belongs to its dataset: POST /api/v1/datasets/{id}/extension (`vre dataset extend`)",
        ));
    }
    if new.kind == Kind::Access {
        // It names its datasets, and they must be on record.
        super::access::terms(tx.conn(), &payload, &super::access::today()?).await?;
    }
    let now = crate::time::now();
    let row = AppRow {
        id: store::new_id("app"),
        kind: new.kind,
        project_id: Some(new.project),
        dataset_id: None,
        requester: caller.sub.to_string(),
        title: new.title.trim().to_owned(),
        description: new.description,
        payload: payload_text,
        state: State::Submitted,
        round: 1,
        created_at: now.clone(),
        updated_at: now,
    };
    submit(&mut tx, &allowed, &row).await?;
    state.commit(tx).await?;
    Ok(row)
}

/// Records a new application and its audit event inside `tx`, for a caller allowed to make
/// one of its kind. Kind-specific workflows (ingress, egress) call this once their content is
/// stored.
pub(crate) async fn submit(tx: &mut WriteTx, allowed: &Allowed, row: &AppRow) -> Result<()> {
    allowed.expect(Action::AppCreate(row.kind))?;
    store::insert_application(tx.conn(), row).await?;
    let mut detail = json!({
        "kind": row.kind.as_str(),
        "project": row.project_id,
        "title": row.title,
        "description_sha256": crate::sha256_hex(row.description.as_bytes()),
        "payload": serde_json::from_str::<serde_json::Value>(&row.payload).unwrap_or_default(),
    });
    if let Some(d) = &row.dataset_id {
        detail["dataset"] = json!(d);
    }
    tx.audit(NewEvent {
        actor: &row.requester,
        action: "application.submit",
        subject: &row.id,
        detail,
    })
    .await?;
    Ok(())
}

/// An application the caller may see, with their standing towards it; not found otherwise.
pub(crate) async fn seen(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    id: &str,
) -> Result<Seen<AppRow>> {
    let app = store::application(conn, id).await?;
    let member_roles = match app.as_ref().map(|a| (&a.project_id, &a.dataset_id)) {
        Some((Some(project), _)) => store::member_roles(conn, project, caller.sub.as_str()).await?,
        Some((None, Some(dataset))) => {
            super::datasets::standing_towards(conn, caller, dataset)
                .await?
                .member_roles
        }
        _ => Default::default(),
    };
    let standing = Standing {
        member_roles,
        is_requester: app
            .as_ref()
            .is_some_and(|a| a.requester == caller.sub.as_str()),
    };
    see(caller, Action::AppRead, standing, app, "application")
}

/// One application with its votes, attachments and checks.
pub async fn show(state: &AppState, caller: &Caller, id: &str) -> Result<Detail> {
    let mut conn = state.db.pool().acquire().await?;
    let app = seen(&mut conn, caller, id).await?.object;
    let (grants, conditions) = if app.kind == Kind::Access {
        (
            crate::store::access::grants_of(&mut conn, id).await?,
            crate::store::access::conditions(&mut conn, id).await?,
        )
    } else {
        Default::default()
    };
    Ok(Detail {
        decisions: store::decisions(&mut conn, id).await?,
        attachments: store::attachments(&mut conn, id).await?,
        checks: store::checks(&mut conn, id).await?,
        row: app,
        grants,
        conditions,
    })
}

/// Votes on an application: approve, reject or request changes; reviewers, never on their own
/// project's applications, once per round. An approval of an access application may set
/// conditions that tighten what it asks (`access::condition`).
pub async fn decide(
    state: &AppState,
    caller: &Caller,
    id: &str,
    choice: Choice,
    comment: &str,
    conditions: Option<super::access::Conditions>,
) -> Result<Summary> {
    check_text("the comment", comment, 64 * 1024, true)?;
    apply_event(
        state,
        caller,
        id,
        |_| Action::AppDecide,
        move |voter| Event::Vote { voter, choice },
        Said {
            comment,
            description: None,
            conditions: conditions.filter(|c| !c.is_empty()).as_ref(),
        },
    )
    .await
}

/// Takes one's own application back.
pub async fn withdraw(
    state: &AppState,
    caller: &Caller,
    id: &str,
    comment: &str,
) -> Result<Summary> {
    check_text("the comment", comment, 64 * 1024, false)?;
    apply_event(
        state,
        caller,
        id,
        Action::AppWithdraw,
        |by| Event::Withdraw { by },
        Said {
            comment,
            description: None,
            conditions: None,
        },
    )
    .await
}

/// Answers a request for changes; opens a new round of votes.
pub async fn resubmit(
    state: &AppState,
    caller: &Caller,
    id: &str,
    comment: &str,
    description: Option<&str>,
) -> Result<Summary> {
    check_text("the comment", comment, 64 * 1024, true)?;
    if let Some(d) = description {
        check_text("the description", d, 64 * 1024, false)?;
    }
    apply_event(
        state,
        caller,
        id,
        Action::AppResubmit,
        |by| Event::Resubmit { by },
        Said {
            comment,
            description,
            conditions: None,
        },
    )
    .await
}

/// What comes with an event: the comment, a new description (a resubmission), the conditions
/// of an approval.
struct Said<'a> {
    comment: &'a str,
    description: Option<&'a str>,
    conditions: Option<&'a super::access::Conditions>,
}

/// Applies one event to an application in a write transaction: the policy decides, the store
/// records, the audit log remembers. Refusals on separation of duties are audited as well.
async fn apply_event(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: impl FnOnce(Kind) -> Action,
    make_event: impl for<'a> Fn(&'a str) -> Event<'a>,
    said: Said<'_>,
) -> Result<Summary> {
    let Said {
        comment,
        description: new_description,
        conditions,
    } = said;
    let mut tx = state.db.begin_write().await?;
    let Seen {
        object: app,
        standing,
    } = seen(tx.conn(), caller, id).await?;
    allow(caller, action(app.kind), standing)?;
    if app.kind == Kind::Egress && matches!(make_event(""), Event::Resubmit { .. }) {
        // A new round of an egress application brings its new files.
        return Err(Error::invalid(
            ErrorCode::WrongRoute,
            "egress applications are resubmitted with their files (`vre egress resubmit`, POST /api/v1/applications/{id}/egress)",
        ));
    }
    let decisions = store::decisions(tx.conn(), id).await?;
    let members = store::members(tx.conn(), app.project()).await?;
    let mut conflicted: Vec<&str> = members.iter().map(|m| m.subject.as_str()).collect();
    if app.dataset_id.is_some() && !standing.member_roles.is_empty() {
        // A dataset's institution stands for its project: its stewards do not vote on it.
        conflicted.push(caller.sub.as_str());
    }
    let votes: Vec<CastVote<'_>> = decisions
        .iter()
        .filter(|d| d.round == app.round)
        .map(|d| CastVote {
            voter: &d.reviewer,
            choice: d.choice,
        })
        .collect();
    let facts = Facts {
        kind: app.kind,
        state: app.state,
        requester: &app.requester,
        votes: &votes,
        conflicted: &conflicted,
    };
    let event = make_event(caller.sub.as_str());
    let transition = match policy::review::next_state(&facts, &state.quorum, event) {
        Ok(t) => t,
        Err(refusal) => {
            drop(tx);
            return Err(refused(state, caller, id, "application.decision_refused", refusal).await);
        }
    };
    let now = crate::time::now();
    let round = app.round + i64::from(transition.new_round);
    let mut all_decisions = decisions.clone();
    if let Event::Vote { choice, .. } = event {
        let d = DecisionRow {
            round: app.round,
            reviewer: caller.sub.to_string(),
            choice,
            comment: comment.to_owned(),
            decided_at: now.clone(),
        };
        store::insert_decision(tx.conn(), id, &d).await?;
        let mut detail =
            json!({"decision": choice.as_str(), "round": app.round, "comment": comment});
        if let Some(c) = conditions {
            super::access::condition(&mut tx, &app, caller.sub.as_str(), choice, c).await?;
            detail["conditions"] = json!({
                "until": c.until,
                "commercial": c.commercial,
                "logs": c.logs_hidden.map(|h| if h { "hidden" } else { "visible" }),
            });
        }
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: "application.decision",
            subject: id,
            detail,
        })
        .await?;
        all_decisions.push(d);
    }
    if transition.to != transition.from || transition.new_round {
        if !store::set_state(
            tx.conn(),
            id,
            transition.from,
            transition.to,
            round,
            new_description,
            &now,
        )
        .await?
        {
            return Err(Error::conflict(
                ErrorCode::ConcurrentChange,
                "the application changed meanwhile; try again",
            ));
        }
        let action_name = match event {
            Event::Withdraw { .. } => "application.withdraw",
            Event::Resubmit { .. } => "application.resubmit",
            _ => "application.state",
        };
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: action_name,
            subject: id,
            detail: json!({
                "from": transition.from.as_str(),
                "to": transition.to.as_str(),
                "round": round,
                "comment": comment,
            }),
        })
        .await?;
    }
    let mut updated = store::application(tx.conn(), id)
        .await?
        .ok_or(Error::NotFound("application"))?;
    // The quorum and the release it calls for are recorded together: no release without one.
    let release = updated.kind == Kind::Egress
        && transition.to == State::Approved
        && transition.from != State::Approved;
    if release {
        super::egress::approved(&mut tx, &updated, &now).await?;
    }
    // An approved access and its grants are recorded together.
    if updated.kind == Kind::Access
        && transition.to == State::Approved
        && transition.from != State::Approved
    {
        super::access::granted(&mut tx, &updated, &now).await?;
    }
    // A decided listing moves its dataset in the same transaction.
    if updated.kind == Kind::Listing && transition.to != transition.from {
        super::dataset_upload::listing_decided(&mut tx, &updated, &now).await?;
    }
    // An approved extension moves the dataset's end in the transaction that approves it.
    if updated.kind == Kind::Extension
        && transition.to == State::Approved
        && transition.from != State::Approved
        && updated.dataset_id.is_some()
    {
        super::extension::approved(state, &mut tx, &updated, &now).await?;
        updated = store::application(tx.conn(), id)
            .await?
            .ok_or(Error::NotFound("application"))?;
    }
    state.commit(tx).await?;
    if release {
        state.releases.wake();
    }
    Ok(Summary {
        row: updated,
        decisions: all_decisions,
    })
}

/// A refusal of the committee's rules, answered as it is; one on separation of duties is
/// audited first (`action`), in a transaction of its own since the refused one was dropped.
async fn refused(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: &str,
    refusal: Refusal,
) -> Error {
    if refusal.is_separation_of_duties() {
        let audited = async {
            let mut tx = state.db.begin_write().await?;
            tx.audit(NewEvent {
                actor: caller.sub.as_str(),
                action,
                subject: id,
                detail: json!({"reason": refusal.to_string()}),
            })
            .await?;
            state.commit(tx).await?;
            Ok::<(), Error>(())
        };
        if let Err(e) = audited.await {
            return e;
        }
    }
    refusal.into()
}

/// What kind of text is attached, and who may attach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentKind {
    /// The data-providing institution's review result (stewards).
    InstitutionReview,
    /// A committee opinion (reviewers).
    CommitteeOpinion,
}

impl AttachmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::InstitutionReview => "institution_review",
            AttachmentKind::CommitteeOpinion => "committee_opinion",
        }
    }

    fn action(self) -> Action {
        match self {
            AttachmentKind::InstitutionReview => Action::AttachInstitutionReview,
            AttachmentKind::CommitteeOpinion => Action::AttachCommitteeOpinion,
        }
    }
}

impl std::str::FromStr for AttachmentKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "institution_review" => Ok(AttachmentKind::InstitutionReview),
            "committee_opinion" => Ok(AttachmentKind::CommitteeOpinion),
            other => Err(Error::invalid(
                ErrorCode::BadAttachmentKind,
                format!(
                    "unknown attachment kind `{other}` (expected institution_review or committee_opinion)"
                ),
            )),
        }
    }
}

/// A text to attach, with an optional file.
#[derive(Debug)]
pub struct NewAttachment {
    pub kind: AttachmentKind,
    pub text: String,
    /// The file's name and content.
    pub file: Option<(String, Vec<u8>)>,
}

/// Attaches an institution's review result or a committee opinion, with an optional file.
pub async fn attach(
    state: &AppState,
    caller: &Caller,
    id: &str,
    new: NewAttachment,
) -> Result<AttachmentRow> {
    check_text("the text", &new.text, 256 * 1024, true)?;
    let file = match new.file {
        Some((name, bytes)) => {
            let max = state.settings.limits.attachment_max_bytes;
            if bytes.len() as u64 > max {
                return Err(Error::TooLarge(format!(
                    "attachments are limited to {max} bytes"
                )));
            }
            Some((safe_file_name(&name)?, bytes))
        }
        None => None,
    };
    let blob = match &file {
        Some((_, bytes)) => Some(state.blobs.put(bytes.clone()).await?),
        None => None,
    };
    let mut tx = state.db.begin_write().await?;
    let app = seen(tx.conn(), caller, id).await?;
    allow(caller, new.kind.action(), app.standing)?;
    if app.object.state.is_final() {
        return Err(Error::conflict(
            ErrorCode::WrongState,
            format!("the application is {}", app.object.state),
        ));
    }
    if new.kind == AttachmentKind::CommitteeOpinion {
        // The committee's opinion comes from outside the project, as its votes do.
        let members = store::members(tx.conn(), app.object.project()).await?;
        let mut conflicted: Vec<&str> = members.iter().map(|m| m.subject.as_str()).collect();
        if app.object.dataset_id.is_some() && !app.standing.member_roles.is_empty() {
            conflicted.push(caller.sub.as_str());
        }
        let author = caller.sub.as_str();
        if let Err(refusal) =
            policy::review::may_give_opinion(&app.object.requester, &conflicted, author)
        {
            drop(tx);
            return Err(refused(state, caller, id, "application.attach_refused", refusal).await);
        }
    }
    let row = AttachmentRow {
        id: store::new_id("att"),
        application_id: id.to_owned(),
        kind: new.kind.as_str().to_owned(),
        author: caller.sub.to_string(),
        body: new.text,
        file_name: file.as_ref().map(|(n, _)| n.clone()),
        file_sha256: blob.as_ref().map(|b| b.sha256().to_owned()),
        file_size: blob.as_ref().map(|b| b.size() as i64),
        created_at: crate::time::now(),
    };
    store::insert_attachment(tx.conn(), &row).await?;
    if let Some(b) = &blob {
        store::record_blob(tx.conn(), b.sha256(), b.size()).await?;
    }
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "application.attach",
        subject: id,
        detail: json!({
            "attachment": row.id,
            "kind": row.kind,
            "text_sha256": crate::sha256_hex(row.body.as_bytes()),
            "file_name": row.file_name,
            "file_sha256": row.file_sha256,
            "file_size": row.file_size,
        }),
    })
    .await?;
    // The blob becomes visible only once its record is in the same transaction as the audit
    // event; a crash before the commit leaves a temp file that the next start sweeps.
    if let Some(b) = blob {
        b.commit().await?;
    }
    state.commit(tx).await?;
    Ok(row)
}

fn safe_file_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.contains(['/', '\\', '\0'])
        && name != "."
        && name != ".."
        && !name.chars().any(char::is_control);
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Error::invalid(
            ErrorCode::BadFileName,
            "a file name must be 1 to 255 characters, without slashes or control characters",
        ))
    }
}

/// An attachment's file, opened for reading, its read already audited.
#[derive(Debug)]
pub struct AttachmentFile {
    pub name: String,
    pub sha256: String,
    pub file: tokio::fs::File,
}

/// Opens an attachment's file. Every read is audited.
pub async fn attachment_file(
    state: &AppState,
    caller: &Caller,
    id: &str,
    attachment: &str,
) -> Result<AttachmentFile> {
    let mut tx = state.db.begin_write().await?;
    let app = seen(tx.conn(), caller, id).await?;
    allow(caller, Action::ReadContent, app.standing)?;
    let a = store::attachment(tx.conn(), id, attachment)
        .await?
        .ok_or(Error::NotFound("attachment"))?;
    let (Some(sha256), Some(name)) = (a.file_sha256.clone(), a.file_name.clone()) else {
        return Err(Error::NotFound("attachment file"));
    };
    let file = state.blobs.open(&sha256).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "content.read",
        subject: id,
        detail: json!({"attachment": a.id, "file_name": name, "file_sha256": sha256}),
    })
    .await?;
    state.commit(tx).await?;
    Ok(AttachmentFile { name, sha256, file })
}

/// The state machine's answer to an event that counts no votes (the gateway carrying an
/// approved application out, a resubmission).
pub(crate) fn step(
    state: &AppState,
    app: &AppRow,
    event: Event<'_>,
) -> std::result::Result<policy::review::Transition, Refusal> {
    let facts = Facts {
        kind: app.kind,
        state: app.state,
        requester: &app.requester,
        votes: &[],
        conflicted: &[],
    };
    policy::review::next_state(&facts, &state.quorum, event)
}

/// Counts a summary's approvals in its current round.
pub fn approvals(s: &Summary) -> u32 {
    s.decisions
        .iter()
        .filter(|d| d.round == s.row.round && d.choice == Choice::Approve)
        .count() as u32
}
