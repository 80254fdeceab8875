//! The desk's pages, one module each, and what every page shares: the
//! session a request carries, the CSRF check for every change, the headers
//! every response gets, and how a failure is shown.
//!
//! Every response carries a Content-Security-Policy that allows only the
//! desk's own scripts and styles (no inline code), is never cached (pages hold
//! patient data), and may not be framed.

pub mod access;
pub mod case;
pub mod operations;
pub mod pages;
pub mod roster;
pub mod safety;
pub mod signin;
pub mod task;
pub mod work;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sqlx::PgPool;
use tonic::Code;
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::vouch::{self, Voucher};

use crate::live::Live;
use crate::oidc::Provider;
use crate::peers::Peers;
use crate::store::{self, Lifetime, Session};
use crate::user::Language;

use self::pages::Pages;

/// Everything a page handler needs.
#[derive(Debug, Clone)]
pub struct Desk {
    /// The desk's schema.
    pub pool: PgPool,
    /// The clock patients' local times and due times are read on (a
    /// simulated one in a demo). Sessions, sign-ins and the access log use
    /// the real time: they are about people, not the simulation.
    pub clock: SharedClock,
    /// The services.
    pub peers: Peers,
    /// The identity provider, when configured.
    pub provider: Option<Arc<Provider>>,
    /// Whether the development sign-in is on.
    pub dev_login: bool,
    /// The URL users open.
    pub public_url: String,
    /// Whether cookies are `Secure` (the public URL is HTTPS).
    pub secure_cookies: bool,
    /// When sessions end.
    pub lifetime: Lifetime,
    /// Templates and words.
    pub pages: &'static Pages,
    /// What changes worklists.
    pub live: Live,
    /// Signs, for each call, who the user is and what they may see.
    pub voucher: Arc<Voucher>,
}

impl Desk {
    /// `message` as a call on the signed-in user's behalf: the services see
    /// the user (and only their programs) instead of the desk.
    pub fn vouched<T>(&self, signed: &Signed, message: T) -> tonic::Request<T> {
        let user = &signed.0.user;
        let vouch = self
            .voucher
            .vouch(&user.id, &user.programs, chrono::Utc::now().timestamp());
        let mut request = tonic::Request::new(message);
        if let Ok(value) = tonic::metadata::MetadataValue::try_from(vouch) {
            request.metadata_mut().insert(vouch::HEADER, value);
        }
        request
    }

    /// `name` for a signed-in user: their name, CSRF token and menu, then
    /// `page`'s own values, in their language.
    pub fn page(
        &self,
        name: &str,
        signed: &Signed,
        page: minijinja::Value,
    ) -> Result<Html<String>, PageError> {
        let user = &signed.0.user;
        self.pages.render(
            name,
            user.language,
            minijinja::context! {
                user => minijinja::context! { id => &user.id, name => &user.name },
                csrf => &signed.0.csrf,
                is_compliance => user.is(crate::user::Role::Compliance),
                is_supervisor => user.leads(),
                is_pharmacovigilance => user.is(crate::user::Role::Pharmacovigilance),
                ..page
            },
        )
    }

    /// The session cookie's name: `__Host-` prefixed when it can be `Secure`,
    /// so no other host or path can set it.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-desk"
        } else {
            "desk"
        }
    }

    /// A `Set-Cookie` value that holds `value` for the session's life.
    pub fn session_cookie(&self, value: &str) -> String {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.cookie_name(),
            self.lifetime.absolute.num_seconds()
        )
    }

    /// A `Set-Cookie` value that removes the session cookie.
    pub fn cleared_cookie(&self) -> String {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
            self.cookie_name()
        )
    }

    /// The session cookie's value in `headers`.
    pub fn cookie_in(&self, headers: &HeaderMap) -> Option<String> {
        let name = self.cookie_name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }
}

/// The desk's routes.
pub fn router(desk: Desk) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/work") }))
        // For probes: the desk is up and answering.
        .route("/healthz", get(|| async { "ok" }))
        .route("/signin", get(signin::page))
        .route("/signin/oidc", get(signin::to_provider))
        .route("/signin/callback", get(signin::callback))
        .route("/signin/dev", post(signin::dev))
        .route("/signout", post(signin::sign_out))
        .route("/language", post(signin::language))
        .route("/work", get(work::page))
        .route("/work/list", get(work::list))
        .route("/work/live", get(work::live))
        .route("/presence", post(work::presence))
        .route("/cases/{case_id}", get(case::page))
        .route("/cases/{case_id}/reveal", post(case::reveal))
        .route("/cases/{case_id}/notes", post(case::add_note))
        .route("/cases/{case_id}/message", post(case::reply))
        .route("/search", get(access::search_page).post(access::search))
        .route("/access-log", get(access::log))
        .route("/operations", get(operations::page))
        .route("/operations.csv", get(operations::csv))
        .route(
            "/operations/migrate",
            get(operations::migration_preview).post(operations::migrate_apply),
        )
        .route("/safety", get(safety::page))
        .route("/safety/reconciliation", get(safety::reconciliation))
        .route(
            "/safety/reconciliation.csv",
            get(safety::reconciliation_csv),
        )
        .route(
            "/safety/{case_id}/{key}",
            get(safety::form).post(safety::submit),
        )
        .route("/safety/{case_id}/{key}/e2b.xml", get(safety::export))
        .route("/roster", get(roster::page))
        .route("/roster/{id}", get(roster::edit).post(roster::save))
        .route("/tasks/{task_id}", get(task::page))
        .route("/tasks/{task_id}/claim", post(task::claim))
        .route("/tasks/{task_id}/complete", post(task::complete))
        .route("/tasks/{task_id}/call", post(task::call))
        .route("/tasks/{task_id}/callback", post(task::callback))
        .route("/tasks/{task_id}/transfer", post(task::transfer))
        .route("/static/desk.css", get(pages::stylesheet))
        .route("/static/desk.js", get(pages::script))
        .fallback(not_found)
        .layer(axum::middleware::map_response(secure_headers))
        .layer(axum::middleware::from_fn(server_timing))
        .with_state(desk)
}

