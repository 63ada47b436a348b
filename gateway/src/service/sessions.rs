//! The web pages' sessions: opened with a verified token, kept server-side, ended by signing
//! out or by time.
//!
//! A browser holds only a random id (in an HttpOnly cookie); the database holds its SHA-256, the
//! caller the token stood for (subject, roles, institution), and the session's CSRF secret.
//! A session ends at [`MAX_AGE`] or when its token would have expired, whichever comes first.
//! Signing in and out are audited (`web.sign_in`, `web.sign_out`). A sign-in through the
//! identity provider is kept here while under way ([`start_sign_in`], [`take_sign_in`]): its
//! state, nonce and PKCE verifier, bound to the browser that started it, used once.

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

/// [`open`], for a sign-in through the identity provider `provider` (its issuer) when named:
/// the audit event says so.
pub async fn open_via(
    state: &AppState,
    caller: &Caller,
    token_exp: u64,
    provider: Option<&str>,
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
    wstore::delete_expired(tx.conn(), row.expires_at.min(now as i64)).await?;
    wstore::insert_session(tx.conn(), &row).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "web.sign_in",
        subject: caller.sub.as_str(),
        detail: match provider {
            None => json!({ "roles": row.roles, "expires_at": row.expires_at }),
            Some(p) => json!({ "roles": row.roles, "expires_at": row.expires_at, "provider": p }),
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

/// How long a sign-in through the identity provider may take, from its start to the
/// provider's return.
pub const SIGN_IN_WITHIN: u64 = 600;
/// Sign-ins under way at most; more are refused until some end or expire.
const MAX_PENDING_SIGN_INS: i64 = 10_000;

/// A sign-in through the identity provider just started: the values the provider is sent
/// (`state`, `nonce`, the PKCE `verifier`'s challenge) and the `binding` the browser keeps in a
/// cookie.
#[derive(Debug)]
pub struct Started {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub binding: String,
}

impl Started {
    /// Fresh random values for a sign-in.
    pub fn fresh() -> Started {
        Started {
            state: crate::oidc::random_token(),
            nonce: crate::oidc::random_token(),
            verifier: crate::oidc::random_token(),
            binding: crate::oidc::random_token(),
        }
    }
}

/// Records a sign-in through the identity provider under way, before the browser is sent
/// there.
pub async fn start_sign_in(state: &AppState, s: &Started) -> Result<()> {
    let now = unix_now();
    let mut tx = state.db.begin_write().await?;
    wstore::delete_expired_sign_ins(tx.conn(), now as i64).await?;
    if wstore::count_sign_ins(tx.conn()).await? >= MAX_PENDING_SIGN_INS {
        return Err(Error::TooMany {
            code: crate::error::ErrorCode::Busy,
            message: "too many sign-ins are under way: try again in a few minutes".into(),
        });
    }
    wstore::insert_sign_in(
        tx.conn(),
        &wstore::SignInRow {
            state_sha256: crate::sha256_hex(s.state.as_bytes()),
            binding_sha256: crate::sha256_hex(s.binding.as_bytes()),
            verifier: s.verifier.clone(),
            nonce: s.nonce.clone(),
            created_at: crate::time::now(),
            expires_at: (now + SIGN_IN_WITHIN) as i64,
        },
    )
    .await?;
    state.commit(tx).await?;
    Ok(())
}

/// What a sign-in under way needs to finish: the PKCE verifier and the nonce.
#[derive(Debug)]
pub struct Pending {
    pub verifier: String,
    pub nonce: String,
}

fn bad_sign_in(message: &str) -> Error {
    Error::invalid(crate::error::ErrorCode::BadSignIn, message)
}

/// Takes the sign-in `state` names, once: the provider's return must come to the browser that
/// started it (`binding`, its cookie) before the sign-in expires. Whatever the answer, the
/// sign-in is used up.
pub async fn take_sign_in(state: &AppState, sign_in: &str, binding: &str) -> Result<Pending> {
    let mut tx = state.db.begin_write().await?;
    let row = wstore::take_sign_in(tx.conn(), &crate::sha256_hex(sign_in.as_bytes())).await?;
    state.commit(tx).await?;
    let Some(row) = row else {
        return Err(bad_sign_in(
            "this return from the identity provider belongs to no sign-in under way: it was used already, or never started here; sign in again",
        ));
    };
    // Hashes compared: their equality in time tells nothing of the binding.
    if row.binding_sha256 != crate::sha256_hex(binding.as_bytes()) {
        return Err(bad_sign_in(
            "this sign-in was started in another browser: sign in again from this one",
        ));
    }
    if row.expires_at <= unix_now() as i64 {
        return Err(bad_sign_in("this sign-in took too long: sign in again"));
    }
    Ok(Pending {
        verifier: row.verifier,
        nonce: row.nonce,
    })
}
