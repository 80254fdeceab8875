//! Sign-in through the hub's own OpenID provider (Entra ID, Okta, Keycloak):
//! the authorization code flow with PKCE. The desk is a confidential client; it
//! trusts what the ID token says only after its signature, issuer, audience,
//! expiry and nonce check out.
//!
//! Who the user is comes from the token's claims: their roster id
//! (`preferred_username` unless told otherwise), their roles (`roles`) and the
//! programs they may see (`programs`).

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use http::Method;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use touchpoint_platform::http_client::{Exchange, HttpClient};
use touchpoint_platform::secret::{ExposeSecret as _, SecretString};

use crate::jwt::{self, JwkSet, TokenError};
use crate::user::{Language, Role, User};

/// How the desk is registered with the provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// `TOUCHPOINT_OIDC_ISSUER`: the provider's issuer URL.
    pub issuer: String,
    /// `TOUCHPOINT_OIDC_CLIENT_ID`.
    pub client_id: String,
    /// `TOUCHPOINT_OIDC_CLIENT_SECRET`.
    pub client_secret: SecretString,
    /// `TOUCHPOINT_OIDC_CA_FILE`: an authority to trust besides the public
    /// web's, for a provider inside the hub's network.
    pub ca_pem: Option<String>,
    /// `TOUCHPOINT_OIDC_ID_CLAIM` (`preferred_username`): the claim holding
    /// the user's roster id.
    pub id_claim: String,
}

/// Sign-in could not complete. Messages name the step, never a token.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered with an error.
    #[error("the identity provider {0}")]
    Provider(String),
    /// The ID token did not verify.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The ID token verified but its claims do not admit this sign-in.
    #[error("the ID token {0}")]
    Claims(&'static str),
}

#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// The provider, as discovered at start.
#[derive(Debug)]
pub struct Provider {
    config: OidcConfig,
    http: HttpClient,
    metadata: Metadata,
    keys: RwLock<JwkSet>,
}

/// What one sign-in keeps between leaving for the provider and coming back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Sent as `state`; the callback must bring it back.
    pub state: String,
    /// Sent as `nonce`; the ID token must carry it.
    pub nonce: String,
    /// PKCE: only its SHA-256 is sent.
    pub verifier: String,
}

impl Pending {
    /// Fresh random values for one sign-in.
    pub fn fresh() -> Self {
        Self {
            state: crate::random_token(),
            nonce: crate::random_token(),
            verifier: crate::random_token(),
        }
    }

    /// The PKCE challenge (S256) for the verifier.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: String,
}

impl Provider {
    /// Reads the provider's discovery document and keys.
    pub async fn discover(config: OidcConfig) -> Result<Self, OidcError> {
        let http = HttpClient::trusting(Duration::from_secs(10), config.ca_pem.as_deref())
            .map_err(|e| OidcError::Provider(format!("cannot be trusted: {e}")))?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            config.issuer.trim_end_matches('/')
        );
        let metadata: Metadata = get_json(&http, &url, "discovery document").await?;
        if metadata.issuer.trim_end_matches('/') != config.issuer.trim_end_matches('/') {
            return Err(OidcError::Provider(
                "names another issuer in its discovery document".into(),
            ));
        }
        let keys = get_json(&http, &metadata.jwks_uri, "keys").await?;
        Ok(Self {
            config,
            http,
            metadata,
            keys: RwLock::new(keys),
        })
    }

    /// Where the browser goes to sign in.
    pub fn authorization_url(&self, pending: &Pending, redirect_uri: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid profile")
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pending.challenge())
            .append_pair("code_challenge_method", "S256")
            .finish();
        let separator = if self.metadata.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{separator}{query}", self.metadata.authorization_endpoint)
    }

    /// Trades the code for an ID token and returns the user it names.
    pub async fn sign_in(
        &self,
        code: &str,
        pending: &Pending,
        redirect_uri: &str,
        now: DateTime<Utc>,
    ) -> Result<User, OidcError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", &pending.verifier)
            .finish();
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!(
                "{}:{}",
                form_urlencoded::byte_serialize(self.config.client_id.as_bytes())
                    .collect::<String>(),
                form_urlencoded::byte_serialize(
                    self.config.client_secret.expose_secret().as_bytes()
                )
                .collect::<String>()
            ))
        );
        let exchange = self
            .http
            .send(
                Method::POST,
                &self.metadata.token_endpoint,
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("accept", "application/json"),
                    ("authorization", &basic),
                ],
                body.into_bytes(),
            )
            .await;
        let tokens: TokenResponse = answered_json(exchange, "token endpoint")?;
        let claims = match self.verify(&tokens.id_token) {
            // The provider may have rotated its keys since start.
            Err(OidcError::Token(TokenError::UnknownKey)) => {
                let keys = get_json(&self.http, &self.metadata.jwks_uri, "keys").await?;
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
                self.verify(&tokens.id_token)?
            }
            other => other?,
        };
        user_of(
            &claims,
            &self.config,
            &self.metadata.issuer,
            &pending.nonce,
            now,
        )
    }

    fn verify(&self, token: &str) -> Result<serde_json::Value, OidcError> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        Ok(jwt::verify(token, &keys)?)
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &HttpClient,
    url: &str,
    what: &'static str,
) -> Result<T, OidcError> {
    let exchange = http
        .send(
            Method::GET,
            url,
            &[("accept", "application/json")],
            Vec::new(),
        )
        .await;
    answered_json(exchange, what)
}

