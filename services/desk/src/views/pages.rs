//! The templates (compiled into the binary, HTML auto-escaped) and the static
//! files: one stylesheet and one small script, served by the desk itself so
//! the Content-Security-Policy can forbid everything else.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use minijinja::{Environment, Value, context};

use crate::i18n::Catalog;
use crate::user::Language;
use crate::views::PageError;

const TEMPLATES: [(&str, &str); 16] = [
    ("base.html", include_str!("../../templates/base.html")),
    ("signin.html", include_str!("../../templates/signin.html")),
    ("work.html", include_str!("../../templates/work.html")),
    (
        "worklist.html",
        include_str!("../../templates/worklist.html"),
    ),
    ("case.html", include_str!("../../templates/case.html")),
    ("task.html", include_str!("../../templates/task.html")),
    ("search.html", include_str!("../../templates/search.html")),
    (
        "access_log.html",
        include_str!("../../templates/access_log.html"),
    ),
    ("error.html", include_str!("../../templates/error.html")),
    (
        "operations.html",
        include_str!("../../templates/operations.html"),
    ),
    ("roster.html", include_str!("../../templates/roster.html")),
    (
        "roster_member.html",
        include_str!("../../templates/roster_member.html"),
    ),
    ("safety.html", include_str!("../../templates/safety.html")),
    ("migrate.html", include_str!("../../templates/migrate.html")),
    (
        "safety_report.html",
        include_str!("../../templates/safety_report.html"),
    ),
    (
        "reconciliation.html",
        include_str!("../../templates/reconciliation.html"),
    ),
];

/// Templates and the words they are filled with.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
    /// Both languages' words.
    pub catalog: Catalog,
}

static SHARED: LazyLock<Result<Pages, String>> = LazyLock::new(Pages::load);

/// The desk's pages, loaded once; `None` if a template or locale file is
/// broken (the desk refuses to start then, and a test catches it first).
pub fn shared() -> Option<&'static Pages> {
    SHARED.as_ref().ok()
}

/// Why the pages could not be loaded.
pub fn load_error() -> Option<&'static str> {
    SHARED.as_ref().err().map(String::as_str)
}

impl Pages {
    fn load() -> Result<Self, String> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(Self {
            env,
            catalog: Catalog::load()?,
        })
    }

    /// `name` filled with `page`'s values and the words of `language`.
    pub fn render(
        &self,
        name: &str,
        language: Language,
        page: Value,
    ) -> Result<Html<String>, PageError> {
        let ctx = context! {
            tr => self.catalog.tree(language),
            lang => language.code(),
            ..page
        };
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map(Html)
            .map_err(|error| {
                // The error names the template and line, not the values.
                tracing::error!(template = name, kind = ?error.kind(), line = ?error.line(), "a page could not be rendered");
                PageError::Unavailable
            })
    }

    /// The error page saying `message`.
    pub fn error(&self, language: Language, message: &str) -> Result<Html<String>, PageError> {
        self.render("error.html", language, context! { message => message })
    }
}

/// The stylesheet.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../../static/desk.css"),
    )
}

/// The script: live worklist updates.
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../../static/desk.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_and_locale_loads() {
        assert_eq!(load_error(), None);
    }
}
