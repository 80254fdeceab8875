//! gRPC server bootstrap: every service serves the standard health service and
//! reflection beside its own API, behind the access gate ([`crate::access`]),
//! over TLS when it has a certificate, continues callers' traces, and stops
//! accepting requests on shutdown while finishing those in flight.
//!
//! With a health address, the health service is also served there alone, in
//! plain gRPC and without credentials: Kubernetes' gRPC probes speak no TLS.
//! That port serves nothing else.

pub mod client;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::access::{AccessLayer, Gate};
use crate::config::AccessConfig;
use crate::metrics::GrpcMetricsLayer;
use crate::secret::ExposeSecret as _;
use crate::trace_context::grpc_server_span;

/// A storage failure as a client sees it, in every service: `UNAVAILABLE`,
/// which clients retry, saying how (`retry`: "try again", or "retry with the
/// same request_id"). The error itself is logged here, never sent.
pub fn storage_unavailable(error: &dyn std::fmt::Display, retry: &str) -> tonic::Status {
    tracing::error!(%error, "storage failure");
    tonic::Status::unavailable(format!("storage is unavailable; {retry}"))
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The reflection service could not be built from the descriptors.
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The TLS certificate, key or authority cannot serve.
    #[error("TLS configuration: {0}")]
    Tls(#[source] tonic::transport::Error),
}

/// A bound gRPC listener with health and reflection ready to serve.
#[derive(Debug)]
pub struct GrpcServer {
    listener: TcpListener,
    routes: RoutesBuilder,
    health_only: Option<(TcpListener, RoutesBuilder)>,
    health: HealthReporter,
    gate: Gate,
    tls: Option<ServerTlsConfig>,
}

/// The TLS a server speaks: its certificate, and the authority whose client
/// certificates it takes (optional for the client: a token caller has none).
fn server_tls(access: &AccessConfig) -> Result<Option<ServerTlsConfig>, GrpcError> {
    let Some(identity) = &access.tls.identity else {
        return Ok(None);
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        &identity.cert_pem,
        identity.key_pem.expose_secret(),
    ));
    if let Some(ca) = &access.tls.ca_pem {
        tls = tls
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(true);
    }
    // Built once here so a bad certificate stops the start, not the serving.
    Server::builder()
        .tls_config(tls.clone())
        .map_err(GrpcError::Tls)?;
    Ok(Some(tls))
}

impl GrpcServer {
    /// Binds `addr` (port 0 picks a free port) with health and reflection
    /// routes, admitting the callers `access` names.
    pub async fn bind(
        addr: SocketAddr,
        health_addr: Option<SocketAddr>,
        access: &AccessConfig,
    ) -> Result<Self, GrpcError> {
        let tls = server_tls(access)?;
        if access.tokens.is_empty() && (tls.is_none() || access.tls.ca_pem.is_none()) {
            tracing::warn!(
                "no API tokens and no client certificate authority: every call but health will be refused"
            );
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GrpcError::Bind { addr, source })?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(touchpoint_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let health_only = match health_addr {
            None => None,
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| GrpcError::Bind { addr, source })?;
                let mut routes = RoutesBuilder::default();
                routes.add_service(health_service.clone());
                Some((listener, routes))
            }
        };
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service).add_service(reflection);
        Ok(Self {
            listener,
            routes,
            health_only,
            health,
            gate: Gate::new(access.tokens.clone()).trusting(access.fronts.clone()),
            tls,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.listener.local_addr()
    }

    /// Where a service adds its own API: `server.routes().add_service(...)`.
    pub fn routes(&mut self) -> &mut RoutesBuilder {
        &mut self.routes
    }

    /// The health reporter, to mark individual services serving or not.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Serves until `shutdown` is cancelled, then finishes requests in flight.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), tonic::transport::Error> {
        let Self {
            listener,
            routes,
            health_only,
            health,
            gate,
            tls,
        } = self;
        health.set_service_status("", ServingStatus::Serving).await;
        let stopping = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
            }
        };
        let probes = async move {
            match health_only {
                None => Ok(()),
                Some((listener, routes)) => {
                    Server::builder()
                        .add_routes(routes.routes())
                        .serve_with_incoming_shutdown(
                            TcpIncoming::from(listener),
                            shutdown.cancelled(),
                        )
                        .await
                }
            }
        };
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let api = builder
            .trace_fn(grpc_server_span)
            // Outermost, so a call the gate refuses is counted too.
            .layer(GrpcMetricsLayer::default())
            .layer(AccessLayer::new(gate))
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), stopping);
        tokio::try_join!(api, probes).map(drop)
    }
}
