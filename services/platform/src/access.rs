//! Who may call which gRPC method.
//!
//! A caller is known by one of two credentials:
//! - **a client certificate** signed by the mesh's certificate authority
//!   (mutual TLS, for the services and the operators' CLI): its common name is
//!   the caller's name and its organisation (`O`) its role;
//! - **a bearer token** (`authorization: Bearer ...`, for callers outside the
//!   mesh such as the telephony system): the service keeps only each token's
//!   SHA-256, with a name and a role.
//!
//! Two roles: `read` may call the methods that only look (`Get*`, `List*`,
//! `Find*`, `Watch*`, previews and validation); `write` may call every method.
//! A method not on the read list needs `write`. The health service answers
//! anyone, so probes work without credentials; reflection needs `read`.
//!
//! No credential: `UNAUTHENTICATED`. A credential whose role may not call the
//! method: `PERMISSION_DENIED`. A refusal's log line names the method and the
//! caller, never the token.
//!
//! A caller may also carry a person's vouch from a trusted front (the desk,
//! see [`crate::vouch`]): the call is then that person's, with the caller's
//! role, and sees only the cases of the programs the vouch names. A vouch that
//! does not verify is `UNAUTHENTICATED`, never ignored.

use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::header::AUTHORIZATION;
use sha2::{Digest as _, Sha256};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::vouch::{self, TrustedFronts};

/// What a caller is allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Methods that only look.
    Read,
    /// Every method.
    Write,
}

impl Role {
    /// The role's name in tokens and certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
        }
    }

    fn allows(self, needs: Needs) -> bool {
        match needs {
            Needs::Nothing | Needs::Read => true,
            Needs::Write => self == Role::Write,
        }
    }
}

impl FromStr for Role {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            _ => Err(()),
        }
    }
}

/// What calling a method takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: the health service.
    Nothing,
    /// The `read` role.
    Read,
    /// The `write` role.
    Write,
}

/// Touchpoint's methods that change nothing.
const READ_METHODS: [&str; 17] = [
    "/touchpoint.v1.CaseService/GetCase",
    "/touchpoint.v1.CaseService/ListAdverseEvents",
    "/touchpoint.v1.CaseService/GetKpis",
    "/touchpoint.v1.CaseService/FindCasesByContact",
    "/touchpoint.v1.CaseService/GetTimeline",
    "/touchpoint.v1.CaseService/WatchCase",
    "/touchpoint.v1.CaseService/WatchEvents",
    "/touchpoint.v1.CadenceService/ListPrograms",
    "/touchpoint.v1.CadenceService/ListProgramVersions",
    "/touchpoint.v1.CadenceService/ValidateProgram",
    "/touchpoint.v1.CadenceService/GetPlan",
    "/touchpoint.v1.CadenceService/PreviewProgram",
    "/touchpoint.v1.DispatchService/GetAttempt",
    "/touchpoint.v1.DispatchService/ListAttempts",
    "/touchpoint.v1.DispatchService/RenderPreview",
    "/touchpoint.v1.RoutingService/ListCoordinators",
    "/touchpoint.v1.RoutingService/ListWorklist",
];

/// What calling the method at `path` (`/package.Service/Method`) takes.
pub fn needs(path: &str) -> Needs {
    if path.starts_with("/grpc.health.v1.Health/") {
        Needs::Nothing
    } else if path.starts_with("/grpc.reflection.") || READ_METHODS.contains(&path) {
        Needs::Read
    } else {
        Needs::Write
    }
}