async fn not_found() -> PageError {
    PageError::NotFound
}

/// How long the desk took over a request, in a `Server-Timing` header
/// (`app;dur=<ms>`): what `desk-bench` measures, and what a browser's
/// developer tools show.
async fn server_timing(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={took:.3}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

/// Headers every response carries.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "x-frame-options", "DENY");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    response
}

/// A signed-in request's session. A request without a live session is sent
/// to sign in.
#[derive(Debug, Clone)]
pub struct Signed(pub Session);

impl FromRequestParts<Desk> for Signed {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, desk: &Desk) -> Result<Self, PageError> {
        let cookie = desk.cookie_in(&parts.headers).ok_or(PageError::SignIn)?;
        match store::session(&desk.pool, &cookie, desk.lifetime, chrono::Utc::now()).await {
            Ok(Some(session)) => Ok(Signed(session)),
            Ok(None) => Err(PageError::SignIn),
            Err(error) => {
                tracing::error!(%error, "cannot read sessions");
                Err(PageError::Unavailable)
            }
        }
    }
}

impl Signed {
    /// Refuses a change whose form does not carry this session's CSRF token.
    pub fn check(&self, token: &str) -> Result<(), PageError> {
        let expected = self.0.csrf.as_bytes();
        let given = token.as_bytes();
        let same = expected.len() == given.len()
            && expected
                .iter()
                .zip(given)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            tracing::warn!(user = %self.0.user.id, "a change without its CSRF token was refused");
            Err(PageError::Csrf(self.0.user.language))
        }
    }

    /// The user's language.
    pub fn language(&self) -> Language {
        self.0.user.language
    }
}

/// A form that carries only its CSRF token (a button: claim, reveal, sign out).
#[derive(Debug, serde::Deserialize)]
pub struct Csrf {
    /// The session's token.
    #[serde(default)]
    pub csrf: String,
}

/// `?saved=<what>`: which form a redirect comes back from (`presence`,
/// `transfer`, `callback`), for the page to say it worked. A code, never data.
#[derive(Debug, serde::Deserialize)]
pub struct Saved {
    /// What was saved.
    pub saved: Option<String>,
}

/// Why a page could not be shown. None carries patient data.
#[derive(Debug)]
pub enum PageError {
    /// No live session: sign in.
    SignIn,
    /// Nothing here the user may see (also what a case outside their
    /// programs looks like).
    NotFound,
    /// The user's role may not do this.
    Forbidden(Language),
    /// The request was not understood.
    BadRequest(Language, String),
    /// A form without its CSRF token.
    Csrf(Language),
    /// A service or the database is not answering.
    Unavailable,
}

impl PageError {
    /// What a service's refusal means for the page.
    pub fn from_status(status: &tonic::Status, language: Language) -> Self {
        match status.code() {
            Code::NotFound => PageError::NotFound,
            Code::PermissionDenied => PageError::Forbidden(language),
            Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => {
                PageError::BadRequest(language, status.message().to_owned())
            }
            code => {
                tracing::warn!(?code, "a service call failed");
                PageError::Unavailable
            }
        }
    }
}

impl From<sqlx::Error> for PageError {
    fn from(error: sqlx::Error) -> Self {
        tracing::error!(%error, "desk database call failed");
        PageError::Unavailable
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, language, key, reason) = match self {
            PageError::SignIn => return Redirect::to("/signin").into_response(),
            PageError::NotFound => (StatusCode::NOT_FOUND, Language::En, "error.not_found", None),
            PageError::Forbidden(l) => (StatusCode::FORBIDDEN, l, "error.forbidden", None),
            PageError::BadRequest(l, reason) => (
                StatusCode::BAD_REQUEST,
                l,
                "error.bad_request",
                Some(reason),
            ),
            PageError::Csrf(l) => (StatusCode::FORBIDDEN, l, "error.csrf", None),
            PageError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                Language::En,
                "error.unavailable",
                None,
            ),
        };
        let pages = pages::shared();
        let message = match pages {
            Some(p) => p
                .catalog
                .fill(language, key, &[("reason", reason.unwrap_or_default())]),
            None => key.to_owned(),
        };
        let body = pages
            .and_then(|p| p.error(language, &message).ok())
            .unwrap_or_else(|| Html(message.clone()));
        (status, body).into_response()
    }
}
