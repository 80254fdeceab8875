//! TLS material: a server identity read from PEM, what an outgoing connection
//! trusts (the public web's roots and any authorities given), and a throwaway
//! development certificate authority that issues server certificates for local
//! runs and tests. A development CA's key lives only in the process that made
//! it; nothing it signs belongs in production.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::access::Role;
use crate::secret::{ExposeSecret as _, SecretString};

/// TLS material could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating a key or certificate failed.
    #[error("cannot generate a development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM block holds no certificate or no private key.
    #[error("the PEM holds no {0}")]
    Pem(&'static str),
    /// rustls refused the certificate and key.
    #[error("the certificate and key cannot serve TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// A server's certificate chain and private key, as PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate chain, leaf first.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: SecretString,
}

impl Identity {
    /// A rustls server configuration presenting this identity, with rustls's
    /// safe default protocol versions and no client certificates.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let (chain, key) = self.chain_and_key()?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(Arc::new(config))
    }

    /// The same, but every client must present a certificate an authority in
    /// `clients_ca_pem` signed (mutual TLS).
    pub fn server_config_requiring_clients(
        &self,
        clients_ca_pem: &str,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let (chain, key) = self.chain_and_key()?;
        let mut roots = RootCertStore::empty();
        for authority in certificates(clients_ca_pem)? {
            roots.add(authority)?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        Ok(Arc::new(config))
    }

    fn chain_and_key(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let chain = certificates(&self.cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.expose_secret().as_bytes())
            .map_err(|_| TlsError::Pem("private key"))?;
        Ok((chain, key))
    }
}

/// The certificates in `pem`; none is an error.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let found = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem("certificate"))?;
    if found.is_empty() {
        return Err(TlsError::Pem("certificate"));
    }
    Ok(found)
}

/// A rustls client configuration that trusts the public web's roots (Mozilla's,
/// as `webpki-roots` carries them) and the authorities in `extra_roots_pem` (a
/// private CA, or a development one), with rustls's safe default protocol
/// versions.
pub fn client_config(extra_roots_pem: Option<&str>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_roots_pem {
        for authority in certificates(pem)? {
            roots.add(authority)?;
        }
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The cryptography every TLS configuration here uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A development certificate authority.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// A new authority with a fresh key.
    pub fn generate() -> Result<Self, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Touchpoint development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The authority's certificate, for a client's trust store.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (host names, or IP addresses such as
    /// `127.0.0.1`), signed by this authority.
    pub fn issue(&self, names: &[&str]) -> Result<Identity, TlsError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(names)?.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem().into(),
        })
    }

    /// A certificate for a member of the mesh, good for both ends of a
    /// connection: its common name is `name`, its organisation `role` (what the
    /// services' access gate reads), and it serves `hosts` (host names or IP
    /// addresses; none for a client only).
    pub fn issue_client(
        &self,
        name: &str,
        role: Option<Role>,
        hosts: &[&str],
    ) -> Result<Identity, TlsError> {
        let hosts: Vec<String> = hosts.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(hosts)?;
        params.distinguished_name.push(DnType::CommonName, name);
        if let Some(role) = role {
            params
                .distinguished_name
                .push(DnType::OrganizationName, role.as_str());
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_identity_serves_tls() -> Result<(), TlsError> {
        let ca = DevCa::generate()?;
        let identity = ca.issue(&["localhost", "127.0.0.1"])?;
        assert!(identity.server_config().is_ok());
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        Ok(())
    }

    #[test]
    fn a_client_trusts_the_public_roots_and_any_authority_given() -> Result<(), TlsError> {
        assert!(client_config(None).is_ok());
        let ca = DevCa::generate()?;
        assert!(client_config(Some(&ca.cert_pem())).is_ok());
        assert!(matches!(
            client_config(Some("not a certificate")),
            Err(TlsError::Pem("certificate"))
        ));
        Ok(())
    }

    #[test]
    fn pem_without_a_key_is_a_clear_error() {
        let identity = Identity {
            cert_pem: "not a certificate".into(),
            key_pem: SecretString::default(),
        };
        assert!(matches!(
            identity.server_config(),
            Err(TlsError::Pem("certificate"))
        ));
    }
}