/// A token's SHA-256, as the service keeps it.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A token the service accepts: its holder's name, role and digest, and the
/// programs whose cases it may reach when it is scoped to some.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Who holds it, for logs.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token.
    pub digest: [u8; 32],
    /// The programs it may reach; `None`: every program.
    pub programs: Option<Vec<String>>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("programs", &self.programs)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// An entry accepting `token` for `name` with `role`, keeping only its digest.
    pub fn new(name: &str, role: Role, token: &str) -> Self {
        Self {
            name: name.to_owned(),
            role,
            digest: token_digest(token),
            programs: None,
        }
    }

    /// This token, reaching only the cases of `programs`.
    pub fn scoped_to(mut self, programs: &[&str]) -> Self {
        self.programs = Some(programs.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    /// This entry as `TOUCHPOINT_API_TOKENS` writes it:
    /// `name:role:sha256-hex[:program+program...]`.
    pub fn entry(&self) -> String {
        let scope = self
            .programs
            .as_ref()
            .map(|p| format!(":{}", p.join("+")))
            .unwrap_or_default();
        format!(
            "{}:{}:{}{scope}",
            self.name,
            self.role.as_str(),
            hex::encode(self.digest)
        )
    }

    /// Parses `TOUCHPOINT_API_TOKENS`: `name:role:sha256-hex`, and optionally
    /// `:program+program` for a token that reaches only those programs' cases;
    /// comma-separated. The error says what is wrong without repeating the value.
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, &'static str> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let mut parts = entry.split(':');
                let (Some(name), Some(role), Some(digest), programs, None) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) else {
                    return Err(
                        "expected name:role:sha256-hex[:program+program] entries, comma-separated",
                    );
                };
                let programs = programs
                    .map(|list| {
                        let programs: Vec<String> =
                            list.split('+').map(str::trim).map(str::to_owned).collect();
                        if programs.iter().any(|p| {
                            p.is_empty()
                                || !p.chars().all(|c| {
                                    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
                                })
                        }) {
                            Err("a token's programs must be program ids joined by '+'")
                        } else {
                            Ok(programs)
                        }
                    })
                    .transpose()?;
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                {
                    return Err("a token's name must be letters, digits, '.', '_' or '-'");
                }
                let role = role
                    .parse()
                    .map_err(|()| "a token's role must be read or write")?;
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(digest, &mut bytes)
                    .map_err(|_| "a token's digest must be 64 hex digits (its SHA-256)")?;
                Ok(Self {
                    name: name.to_owned(),
                    role,
                    digest: bytes,
                    programs,
                })
            })
            .collect()
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A client certificate from the mesh's authority.
    Certificate,
    /// A bearer token.
    Token,
}

/// An authenticated caller, put in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The certificate's common name or the token's name; the vouched
    /// person's id when a front vouches for one.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// How it proved it.
    pub proof: Proof,
    /// The programs whose cases it may see; `None`: every program (a service).
    pub programs: Option<Vec<String>>,
}

impl Caller {
    /// The name of the caller the gate admitted for `request`: the identity a
    /// service records on a change, never a request field. "unauthenticated"
    /// when no gate stood before the service (a service built without one).
    pub fn name_of<T>(request: &tonic::Request<T>) -> String {
        request
            .extensions()
            .get::<Caller>()
            .map_or_else(|| "unauthenticated".to_owned(), |c| c.name.clone())
    }

    /// The programs the caller of `request` may see; `None`: every program.
    pub fn programs_of<T>(request: &tonic::Request<T>) -> Option<Vec<String>> {
        request
            .extensions()
            .get::<Caller>()
            .and_then(|c| c.programs.clone())
    }
}

/// Which programs a call may see: every one, or those listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(Option<Vec<String>>);

impl Scope {
    /// The scope of `request`'s caller.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        Self(Caller::programs_of(request))
    }

    /// Every program.
    pub fn all() -> Self {
        Self(None)
    }

    /// Only `programs`.
    pub fn from_programs(programs: Vec<String>) -> Self {
        Self(Some(programs))
    }

    /// Whether a case of `program_id` is in scope.
    pub fn sees(&self, program_id: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|programs| programs.iter().any(|p| p == program_id))
    }

    /// The listed programs; `None`: every program.
    pub fn programs(&self) -> Option<&[String]> {
        self.0.as_deref()
    }

    /// `NOT_FOUND` for a case outside the scope: its existence is not
    /// disclosed either.
    pub fn check(&self, program_id: &str, what: &str) -> Result<(), Status> {
        if self.sees(program_id) {
            Ok(())
        } else {
            Err(Status::not_found(format!("{what}: no such case")))
        }
    }
}

/// The decision for one call.
#[derive(Debug, Clone)]
pub struct Gate {
    tokens: Arc<[ApiToken]>,
    fronts: TrustedFronts,
}

impl Gate {
    /// A gate accepting `tokens` and certificates the TLS layer verified.
    pub fn new(tokens: Vec<ApiToken>) -> Self {
        Self {
            tokens: tokens.into(),
            fronts: TrustedFronts::default(),
        }
    }

    /// This gate, also taking vouches for people signed by `fronts`.
    pub fn trusting(mut self, fronts: TrustedFronts) -> Self {
        self.fronts = fronts;
        self
    }

