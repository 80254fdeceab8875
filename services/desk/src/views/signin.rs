//! Signing in and out, and the user's language.
//!
//! Through the provider: `/signin/oidc` keeps a fresh `state`, `nonce` and PKCE
//! verifier and sends the browser to the provider; `/signin/callback` takes
//! the sign-in back by its `state` (once), trades the code for a verified ID
//! token and opens a session. The development sign-in, when enabled, opens a
//! session for whoever the form names.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use crate::oidc::Pending;
use crate::store;
use crate::user::{Language, Role, User};
use crate::views::{Csrf, Desk, PageError, Signed};

/// The sign-in page.
pub async fn page(
    State(desk): State<Desk>,
    Query(query): Query<SignInQuery>,
) -> Result<Html<String>, PageError> {
    desk.pages.render(
        "signin.html",
        Language::En,
        context! {
            provider => desk.provider.is_some(),
            dev_login => desk.dev_login,
            failed => query.failed.is_some(),
        },
    )
}

/// `/signin?failed`.
#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    failed: Option<String>,
}

fn redirect_uri(desk: &Desk) -> String {
    format!("{}/signin/callback", desk.public_url)
}

/// Off to the provider.
pub async fn to_provider(State(desk): State<Desk>) -> Result<Response, PageError> {
    let provider = desk.provider.as_ref().ok_or(PageError::NotFound)?;
    let pending = Pending::fresh();
    store::begin_sign_in(&desk.pool, &pending, chrono::Utc::now()).await?;
    Ok(Redirect::to(&provider.authorization_url(&pending, &redirect_uri(&desk))).into_response())
}

/// What the provider sends the browser back with.
#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Back from the provider.
pub async fn callback(
    State(desk): State<Desk>,
    Query(back): Query<Callback>,
) -> Result<Response, PageError> {
    let provider = desk.provider.as_ref().ok_or(PageError::NotFound)?;
    let failed = || Redirect::to("/signin?failed=1").into_response();
    if let Some(error) = back.error.as_deref() {
        // The provider's error code (e.g. access_denied) is not patient data.
        tracing::info!(error = %error.chars().take(64).collect::<String>(), "the provider refused a sign-in");
        return Ok(failed());
    }
    let (Some(code), Some(state)) = (back.code, back.state) else {
        return Ok(failed());
    };
    let now = chrono::Utc::now();
    let Some(pending) = store::take_sign_in(&desk.pool, &state, now).await? else {
        tracing::info!("a sign-in came back unknown or too late");
        return Ok(failed());
    };
    let user = match provider
        .sign_in(&code, &pending, &redirect_uri(&desk), now)
        .await
    {
        Ok(user) => user,
        Err(error) => {
            tracing::warn!(%error, "sign-in refused");
            return Ok(failed());
        }
    };
    opened(&desk, &user).await
}

/// A session for `user`, and on to their work. The session cookie is
/// `SameSite=Strict`, so a browser arriving from the provider's site would not
/// send it on a redirect; a page of the desk's own moves it on instead.
async fn opened(desk: &Desk, user: &User) -> Result<Response, PageError> {
    let cookie = store::open_session(&desk.pool, user, chrono::Utc::now()).await?;
    tracing::info!(user = %user.id, "signed in");
    let body = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
        <meta http-equiv=\"refresh\" content=\"0;url=/work\"><title>Touchpoint desk</title></head>\
        <body><main><p><a href=\"/work\">Continue</a></p></main></body></html>";
    Ok((
        [(header::SET_COOKIE, desk.session_cookie(&cookie))],
        Html(body),
    )
        .into_response())
}

/// The development sign-in form.
#[derive(Debug, Deserialize)]
pub struct DevSignIn {
    user_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    roles: String,
    #[serde(default)]
    programs: String,
    #[serde(default)]
    language: String,
}

/// Signs in whoever the form names, when `TOUCHPOINT_DESK_DEV_LOGIN` is on;
/// otherwise there is no such page.
pub async fn dev(
    State(desk): State<Desk>,
    Form(form): Form<DevSignIn>,
) -> Result<Response, PageError> {
    if !desk.dev_login {
        return Err(PageError::NotFound);
    }
    let list = |raw: &str| -> Vec<String> {
        raw.split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let roles: Vec<Role> = list(&form.roles)
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect();
    let name = if form.name.trim().is_empty() {
        form.user_id.trim()
    } else {
        form.name.trim()
    };
    let language = Language::from_tag(&form.language).unwrap_or(Language::En);
    let user = User::new(
        form.user_id.trim(),
        name,
        roles,
        list(&form.programs),
        language,
    )
    .ok_or_else(|| {
        PageError::BadRequest(
            language,
            "the roster id must be letters, digits, '.', '_', '-' or '@'".into(),
        )
    })?;
    if user.roles.is_empty() {
        return Err(PageError::BadRequest(
            language,
            "name at least one desk role".into(),
        ));
    }
    opened(&desk, &user).await
}

/// Ends the session.
pub async fn sign_out(
    State(desk): State<Desk>,
    signed: Signed,
    headers: axum::http::HeaderMap,
    Form(form): Form<Csrf>,
) -> Result<Response, PageError> {
    signed.check(&form.csrf)?;
    if let Some(cookie) = desk.cookie_in(&headers) {
        store::end_session(&desk.pool, &cookie).await?;
    }
    Ok((
        [(header::SET_COOKIE, desk.cleared_cookie())],
        Redirect::to("/signin"),
    )
        .into_response())
}

/// The language form.
#[derive(Debug, Deserialize)]
pub struct LanguageForm {
    #[serde(default)]
    csrf: String,
    language: String,
}

/// Keeps the user's choice of language.
pub async fn language(
    State(desk): State<Desk>,
    signed: Signed,
    Form(form): Form<LanguageForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    let language = Language::from_tag(&form.language)
        .ok_or_else(|| PageError::BadRequest(signed.language(), "language: en or es".into()))?;
    store::set_language(&desk.pool, &signed.0.user.id, language).await?;
    Ok(Redirect::to("/work"))
}
