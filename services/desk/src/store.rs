//! The desk's tables: sign-ins under way, sessions, language preferences and
//! the access log.
//!
//! Secrets that reach a browser (the session cookie, a sign-in's `state`) are
//! kept only as their SHA-256.

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest as _, Sha256};
use sqlx::{PgPool, Row as _};

use crate::oidc::Pending;
use crate::user::{Language, User};

/// How long a sign-in may take at the provider.
const SIGN_IN_LIMIT: TimeDelta = TimeDelta::minutes(10);

/// A session's `last_seen_at` is written at most this often: a page a second
/// would otherwise be a row update a second.
const TOUCH_EVERY: TimeDelta = TimeDelta::seconds(30);

/// When a session ends.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    /// Without a request for this long.
    pub idle: TimeDelta,
    /// Since sign-in, whatever happens.
    pub absolute: TimeDelta,
}

impl Default for Lifetime {
    fn default() -> Self {
        Self {
            idle: TimeDelta::minutes(15),
            absolute: TimeDelta::hours(12),
        }
    }
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub user: User,
    /// The token every state-changing request must carry.
    pub csrf: String,
}

/// An entry of the access log.
#[derive(Debug, Clone)]
pub struct Access {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub user_id: String,
    /// Which case.
    pub case_id: String,
    /// What: `case` (the case page) or `reveal` (full contact details).
    pub what: String,
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Keeps a sign-in until the browser comes back from the provider.
pub async fn begin_sign_in(
    pool: &PgPool,
    pending: &Pending,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sign_ins WHERE created_at < $1")
        .bind(now - SIGN_IN_LIMIT)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO sign_ins (state_hash, nonce, verifier, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(digest(&pending.state))
    .bind(&pending.nonce)
    .bind(&pending.verifier)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// The sign-in `state` names, taken so it cannot be used twice; `None` when
/// unknown or too old.
pub async fn take_sign_in(
    pool: &PgPool,
    state: &str,
    now: DateTime<Utc>,
) -> Result<Option<Pending>, sqlx::Error> {
    let row = sqlx::query(
        "DELETE FROM sign_ins WHERE state_hash = $1 AND created_at >= $2
         RETURNING nonce, verifier",
    )
    .bind(digest(state))
    .bind(now - SIGN_IN_LIMIT)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Pending {
            state: state.to_owned(),
            nonce: r.try_get("nonce")?,
            verifier: r.try_get("verifier")?,
        })
    })
    .transpose()
}

/// Starts a session for `user`; returns the cookie's value.
pub async fn open_session(
    pool: &PgPool,
    user: &User,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let cookie = crate::random_token();
    let user_json = serde_json::to_value(user).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, signed_in_user, csrf, created_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(digest(&cookie))
    .bind(&user.id)
    .bind(user_json)
    .bind(crate::random_token())
    .bind(now)
    .execute(pool)
    .await?;
    Ok(cookie)
}

/// The session `cookie` opens, if it is still live; ends one that is not.
pub async fn session(
    pool: &PgPool,
    cookie: &str,
    lifetime: Lifetime,
    now: DateTime<Utc>,
) -> Result<Option<Session>, sqlx::Error> {
    let id = digest(cookie);
    let Some(row) = sqlx::query(
        "SELECT s.signed_in_user, s.csrf, s.created_at, s.last_seen_at, p.language
         FROM sessions s LEFT JOIN preferences p ON p.user_id = s.user_id
         WHERE s.id_hash = $1",
    )
    .bind(&id)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let created: DateTime<Utc> = row.try_get("created_at")?;
    let seen: DateTime<Utc> = row.try_get("last_seen_at")?;
    if now - seen > lifetime.idle || now - created > lifetime.absolute {
        end_session(pool, cookie).await?;
        return Ok(None);
    }
    if now - seen > TOUCH_EVERY {
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1")
            .bind(&id)
            .bind(now)
            .execute(pool)
            .await?;
    }
    let mut user: User = serde_json::from_value(row.try_get("signed_in_user")?)
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let chosen: Option<String> = row.try_get("language")?;
    if let Some(language) = chosen.as_deref().and_then(Language::from_tag) {
        user.language = language;
    }
    Ok(Some(Session {
        user,
        csrf: row.try_get("csrf")?,
    }))
}

/// Ends the session `cookie` opens.
pub async fn end_session(pool: &PgPool, cookie: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(digest(cookie))
        .execute(pool)
        .await?;
    Ok(())
}

/// Removes sessions that can no longer be used.
pub async fn prune_sessions(
    pool: &PgPool,
    lifetime: Lifetime,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
        .bind(now - lifetime.idle)
        .bind(now - lifetime.absolute)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Keeps `user_id`'s choice of language.
pub async fn set_language(
    pool: &PgPool,
    user_id: &str,
    language: Language,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO preferences (user_id, language) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET language = EXCLUDED.language",
    )
    .bind(user_id)
    .bind(language.code())
    .execute(pool)
    .await?;
    Ok(())
}

/// Keeps the presence `user_id` last set through the desk.
pub async fn set_presence(pool: &PgPool, user_id: &str, presence: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO preferences (user_id, presence) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET presence = EXCLUDED.presence",
    )
    .bind(user_id)
    .bind(presence)
    .execute(pool)
    .await?;
    Ok(())
}

/// The presence `user_id` last set through the desk.
pub async fn presence(pool: &PgPool, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    let found: Option<Option<String>> =
        sqlx::query_scalar("SELECT presence FROM preferences WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    Ok(found.flatten())
}

/// Records that `user_id` saw `what` of `case_id`.
pub async fn log_access(
    pool: &PgPool,
    user_id: &str,
    case_id: &str,
    what: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO access_log (at, user_id, case_id, what) VALUES ($1, $2, $3, $4)")
        .bind(now)
        .bind(user_id)
        .bind(case_id)
        .bind(what)
        .execute(pool)
        .await?;
    Ok(())
}

/// The latest `limit` entries of the access log, of one case when `case_id`.
pub async fn access_log(
    pool: &PgPool,
    case_id: Option<&str>,
    limit: i64,
) -> Result<Vec<Access>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at, user_id, case_id, what FROM access_log
         WHERE $1::text IS NULL OR case_id = $1
         ORDER BY at DESC, entry_id DESC LIMIT $2",
    )
    .bind(case_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Access {
                at: r.try_get("at")?,
                user_id: r.try_get("user_id")?,
                case_id: r.try_get("case_id")?,
                what: r.try_get("what")?,
            })
        })
        .collect()
}
