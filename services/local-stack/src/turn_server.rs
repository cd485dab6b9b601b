//! An embedded TURN server (webrtc-rs `turn`) on loopback, checking ephemeral credentials the
//! way STUNner does: the username's integer part is the expiry, the password is
//! base64(HMAC-SHA1(secret, username)).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ice_config::credentials::ephemeral_credential;
use tokio::net::UdpSocket;
use turn::{
    auth::{AuthHandler, generate_auth_key},
    relay::relay_static::RelayAddressGeneratorStatic,
    server::{
        Server,
        config::{ConnConfig, ServerConfig},
    },
};
use webrtc_util::vnet::net::Net;

pub const REALM: &str = "stunner.l7mp.io";

/// STUNner's `ephemeral` check.
struct EphemeralAuth {
    secret: String,
}

impl AuthHandler for EphemeralAuth {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        src: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        // Any part order: the first part that is an integer is the expiry.
        let expiry = username
            .split(':')
            .find_map(|part| part.parse::<u64>().ok())
            .ok_or_else(|| turn::Error::Other(format!("no expiry in username {username:?}")))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        if expiry < now {
            tracing::debug!(%src, username, "expired TURN credential refused");
            return Err(turn::Error::Other("expired credential".into()));
        }
        let password = ephemeral_credential(&self.secret, username);
        Ok(generate_auth_key(username, realm, &password))
    }
}

pub struct EmbeddedTurn {
    server: Server,
    addr: SocketAddr,
}

impl EmbeddedTurn {
    /// Listens on `addr` (UDP) and relays on the same IP.
    pub async fn start(addr: SocketAddr, secret: &str) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        let addr = socket.local_addr()?;
        let server = Server::new(ServerConfig {
            conn_configs: vec![ConnConfig {
                conn: Arc::new(socket),
                relay_addr_generator: Box::new(RelayAddressGeneratorStatic {
                    relay_address: addr.ip(),
                    address: addr.ip().to_string(),
                    net: Arc::new(Net::new(None)),
                }),
            }],
            realm: REALM.to_owned(),
            auth_handler: Arc::new(EphemeralAuth {
                secret: secret.to_owned(),
            }),
            channel_bind_timeout: Duration::ZERO,
            alloc_close_notify: None,
        })
        .await?;
        Ok(Self { server, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn close(self) {
        if let Err(error) = self.server.close().await {
            tracing::warn!(%error, "TURN server did not close cleanly");
        }
    }
}
