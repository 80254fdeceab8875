//! gRPC server bootstrap: every service serves the standard health service and
//! reflection beside its own API, continues callers' traces, and stops accepting
//! requests on shutdown while finishing those in flight.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::trace_context::grpc_server_span;

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
}

/// A bound gRPC listener with health and reflection ready to serve.
#[derive(Debug)]
pub struct GrpcServer {
    listener: TcpListener,
    routes: RoutesBuilder,
    health: HealthReporter,
}

impl GrpcServer {
    /// Binds `addr` (port 0 picks a free port) with health and reflection routes.
    pub async fn bind(addr: SocketAddr) -> Result<Self, GrpcError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GrpcError::Bind { addr, source })?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(touchpoint_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service).add_service(reflection);
        Ok(Self {
            listener,
            routes,
            health,
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
        self.health
            .set_service_status("", ServingStatus::Serving)
            .await;
        let health = self.health.clone();
        let stopping = async move {
            shutdown.cancelled().await;
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
        };
        Server::builder()
            .trace_fn(grpc_server_span)
            .add_routes(self.routes.routes())
            .serve_with_incoming_shutdown(TcpIncoming::from(self.listener), stopping)
            .await
    }
}
