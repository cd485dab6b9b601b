//! Whether ice-config answers: its gRPC health, asked every second over the same balanced
//! channel registrations use. A frozen or unready ice-config turns the gateway's readiness
//! false, so new browsers go to a gateway that can register them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How often ice-config is asked, and how long it has to answer.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The service whose health is asked.
const ICE_CONFIG: &str = "iceconfig.v1.IceConfigService";

/// The last answer.
#[derive(Clone, Default)]
pub struct IceConfigHealth(Arc<AtomicBool>);

impl IceConfigHealth {
    pub fn answering(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Asks until `stop`.
    pub async fn watch(self, channel: Channel, stop: CancellationToken) {
        let mut client = HealthClient::new(channel);
        loop {
            let request = HealthCheckRequest {
                service: ICE_CONFIG.into(),
            };
            let serving = tokio::time::timeout(CHECK_EVERY, client.check(request))
                .await
                .is_ok_and(|answer| {
                    answer.is_ok_and(|a| a.into_inner().status() == ServingStatus::Serving)
                });
            if serving != self.answering() {
                match serving {
                    true => tracing::info!("ice-config answers"),
                    false => tracing::warn!("ice-config does not answer; not ready"),
                }
            }
            self.0.store(serving, Ordering::Relaxed);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    }
}
