//! How the CLI reaches the services, and the development mesh it can make.
//!
//! A [`Peer`] is a service's URL with the credentials the CLI presents there.
//! [`write_dev_mesh`] makes a fresh development authority and a certificate for
//! each service and for the CLI: `touchpoint up` runs the services on it, so
//! every gRPC call between the local processes is mutual TLS. Nothing it
//! writes belongs in production.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use touchpoint_platform::access::{ApiToken, Role};
use touchpoint_platform::config::{Env, TlsMaterial};
use touchpoint_platform::grpc::client::{self, AuthChannel, ClientAccess};
use touchpoint_platform::secret::ExposeSecret as _;
use touchpoint_platform::tls::{DevCa, Identity};

/// A service as the CLI calls it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `http://host:port` (`https://` is used when the CLI speaks TLS).
    pub url: String,
    /// What the CLI presents.
    pub access: ClientAccess,
}

impl Peer {
    /// The service at `url`, called with `access`.
    pub fn new(url: impl Into<String>, access: ClientAccess) -> Self {
        Self {
            url: url.into(),
            access,
        }
    }

    /// The service at `addr` (`host:port`), called with the credentials in this
    /// process's environment (`TOUCHPOINT_API_TOKEN`, `TOUCHPOINT_TLS_*`).
    pub fn from_env(addr: &str) -> anyhow::Result<Self> {
        Ok(Self::new(
            format!("http://{addr}"),
            ClientAccess::from_env(&Env::Process)?,
        ))
    }

    /// A channel to it.
    pub async fn channel(&self) -> anyhow::Result<AuthChannel> {
        client::connect(&self.url, &self.access)
            .await
            .with_context(|| format!("cannot reach {}", self.url))
    }
}

/// The names in the development mesh: the four services, the desk and the CLI.
pub const MEMBERS: [&str; 6] = ["cases", "cadence", "dispatch", "routing", "desk", "cli"];

/// Where [`write_dev_mesh`] put `name`'s certificate and key, and the authority.
#[derive(Debug, Clone)]
pub struct MeshDir(pub PathBuf);

impl MeshDir {
    /// The authority's certificate.
    pub fn ca(&self) -> PathBuf {
        self.0.join("ca.pem")
    }

    /// `name`'s certificate chain.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.pem"))
    }

    /// `name`'s private key.
    pub fn key(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.key"))
    }

    /// The variables that make `name` speak the mesh's TLS.
    pub fn env_of(&self, name: &str) -> Vec<(String, String)> {
        [
            ("TOUCHPOINT_TLS_CA", self.ca()),
            ("TOUCHPOINT_TLS_CERT", self.cert(name)),
            ("TOUCHPOINT_TLS_KEY", self.key(name)),
        ]
        .into_iter()
        .map(|(var, path)| (var.to_owned(), path.display().to_string()))
        .collect()
    }

    /// The CLI's credentials in this mesh.
    pub fn cli_access(&self) -> anyhow::Result<ClientAccess> {
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))
        };
        Ok(ClientAccess {
            token: None,
            tls: TlsMaterial {
                ca_pem: Some(read(self.ca())?),
                identity: Some(Identity {
                    cert_pem: read(self.cert("cli"))?,
                    key_pem: read(self.key("cli"))?.into(),
                }),
            },
        })
    }
}

/// Writes a fresh development authority and a `write` certificate for each of
/// [`MEMBERS`] (serving `localhost` and `127.0.0.1`) into `dir`. The
/// authority's key is not kept: a later run makes a new mesh.
pub fn write_dev_mesh(dir: &Path) -> anyhow::Result<MeshDir> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mesh = MeshDir(dir.to_path_buf());
    let ca = DevCa::generate()?;
    std::fs::write(mesh.ca(), ca.cert_pem()).context("cannot write the authority")?;
    for name in MEMBERS {
        let identity =
            ca.issue_client(name, Some(Role::Write), &[name, "localhost", "127.0.0.1"])?;
        std::fs::write(mesh.cert(name), &identity.cert_pem)
            .with_context(|| format!("cannot write {name}'s certificate"))?;
        write_secret(&mesh.key(name), identity.key_pem.expose_secret())?;
    }
    Ok(mesh)
}

/// Writes `contents` readable by its owner only.
pub fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A new random bearer token for `name` with `role` (reaching only the cases
/// of `programs`, when any are named), and the entry the services take in
/// `TOUCHPOINT_API_TOKENS` (only its SHA-256).
pub fn new_token(name: &str, role: Role, programs: &[String]) -> anyhow::Result<(String, String)> {
    let token = format!(
        "tp_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut api_token = ApiToken::new(name, role, &token);
    if !programs.is_empty() {
        let programs: Vec<&str> = programs.iter().map(|p| p.trim()).collect();
        api_token = api_token.scoped_to(&programs);
    }
    let entry = api_token.entry();
    // The entry must parse back, which also checks the name.
    ApiToken::parse_list(&entry).map_err(|reason| anyhow::anyhow!("{reason}"))?;
    Ok((token, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_mesh_gives_each_member_its_files() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("tp-mesh-{}", uuid::Uuid::new_v4()));
        let mesh = write_dev_mesh(&dir)?;
        let access = mesh.cli_access()?;
        assert!(
            access
                .tls
                .ca_pem
                .is_some_and(|ca| ca.contains("BEGIN CERTIFICATE"))
        );
        let env = Env::from_pairs(
            mesh.env_of("cases")
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let tls = TlsMaterial::from_env(&env)?;
        assert!(tls.identity.is_some_and(|i| i.server_config().is_ok()));
        let key = std::fs::metadata(mesh.key("cases"))?;
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn a_new_token_is_kept_only_as_its_digest() -> anyhow::Result<()> {
        let (token, entry) = new_token("telephony", Role::Write, &[])?;
        assert!(!entry.contains(&token));
        assert_eq!(
            ApiToken::parse_list(&entry).map_err(|e| anyhow::anyhow!(e))?,
            vec![ApiToken::new("telephony", Role::Write, &token)]
        );
        let (token, entry) = new_token("reports", Role::Read, &["adherence".into()])?;
        assert_eq!(
            ApiToken::parse_list(&entry).map_err(|e| anyhow::anyhow!(e))?,
            vec![ApiToken::new("reports", Role::Read, &token).scoped_to(&["adherence"])]
        );
        assert!(new_token("reports", Role::Read, &["bad program".into()]).is_err());
        Ok(())
    }
}
