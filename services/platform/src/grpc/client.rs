//! The calling side of the access gate: a channel that speaks TLS when the
//! caller has the mesh's authority (presenting its own certificate when it has
//! one) and sends a bearer token when it has one.
//!
//! Variables: `TOUCHPOINT_API_TOKEN` (the token), and the TLS files of
//! [`TlsMaterial`]. A generated client takes the channel as it is:
//! `CaseServiceClient::new(client::connect(url, &access).await?)`.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::{ConfigError, Env, TlsMaterial};
use crate::secret::{ExposeSecret as _, SecretString};

/// What a caller presents: a token, TLS material, both or neither.
#[derive(Debug, Clone, Default)]
pub struct ClientAccess {
    /// The bearer token.
    pub token: Option<SecretString>,
    /// The authority to trust and the certificate to present.
    pub tls: TlsMaterial,
}

impl ClientAccess {
    /// A caller with only a token.
    pub fn token(token: &str) -> Self {
        Self {
            token: Some(token.into()),
            tls: TlsMaterial::default(),
        }
    }

    /// Reads `TOUCHPOINT_API_TOKEN` and the TLS variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let token = env.raw("TOUCHPOINT_API_TOKEN");
        if token
            .as_ref()
            .is_some_and(|t| AsciiMetadataValue::try_from(format!("Bearer {t}")).is_err())
        {
            return Err(ConfigError {
                var: "TOUCHPOINT_API_TOKEN".into(),
                reason: "expected printable ASCII".into(),
            });
        }
        Ok(Self {
            token: token.map(Into::into),
            tls: TlsMaterial::from_env(env)?,
        })
    }

    /// `url` as this caller reaches it: `https://` when it speaks TLS.
    pub fn url(&self, url: &str) -> String {
        match (&self.tls.ca_pem, url.strip_prefix("http://")) {
            (Some(_), Some(rest)) => format!("https://{rest}"),
            _ => url.to_owned(),
        }
    }

    /// An endpoint for `url`, with TLS when the caller has the authority.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(self.url(url))?;
        let Some(ca) = &self.tls.ca_pem else {
            return Ok(endpoint);
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(identity) = &self.tls.identity {
            tls = tls.identity(Identity::from_pem(
                &identity.cert_pem,
                identity.key_pem.expose_secret(),
            ));
        }
        endpoint.tls_config(tls)
    }

    /// `channel` sending this caller's token.
    pub fn wrap(&self, channel: Channel) -> AuthChannel {
        let header = self
            .token
            .as_ref()
            .and_then(|t| MetadataValue::try_from(format!("Bearer {}", t.expose_secret())).ok());
        InterceptedService::new(channel, Bearer(header))
    }
}

/// Adds `authorization: Bearer ...` to every call.
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(..)")
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// A channel that authenticates its calls.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// Connects to `url` as `access` says.
pub async fn connect(
    url: &str,
    access: &ClientAccess,
) -> Result<AuthChannel, tonic::transport::Error> {
    let channel = access.endpoint(url)?.connect().await?;
    Ok(access.wrap(channel))
}

/// Connects to `url`, giving up on the connection after `timeout`.
pub async fn connect_within(
    url: &str,
    access: &ClientAccess,
    timeout: Duration,
) -> Result<AuthChannel, tonic::transport::Error> {
    let channel = access
        .endpoint(url)?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await?;
    Ok(access.wrap(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_caller_reaches_https_and_its_debug_hides_the_token() {
        let mut access = ClientAccess::token("s3cret");
        assert_eq!(access.url("http://127.0.0.1:1"), "http://127.0.0.1:1");
        access.tls.ca_pem = Some("ca".into());
        assert_eq!(access.url("http://127.0.0.1:1"), "https://127.0.0.1:1");
        assert!(!format!("{access:?}").contains("s3cret"));
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused_by_name() {
        let env = Env::from_pairs([("TOUCHPOINT_API_TOKEN", "line\nbreak")]);
        assert_eq!(
            ClientAccess::from_env(&env).err().map(|e| e.var),
            Some("TOUCHPOINT_API_TOKEN".to_owned())
        );
    }
}