fn answered_json<T: serde::de::DeserializeOwned>(
    exchange: Exchange,
    what: &'static str,
) -> Result<T, OidcError> {
    match exchange {
        Exchange::Answered { status, body } if status.is_success() => serde_json::from_slice(&body)
            .map_err(|_| OidcError::Provider(format!("sent a {what} the desk cannot read"))),
        Exchange::Answered { status, .. } => Err(OidcError::Provider(format!(
            "refused the request for its {what} ({status})"
        ))),
        Exchange::NotSent | Exchange::Unanswered => Err(OidcError::Provider(format!(
            "did not answer the request for its {what}"
        ))),
    }
}

/// The user a verified ID token names, if its claims admit this sign-in.
pub fn user_of(
    claims: &serde_json::Value,
    config: &OidcConfig,
    issuer: &str,
    nonce: &str,
    now: DateTime<Utc>,
) -> Result<User, OidcError> {
    if claims["iss"].as_str() != Some(issuer) {
        return Err(OidcError::Claims("comes from another issuer"));
    }
    let audience_ok = match &claims["aud"] {
        serde_json::Value::String(aud) => *aud == config.client_id,
        serde_json::Value::Array(auds) => auds
            .iter()
            .any(|a| a.as_str() == Some(config.client_id.as_str())),
        _ => false,
    };
    if !audience_ok {
        return Err(OidcError::Claims("is meant for another client"));
    }
    let expires = claims["exp"]
        .as_i64()
        .ok_or(OidcError::Claims("has no expiry"))?;
    // A minute of leeway for the two clocks.
    if expires + 60 < now.timestamp() {
        return Err(OidcError::Claims("has expired"));
    }
    if claims["nonce"].as_str() != Some(nonce) {
        return Err(OidcError::Claims("does not answer this sign-in"));
    }
    let id = claims[config.id_claim.as_str()]
        .as_str()
        .or_else(|| claims["sub"].as_str())
        .ok_or(OidcError::Claims("names no user"))?;
    let strings = |claim: &str| -> Vec<String> {
        match &claims[claim] {
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            serde_json::Value::String(one) => one.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    };
    let roles: Vec<Role> = strings("roles")
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect();
    if roles.is_empty() {
        return Err(OidcError::Claims("grants no desk role"));
    }
    let name = claims["name"].as_str().unwrap_or(id);
    User::new(
        id,
        name,
        roles,
        strings("programs"),
        claims["locale"]
            .as_str()
            .and_then(Language::from_tag)
            .unwrap_or(Language::En),
    )
    .ok_or(OidcError::Claims("names a user id the desk cannot use"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OidcConfig {
        OidcConfig {
            issuer: "https://idp.example".into(),
            client_id: "desk".into(),
            client_secret: "s".into(),
            ca_pem: None,
            id_claim: "preferred_username".into(),
        }
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({
            "iss": "https://idp.example", "aud": "desk", "exp": 2_000_000_000i64,
            "nonce": "n1", "sub": "opaque-1", "preferred_username": "carla",
            "name": "Carla Ruiz", "roles": ["coordinator", "unknown"],
            "programs": ["adherence"], "locale": "es-US",
        })
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_good_token_names_the_user_their_roles_programs_and_language() {
        let user = user_of(&claims(), &config(), "https://idp.example", "n1", now())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(user.id, "carla");
        assert_eq!(user.roles, vec![Role::Coordinator]);
        assert_eq!(user.programs, vec!["adherence".to_owned()]);
        assert_eq!(user.language, Language::Es);
    }

    #[test]
    fn a_token_for_another_sign_in_client_or_issuer_or_without_a_role_is_refused() {
        let refused = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims();
            edit(&mut c);
            user_of(&c, &config(), "https://idp.example", "n1", now()).is_err()
        };
        assert!(refused(&|c| c["nonce"] = "other".into()));
        assert!(refused(&|c| c["aud"] = "someone-else".into()));
        assert!(refused(&|c| c["iss"] = "https://evil.example".into()));
        assert!(refused(&|c| c["exp"] = 1_000.into()));
        assert!(refused(&|c| c["roles"] = serde_json::json!(["admin"])));
        assert!(!refused(&|c| c["aud"] = serde_json::json!(["x", "desk"])));
    }

    #[test]
    fn the_pkce_challenge_is_the_verifiers_sha256() {
        // RFC 7636, appendix B.
        let pending = Pending {
            state: String::new(),
            nonce: String::new(),
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
        };
        assert_eq!(
            pending.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
