//! The web pages' sessions: opened with a verified token, kept server-side, ended by signing
//! out or by time.
//!
//! A browser holds only a random id (in an HttpOnly cookie); the database holds its SHA-256, the
//! caller the token stood for (subject, roles, institution), and the session's CSRF secret.
//! A session ends at [`MAX_AGE`] or when its token would have expired, whichever comes first.
//! Signing in and out are audited (`web.sign_in`, `web.sign_out`). A sign-in through the
//! identity provider is kept by the browser while under way ([`crate::oidc::pending`]); once the
//! provider has accepted it, it is recorded as used with the session it opens
//! ([`open_signed_in`]), and is refused after ([`check_unused`]).

use std::time::{SystemTime, UNIX_EPOCH};

use policy::ids::Subject;
use policy::roles::RoleSet;
use serde_json::json;

use super::{Error, Result};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::state::AppState;
use crate::store::web::{self as wstore, SessionRow};

/// The longest a session lasts.
pub const MAX_AGE: u64 = 8 * 3600;

/// A session just opened: the id the browser keeps (the cookie's value) and how long it lasts.
#[derive(Debug)]
pub struct Opened {
    pub id: String,
    pub max_age: u64,
}

/// A live session: who it speaks for and its CSRF secret.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    id_sha256: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_hex() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Error::internal(format!("randomness: {e}")))?;
    Ok(hex::encode(b))
}

/// Opens a session for `caller`, whose token (verified) expires at `token_exp` (Unix seconds).
pub async fn open(state: &AppState, caller: &Caller, token_exp: u64) -> Result<Opened> {
    open_via(state, caller, token_exp, None).await
}

/// A sign-in through the identity provider, to record as used with the session it opens.
#[derive(Debug)]
pub struct Used<'a> {
    /// The provider's issuer.
    pub provider: &'a str,
    /// The sign-in's `state`.
    pub state: &'a str,
    /// Unix seconds: when the sign-in would have expired.
    pub expires_at: u64,
}

/// Opens a session for `caller` signed in through the identity provider (`used`, recorded as
/// used in the same transaction: a sign-in recorded already opens nothing, 400
/// `bad_sign_in`). The audit event names the provider.
pub async fn open_signed_in(
    state: &AppState,
    caller: &Caller,
    token_exp: u64,
    used: &Used<'_>,
) -> Result<Opened> {
    open_via(state, caller, token_exp, Some(used)).await
}

/// Refuses (400 `bad_sign_in`) the sign-in through the identity provider of this `state` when
/// it was used already: a read, before the provider is asked.
pub async fn check_unused(state: &AppState, sign_in: &str) -> Result<()> {
    let mut conn = state.db.pool().acquire().await?;
    if wstore::sign_in_used(&mut conn, &crate::sha256_hex(sign_in.as_bytes())).await? {
        return Err(used_already());
    }
    Ok(())
}

fn used_already() -> Error {
    Error::invalid(
        crate::error::ErrorCode::BadSignIn,
        "this return from the identity provider was used already: sign in again",
    )
}

/// [`open`], or [`open_signed_in`] when `used` names a sign-in through the provider.
async fn open_via(
    state: &AppState,
    caller: &Caller,
    token_exp: u64,
    used: Option<&Used<'_>>,
) -> Result<Opened> {
    let now = unix_now();
    let expires = token_exp.min(now + MAX_AGE);
    if expires <= now {
        return Err(Error::invalid(
            crate::error::ErrorCode::Unauthenticated,
            "the token has expired",
        ));
    }
    let id = random_hex()?;
    let row = SessionRow {
        id_sha256: crate::sha256_hex(id.as_bytes()),
        subject: caller.sub.to_string(),
        roles: caller
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(","),
        institution: caller.institution.clone(),
        csrf: random_hex()?,
        created_at: crate::time::now(),
        expires_at: i64::try_from(expires).unwrap_or(i64::MAX),
    };
    let mut tx = state.db.begin_write().await?;
    if let Some(u) = used {
        wstore::delete_expired_sign_ins(tx.conn(), now as i64).await?;
        let hash = crate::sha256_hex(u.state.as_bytes());
        let until = i64::try_from(u.expires_at).unwrap_or(i64::MAX);
        // The key's uniqueness decides between two returns of one sign-in at once.
        if !wstore::insert_used_sign_in(tx.conn(), &hash, &crate::time::now(), until).await? {
            return Err(used_already());
        }
    }
    wstore::delete_expired(tx.conn(), row.expires_at.min(now as i64)).await?;
    wstore::insert_session(tx.conn(), &row).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "web.sign_in",
        subject: caller.sub.as_str(),
        detail: match used {
            None => json!({ "roles": row.roles, "expires_at": row.expires_at }),
            Some(u) => {
                json!({ "roles": row.roles, "expires_at": row.expires_at, "provider": u.provider })
            }
        },
    })
    .await?;
    state.commit(tx).await?;
    Ok(Opened {
        id,
        max_age: expires - now,
    })
}

/// The live session whose id a browser sent, if any.
pub async fn find(state: &AppState, id: &str) -> Result<Option<Session>> {
    let mut conn = state.db.pool().acquire().await?;
    let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    let Some(row) = wstore::session(&mut conn, &crate::sha256_hex(id.as_bytes()), now).await?
    else {
        return Ok(None);
    };
    let sub = Subject::parse(&row.subject)
        .map_err(|e| Error::internal(format!("a session's subject: {e}")))?;
    let roles = if row.roles.is_empty() {
        RoleSet::EMPTY
    } else {
        RoleSet::parse_list(&row.roles)
            .map_err(|e| Error::internal(format!("a session's roles: {e}")))?
    };
    Ok(Some(Session {
        caller: Caller {
            sub,
            roles,
            institution: row.institution,
        },
        csrf: row.csrf,
        id_sha256: row.id_sha256,
    }))
}

/// Ends a session.
pub async fn close(state: &AppState, session: &Session) -> Result<()> {
    let mut tx = state.db.begin_write().await?;
    if wstore::delete_session(tx.conn(), &session.id_sha256).await? {
        tx.audit(NewEvent {
            actor: session.caller.sub.as_str(),
            action: "web.sign_out",
            subject: session.caller.sub.as_str(),
            detail: json!({}),
        })
        .await?;
    }
    state.commit(tx).await?;
    Ok(())
}
