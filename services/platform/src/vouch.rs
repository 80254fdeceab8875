//! A person a trusted front vouches for: the desk signs, for each call it
//! makes on a signed-in user's behalf, who the user is and which programs
//! they may see. The services verify the signature with the desk's public
//! key, record that user as the actor of any change, and refuse a case
//! outside those programs as if it did not exist.
//!
//! The header `x-touchpoint-user` carries `v1.<claims>.<signature>`: the
//! claims are base64url JSON (`sub`, `programs`, `exp` in Unix seconds), the
//! signature is Ed25519 over `v1.<claims>`, base64url. A vouch lives a minute:
//! long enough for one page's calls, too short to be worth stealing.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// The metadata key a vouch travels in.
pub const HEADER: &str = "x-touchpoint-user";

/// How long a vouch is good for, in seconds.
pub const LIFETIME_SECONDS: i64 = 60;

/// Who the front vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouched {
    /// The user's id (a roster id for coordinators).
    pub sub: String,
    /// The programs whose cases they may see.
    pub programs: Vec<String>,
    /// When the vouch ends (Unix seconds).
    pub exp: i64,
}

/// Why a vouch was refused. No variant repeats it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VouchError {
    /// Not `v1.<claims>.<signature>` of base64url JSON.
    #[error("the user vouch is malformed")]
    Malformed,
    /// No trusted key signed it.
    #[error("the user vouch is not signed by a trusted front")]
    Untrusted,
    /// Its minute is over.
    #[error("the user vouch has expired")]
    Expired,
    /// The service trusts no front.
    #[error("this service takes no user vouches")]
    NotTrusted,
}

/// The public keys of the fronts a service trusts
/// (`TOUCHPOINT_USER_VOUCH_KEYS`: base64url Ed25519 public keys, comma-separated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedFronts(Arc<[[u8; 32]]>);

impl TrustedFronts {
    /// Parses the variable's value; the error says what is wrong without it.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        raw.split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| {
                let bytes = URL_SAFE_NO_PAD
                    .decode(k)
                    .map_err(|_| "expected base64url Ed25519 public keys")?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| "an Ed25519 public key is 32 bytes")
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|keys| Self(keys.into()))
    }

    /// Trusting exactly `keys`.
    pub fn of(keys: Vec<[u8; 32]>) -> Self {
        Self(keys.into())
    }

    /// Whether any front is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Who `header` vouches for, if a trusted front signed it and it is
    /// still good at `now` (Unix seconds).
    pub fn verify(&self, header: &[u8], now: i64) -> Result<Vouched, VouchError> {
        if self.0.is_empty() {
            return Err(VouchError::NotTrusted);
        }
        let text = std::str::from_utf8(header).map_err(|_| VouchError::Malformed)?;
        let rest = text.strip_prefix("v1.").ok_or(VouchError::Malformed)?;
        let (claims, signature) = rest.split_once('.').ok_or(VouchError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| VouchError::Malformed)?;
        let signed = &text.as_bytes()[..3 + claims.len()];
        if !self.0.iter().any(|key| {
            UnparsedPublicKey::new(&ED25519, key)
                .verify(signed, &signature)
                .is_ok()
        }) {
            return Err(VouchError::Untrusted);
        }
        let json = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| VouchError::Malformed)?;
        let vouched: Vouched = serde_json::from_slice(&json).map_err(|_| VouchError::Malformed)?;
        if vouched.exp <= now {
            return Err(VouchError::Expired);
        }
        Ok(vouched)
    }
}

/// The front's signing key.
pub struct Voucher {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Voucher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voucher")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// A signing key could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the vouching key {0}")]
pub struct KeyError(&'static str);

impl Voucher {
    /// A new key; returns it and its PKCS#8 document, base64url (what
    /// [`Voucher::from_pkcs8`] reads back).
    pub fn generate() -> Result<(Self, String), KeyError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| KeyError("could not be generated"))?;
        let encoded = URL_SAFE_NO_PAD.encode(document.as_ref());
        Ok((Self::from_pkcs8(&encoded)?, encoded))
    }

    /// The key in a base64url PKCS#8 document.
    pub fn from_pkcs8(encoded: &str) -> Result<Self, KeyError> {
        let document = URL_SAFE_NO_PAD
            .decode(encoded.trim())
            .map_err(|_| KeyError("is not base64url"))?;
        let pair = Ed25519KeyPair::from_pkcs8(&document)
            .map_err(|_| KeyError("is not an Ed25519 PKCS#8 key"))?;
        Ok(Self { pair })
    }

    /// The public key, base64url: what services put in `TOUCHPOINT_USER_VOUCH_KEYS`.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref())
    }

    /// The public key's bytes.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        key
    }

    /// A vouch for `sub` seeing `programs`, good for a minute after `now`.
    pub fn vouch(&self, sub: &str, programs: &[String], now: i64) -> String {
        let claims = Vouched {
            sub: sub.to_owned(),
            programs: programs.to_vec(),
            exp: now + LIFETIME_SECONDS,
        };
        // Serialising strings and numbers does not fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(json));
        let signature = self.pair.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vouch_from_a_trusted_front_names_the_user_until_it_expires() -> Result<(), KeyError> {
        let (desk, _) = Voucher::generate()?;
        let fronts = TrustedFronts::parse(&desk.public_key()).map_err(KeyError)?;
        let vouch = desk.vouch("carla", &["adherence".into()], 1_000);
        let vouched = fronts.verify(vouch.as_bytes(), 1_000);
        assert_eq!(
            vouched.map(|v| (v.sub, v.programs)),
            Ok(("carla".into(), vec!["adherence".into()]))
        );
        assert_eq!(
            fronts.verify(vouch.as_bytes(), 1_060),
            Err(VouchError::Expired)
        );

        let (stranger, _) = Voucher::generate()?;
        let forged = stranger.vouch("carla", &["adherence".into(), "other".into()], 1_000);
        assert_eq!(
            fronts.verify(forged.as_bytes(), 1_000),
            Err(VouchError::Untrusted)
        );
        let (_, sig) = vouch.rsplit_once('.').unwrap_or_default();
        let widened = format!(
            "v1.{}.{sig}",
            URL_SAFE_NO_PAD.encode(r#"{"sub":"carla","programs":["other"],"exp":9999}"#)
        );
        assert_eq!(
            fronts.verify(widened.as_bytes(), 1_000),
            Err(VouchError::Untrusted)
        );
        assert_eq!(
            fronts.verify(b"nonsense", 1_000),
            Err(VouchError::Malformed)
        );
        assert_eq!(
            TrustedFronts::default().verify(vouch.as_bytes(), 1_000),
            Err(VouchError::NotTrusted)
        );
        Ok(())
    }

    #[test]
    fn a_key_survives_its_document_and_bad_keys_are_refused() -> Result<(), KeyError> {
        let (desk, document) = Voucher::generate()?;
        assert_eq!(
            Voucher::from_pkcs8(&document)?.public_key(),
            desk.public_key()
        );
        assert!(Voucher::from_pkcs8("not a key").is_err());
        assert!(TrustedFronts::parse("abc").is_err());
        Ok(())
    }
}
