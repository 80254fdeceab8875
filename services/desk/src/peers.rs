//! The four services as the desk calls them: one lazily connected channel
//! each, with the desk's own credentials (mutual TLS in a mesh, as every
//! client does). A service that is down makes the pages that need it say so;
//! it does not stop the desk.

use touchpoint_platform::config::Env;
use touchpoint_platform::grpc::client::{AuthChannel, ClientAccess};
use touchpoint_proto::v1::cadence_service_client::CadenceServiceClient;
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::dispatch_service_client::DispatchServiceClient;
use touchpoint_proto::v1::routing_service_client::RoutingServiceClient;

/// Where the services are.
#[derive(Debug, Clone)]
pub struct PeerUrls {
    /// `TOUCHPOINT_CASES_URL` (`http://127.0.0.1:50051`).
    pub cases: String,
    /// `TOUCHPOINT_CADENCE_URL` (`http://127.0.0.1:50052`).
    pub cadence: String,
    /// `TOUCHPOINT_DISPATCH_URL` (`http://127.0.0.1:50053`).
    pub dispatch: String,
    /// `TOUCHPOINT_ROUTING_URL` (`http://127.0.0.1:50054`).
    pub routing: String,
}

impl PeerUrls {
    /// Reads the four URLs; `https://` is used when the desk has the mesh's
    /// authority.
    pub fn from_env(env: &Env) -> Self {
        Self {
            cases: env.string("TOUCHPOINT_CASES_URL", "http://127.0.0.1:50051"),
            cadence: env.string("TOUCHPOINT_CADENCE_URL", "http://127.0.0.1:50052"),
            dispatch: env.string("TOUCHPOINT_DISPATCH_URL", "http://127.0.0.1:50053"),
            routing: env.string("TOUCHPOINT_ROUTING_URL", "http://127.0.0.1:50054"),
        }
    }
}

/// A client of each service.
#[derive(Debug, Clone)]
pub struct Peers {
    /// Cases.
    pub cases: CaseServiceClient<AuthChannel>,
    /// Cadence.
    pub cadence: CadenceServiceClient<AuthChannel>,
    /// Dispatch.
    pub dispatch: DispatchServiceClient<AuthChannel>,
    /// Routing.
    pub routing: RoutingServiceClient<AuthChannel>,
}

impl Peers {
    /// Channels to `urls` that connect on first use.
    pub fn connect(
        urls: &PeerUrls,
        access: &ClientAccess,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = |url: &str| -> Result<AuthChannel, tonic::transport::Error> {
            Ok(access.wrap(access.endpoint(url)?.connect_lazy()))
        };
        Ok(Self {
            cases: CaseServiceClient::new(channel(&urls.cases)?),
            cadence: CadenceServiceClient::new(channel(&urls.cadence)?),
            dispatch: DispatchServiceClient::new(channel(&urls.dispatch)?),
            routing: RoutingServiceClient::new(channel(&urls.routing)?),
        })
    }
}
