//! New work without a reload: the desk follows `WatchEvents` from the cases
//! service and tells each open worklist when an event may have changed it.
//! Browsers listen on a server-sent event stream and fetch their list again.

use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::broadcast;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{TimelineEntry, WatchEventsRequest};

use crate::peers::Peers;

/// Worklists an event may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// One user's.
    Of(String),
    /// Any: a queue's work, or work whose owner the event does not say.
    Any,
}

impl Changed {
    /// Whether `user_id`'s worklist may have changed.
    pub fn concerns(&self, user_id: &str) -> bool {
        match self {
            Changed::Of(id) => id == user_id,
            Changed::Any => true,
        }
    }
}

/// What `entry` changes, if it changes a worklist.
pub fn changed_by(entry: &TimelineEntry) -> Option<Changed> {
    let payload = entry.event.as_ref()?.payload.as_ref()?;
    let owner = |id: &str| {
        if id.is_empty() {
            Changed::Any
        } else {
            Changed::Of(id.to_owned())
        }
    };
    match payload {
        Payload::ContactRouted(routed) => Some(owner(&routed.coordinator_id)),
        Payload::CallTaskRequested(call) => Some(owner(&call.coordinator_id)),
        Payload::TaskCompleted(done) => Some(owner(&done.coordinator_id)),
        Payload::CallbackRequested(_)
        | Payload::AdverseEventSuspected(_)
        | Payload::TaskWithdrawn(_) => Some(Changed::Any),
        _ => None,
    }
}

/// The feed browsers' streams subscribe to.
#[derive(Debug, Clone)]
pub struct Live {
    sender: broadcast::Sender<Changed>,
}

impl Live {
    /// Follows `WatchEvents` until `shutdown`, reconnecting where it left off.
    pub fn start(peers: Peers, shutdown: &Shutdown) -> Self {
        let (sender, _) = broadcast::channel(1024);
        let live = Self {
            sender: sender.clone(),
        };
        let token = shutdown.token();
        shutdown.spawn(async move {
            let mut cases = peers.cases;
            let mut cursor = String::new();
            loop {
                let request = WatchEventsRequest {
                    after_cursor: cursor.clone(),
                    from_now: cursor.is_empty(),
                };
                let stream = tokio::select! {
                    () = token.cancelled() => return,
                    answer = cases.watch_events(request) => answer,
                };
                match stream {
                    Ok(stream) => {
                        let mut stream = stream.into_inner();
                        loop {
                            let next = tokio::select! {
                                () = token.cancelled() => return,
                                next = stream.next() => next,
                            };
                            let Some(Ok(entry)) = next else { break };
                            cursor.clone_from(&entry.cursor);
                            if let Some(changed) = changed_by(&entry) {
                                // No one listening is fine.
                                let _ = sender.send(changed);
                            }
                        }
                    }
                    Err(status) => {
                        tracing::warn!(code = ?status.code(), "cannot follow the case events; retrying");
                    }
                }
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        live
    }

    /// A receiver of what changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.sender.subscribe()
    }
}