    /// The caller as the person `vouch` names, if a trusted front signed it.
    fn vouched(&self, mut caller: Caller, vouch: Option<&[u8]>) -> Result<Caller, Status> {
        let Some(vouch) = vouch else {
            return Ok(caller);
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let vouched = self
            .fronts
            .verify(vouch, now)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        caller.name = vouched.sub;
        caller.programs = Some(vouched.programs);
        Ok(caller)
    }

    /// Who is calling, from a verified client certificate (DER), else from
    /// the `authorization` header.
    pub fn identify(
        &self,
        certificate: Option<&[u8]>,
        authorization: Option<&[u8]>,
    ) -> Result<Caller, Status> {
        if let Some(der) = certificate {
            return caller_of_certificate(der);
        }
        let Some(header) = authorization else {
            return Err(Status::unauthenticated(
                "present a client certificate or a bearer token",
            ));
        };
        let token = header
            .strip_prefix(b"Bearer ")
            .ok_or_else(|| Status::unauthenticated("the authorization is not a bearer token"))?;
        let token = std::str::from_utf8(token)
            .map_err(|_| Status::unauthenticated("the bearer token is not text"))?;
        let digest = token_digest(token.trim());
        // Every entry is compared, each in constant time, so the time taken
        // says nothing about which entry came close.
        let mut found = None;
        for entry in self.tokens.iter() {
            if constant_time_eq(&entry.digest, &digest) {
                found = Some(entry);
            }
        }
        found
            .map(|entry| Caller {
                name: entry.name.clone(),
                role: entry.role,
                proof: Proof::Token,
                programs: entry.programs.clone(),
            })
            .ok_or_else(|| Status::unauthenticated("the bearer token is not known"))
    }

    /// Whether the call to `path` may go ahead, and as whom (`None` for a
    /// method anyone may call).
    pub fn admit(
        &self,
        path: &str,
        certificate: Option<&[u8]>,
        authorization: Option<&[u8]>,
    ) -> Result<Option<Caller>, Status> {
        self.admit_vouched(path, certificate, authorization, None)
    }

    /// [`Gate::admit`], for a call that may carry a person's vouch.
    pub fn admit_vouched(
        &self,
        path: &str,
        certificate: Option<&[u8]>,
        authorization: Option<&[u8]>,
        vouch: Option<&[u8]>,
    ) -> Result<Option<Caller>, Status> {
        let needs = needs(path);
        if needs == Needs::Nothing {
            return Ok(None);
        }
        let caller = self.vouched(self.identify(certificate, authorization)?, vouch)?;
        if caller.role.allows(needs) {
            Ok(Some(caller))
        } else {
            Err(Status::permission_denied(format!(
                "role {} may not call {path}",
                caller.role.as_str()
            )))
        }
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller a verified certificate names: common name and organisation.
fn caller_of_certificate(der: &[u8]) -> Result<Caller, Status> {
    let (_, certificate) = X509Certificate::from_der(der)
        .map_err(|_| Status::unauthenticated("the client certificate cannot be read"))?;
    let subject = certificate.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("unnamed")
        .to_owned();
    let role = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .find_map(|o| o.parse::<Role>().ok())
        .ok_or_else(|| Status::permission_denied("the client certificate carries no role"))?;
    Ok(Caller {
        name,
        role,
        proof: Proof::Certificate,
        programs: None,
    })
}

/// The tower layer that puts a [`Gate`] in front of every route.
#[derive(Debug, Clone)]
pub struct AccessLayer {
    gate: Gate,
}

impl AccessLayer {
    /// The layer for `gate`.
    pub fn new(gate: Gate) -> Self {
        Self { gate }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The routes behind a [`Gate`].
#[derive(Debug, Clone)]
pub struct AccessService<S> {
    inner: S,
    gate: Gate,
}

impl<S, B> Service<http::Request<B>> for AccessService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let certificates = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        let leaf = certificates.as_ref().and_then(|chain| chain.first());
        let decision = self.gate.admit_vouched(
            request.uri().path(),
            leaf.map(|der| der.as_ref()),
            request
                .headers()
                .get(AUTHORIZATION)
                .map(http::HeaderValue::as_bytes),
            request
                .headers()
                .get(vouch::HEADER)
                .map(http::HeaderValue::as_bytes),
        );
        match decision {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                Either::Right(self.inner.call(request))
            }
            Err(status) => {
                tracing::warn!(
                    method = request.uri().path(),
                    code = ?status.code(),
                    reason = status.message(),
                    "gRPC call refused"
                );
                Either::Left(ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::DevCa;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    use tonic::Code;

    fn gate() -> Gate {
        Gate::new(vec![
            ApiToken::new("telephony", Role::Write, "w-secret"),
            ApiToken::new("reports", Role::Read, "r-secret"),
        ])
    }

    fn code(result: Result<Option<Caller>, Status>) -> Option<Code> {
        result.err().map(|s| s.code())
    }

    #[test]
    fn health_is_open_and_only_looking_is_read() {
        assert_eq!(needs("/grpc.health.v1.Health/Check"), Needs::Nothing);
        assert_eq!(
            needs("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Needs::Read
        );
        assert_eq!(needs("/touchpoint.v1.CaseService/GetTimeline"), Needs::Read);
        assert_eq!(needs("/touchpoint.v1.CaseService/OpenCase"), Needs::Write);
        assert_eq!(
            needs("/touchpoint.v1.RoutingService/RouteContact"),
            Needs::Write
        );
        assert_eq!(needs("/touchpoint.v1.CaseService/NewMethod"), Needs::Write);
    }

    #[test]
    fn tokens_are_checked_against_their_roles() {
        let gate = gate();
        let open = "/touchpoint.v1.CaseService/OpenCase";
        let get = "/touchpoint.v1.CaseService/GetCase";
        assert_eq!(
            code(gate.admit(open, None, None)),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code(gate.admit(open, None, Some(b"Bearer guess"))),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code(gate.admit(open, None, Some(b"Basic dXNlcjpwYXNz"))),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code(gate.admit(open, None, Some(b"Bearer r-secret"))),
            Some(Code::PermissionDenied)
        );
        let reader = gate.admit(get, None, Some(b"Bearer r-secret"));
        assert_eq!(
            reader.ok().flatten().map(|c| c.name),
            Some("reports".into())
        );
        let writer = gate.admit(open, None, Some(b"Bearer w-secret"));
        assert_eq!(
            writer.ok().flatten().map(|c| (c.role, c.proof)),
            Some((Role::Write, Proof::Token))
        );
        assert!(matches!(
            gate.admit("/grpc.health.v1.Health/Check", None, None),
            Ok(None)
        ));
    }

    #[test]
    fn a_refusal_does_not_repeat_the_token() {
        let status = gate()
            .admit(
                "/touchpoint.v1.CaseService/OpenCase",
                None,
                Some(b"Bearer s3cr3t-guess"),
            )
            .err()
            .map(|s| s.message().to_owned())
            .unwrap_or_default();
        assert!(!status.is_empty());
        assert!(!status.contains("s3cr3t"), "{status}");
    }

    #[test]
    fn a_certificate_names_the_caller_and_its_role() -> Result<(), Box<dyn std::error::Error>> {
        let ca = DevCa::generate()?;
        let der = |pem: &str| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
            Ok(CertificateDer::from_pem_slice(pem.as_bytes())?.to_vec())
        };
        let open = "/touchpoint.v1.CaseService/OpenCase";
        let writer = ca.issue_client("cadence", Some(Role::Write), &["localhost"])?;
        let caller = gate().admit(open, Some(&der(&writer.cert_pem)?), None)?;
        assert_eq!(
            caller,
            Some(Caller {
                name: "cadence".into(),
                role: Role::Write,
                proof: Proof::Certificate,
                programs: None,
            })
        );
        let reader = ca.issue_client("dashboard", Some(Role::Read), &[])?;
        let reader = der(&reader.cert_pem)?;
        assert_eq!(
            code(gate().admit(open, Some(&reader), None)),
            Some(Code::PermissionDenied)
        );
        let roleless = ca.issue_client("stranger", None, &[])?;
        assert_eq!(
            code(gate().admit(open, Some(&der(&roleless.cert_pem)?), None)),
            Some(Code::PermissionDenied)
        );
        assert_eq!(
            code(gate().admit(open, Some(b"not a certificate"), None)),
            Some(Code::Unauthenticated)
        );
        Ok(())
    }

    #[test]
    fn token_lists_parse_and_name_what_is_wrong() {
        let entry = ApiToken::new("telephony", Role::Write, "secret").entry();
        assert_eq!(
            ApiToken::parse_list(&format!(" {entry} ,")),
            Ok(vec![ApiToken::new("telephony", Role::Write, "secret")])
        );
        let digest = hex::encode(token_digest("secret"));
        for bad in [
            "telephony:write".to_owned(),
            format!("telephony:admin:{digest}"),
            format!("tele phony:write:{digest}"),
            "telephony:write:abc".to_owned(),
            format!("a:write:{digest}:adherence:extra"),
            format!("a:write:{digest}:adherence++x"),
            format!("a:write:{digest}:bad program"),
        ] {
            let error = ApiToken::parse_list(&bad).err();
            assert!(error.is_some(), "{bad} should be refused");
            assert!(!error.unwrap_or_default().contains(&digest));
        }
        let scoped = ApiToken::new("reports", Role::Read, "r").scoped_to(&["adherence", "refill"]);
        assert_eq!(
            ApiToken::parse_list(&scoped.entry()),
            Ok(vec![scoped.clone()])
        );
        let caller = Gate::new(vec![scoped])
            .admit(
                "/touchpoint.v1.CaseService/GetCase",
                None,
                Some(b"Bearer r"),
            )
            .ok()
            .flatten()
            .and_then(|c| c.programs);
        assert_eq!(
            caller,
            Some(vec!["adherence".to_owned(), "refill".to_owned()])
        );
    }
}
