//! ID tokens: a JSON Web Token signed by the identity provider with one of the
//! keys it publishes (its JWKS), checked here before a word of it is believed.
//!
//! RS256 and ES256 are accepted, the two algorithms OpenID providers sign ID
//! tokens with (Entra ID, Okta and Keycloak default to RS256). `none` and the
//! HMAC algorithms never are: a token signed with the client secret could be
//! made by anyone holding that secret.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// Why a token was not accepted. No variant repeats the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("the ID token is malformed: {0}")]
    Malformed(&'static str),
    /// An algorithm other than RS256 or ES256.
    #[error("the ID token is signed with an algorithm the desk does not accept")]
    Algorithm,
    /// No published key matches the token's `kid` and algorithm.
    #[error("the ID token names a key the provider does not publish")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the ID token's signature does not verify")]
    Signature,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// One key of a JWKS document.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// A provider's published keys.
#[derive(Debug, Clone, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

fn decode(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))
}

impl Jwk {
    fn signs(&self, alg: &str, kid: Option<&str>) -> bool {
        let kind = match alg {
            "RS256" => "RSA",
            "ES256" => "EC",
            _ => return false,
        };
        self.kty == kind
            && self.usage.as_deref().is_none_or(|u| u == "sig")
            && kid.is_none_or(|kid| self.kid.as_deref() == Some(kid))
    }

    fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> Result<(), TokenError> {
        let field = |value: &Option<String>| -> Result<Vec<u8>, TokenError> {
            value
                .as_deref()
                .ok_or(TokenError::UnknownKey)
                .and_then(|v| decode(v, "a key field is not base64url"))
        };
        let verified = match alg {
            "RS256" => RsaPublicKeyComponents {
                n: field(&self.n)?,
                e: field(&self.e)?,
            }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig),
            "ES256" if self.crv.as_deref() == Some("P-256") => {
                let mut point = vec![4u8];
                point.extend(field(&self.x)?);
                point.extend(field(&self.y)?);
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
            }
            _ => return Err(TokenError::UnknownKey),
        };
        verified.map_err(|_| TokenError::Signature)
    }
}

/// The token's claims, as JSON, once its signature verifies with a key in `keys`.
pub fn verify(token: &str, keys: &JwkSet) -> Result<serde_json::Value, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three parts"));
    };
    let parsed: Header = serde_json::from_slice(&decode(header, "the header is not base64url")?)
        .map_err(|_| TokenError::Malformed("the header is not JSON"))?;
    if !matches!(parsed.alg.as_str(), "RS256" | "ES256") {
        return Err(TokenError::Algorithm);
    }
    let signature = decode(sig, "the signature is not base64url")?;
    let message = &token.trim().as_bytes()[..header.len() + 1 + payload.len()];
    let candidates: Vec<&Jwk> = keys
        .keys
        .iter()
        .filter(|k| k.signs(&parsed.alg, parsed.kid.as_deref()))
        .collect();
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey);
    }
    if !candidates
        .iter()
        .any(|key| key.verify(&parsed.alg, message, &signature).is_ok())
    {
        return Err(TokenError::Signature);
    }
    serde_json::from_slice(&decode(payload, "the claims are not base64url")?)
        .map_err(|_| TokenError::Malformed("the claims are not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    fn es256_key() -> (EcdsaKeyPair, JwkSet) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap_or_else(|e| panic!("{e}"));
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap_or_else(|e| panic!("{e}"));
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        let set = serde_json::from_value(jwks).unwrap_or_else(|e| panic!("{e}"));
        (pair, set)
    }

    fn sign(pair: &EcdsaKeyPair, header: &str, claims: &str) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    #[test]
    fn a_token_signed_by_a_published_key_is_read_and_a_forged_one_is_not() {
        let (pair, keys) = es256_key();
        let token = sign(&pair, r#"{"alg":"ES256","kid":"k1"}"#, r#"{"sub":"carla"}"#);
        let claims = verify(&token, &keys).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claims["sub"], "carla");

        let (other, _) = es256_key();
        let forged = sign(
            &other,
            r#"{"alg":"ES256","kid":"k1"}"#,
            r#"{"sub":"carla"}"#,
        );
        assert_eq!(verify(&forged, &keys), Err(TokenError::Signature));

        let (head, rest) = token.split_once('.').unwrap_or_default();
        let (_, sig) = rest.split_once('.').unwrap_or_default();
        let swapped = format!(
            "{head}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(r#"{"sub":"mallory"}"#)
        );
        assert_eq!(verify(&swapped, &keys), Err(TokenError::Signature));
    }

    #[test]
    fn unsigned_and_hmac_tokens_and_unknown_keys_are_refused() {
        let (pair, keys) = es256_key();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#)
        );
        assert_eq!(verify(&none, &keys), Err(TokenError::Algorithm));
        let hmac = sign(&pair, r#"{"alg":"HS256"}"#, "{}");
        assert_eq!(verify(&hmac, &keys), Err(TokenError::Algorithm));
        let elsewhere = sign(&pair, r#"{"alg":"ES256","kid":"k9"}"#, "{}");
        assert_eq!(verify(&elsewhere, &keys), Err(TokenError::UnknownKey));
        assert!(matches!(
            verify("not a token", &keys),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            verify("a.b.c.d", &keys),
            Err(TokenError::Malformed(_))
        ));
    }
}
