//! Optional TLS, so the gateway can serve HTTPS and WSS itself like the tutorial's server did
//! (behind an ingress that terminates TLS, it is not needed). The certificate and key are read
//! again when their files change — cert-manager renews a mounted Secret in place — so new
//! handshakes get the new pair while open connections keep theirs. (rustls has no reloading
//! resolver of its own; this one is a lock and a poll.)

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use svc_common::connections::Connection;
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        crypto::CryptoProvider,
        server::{ClientHello, ResolvesServerCert},
        sign::CertifiedKey,
    },
    server::TlsStream,
};
use tokio_util::sync::CancellationToken;

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and key files, PEM.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Hands every handshake the pair last read.
#[derive(Debug)]
pub struct Certificates {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' contents the current pair was read from.
    read_from: RwLock<(Vec<u8>, Vec<u8>)>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

impl Certificates {
    /// Reads the pair; an error names the file at fault.
    pub fn load(files: CertFiles) -> anyhow::Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let contents = read(&files)?;
        let key = certified(&files, &contents, &provider)?;
        Ok(Arc::new(Self {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            read_from: RwLock::new(contents),
        }))
    }

    /// The acceptor for the gateway's port.
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        // WebSockets upgrade HTTP/1.1 connections.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Reads the files every `every` until `stop`; a changed pair that loads replaces the
    /// current one, one that does not (half written, mismatched) is logged and left alone.
    pub async fn follow(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.reload()).await;
        }
    }

    fn reload(&self) {
        let contents = match read(&self.files) {
            Ok(contents) => contents,
            Err(error) => {
                tracing::warn!(%error, "TLS certificate unreadable; keeping the current one");
                return;
            }
        };
        if *self.read_from.read().unwrap_or_else(|p| p.into_inner()) == contents {
            return;
        }
        match certified(&self.files, &contents, &self.provider) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                *self.read_from.write().unwrap_or_else(|p| p.into_inner()) = contents;
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::warn!(%error, "TLS certificate changed but does not load; keeping the current one");
            }
        }
    }
}

fn read(files: &CertFiles) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let read = |path: &Path, flag: &str| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))
    };
    Ok((
        read(&files.cert, "--tls-cert")?,
        read(&files.key, "--tls-key")?,
    ))
}

fn certified(
    files: &CertFiles,
    (cert, key): &(Vec<u8>, Vec<u8>),
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", files.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "--tls-cert {}: no certificate in it",
        files.cert.display()
    );
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", files.key.display()))?;
    CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| anyhow::anyhow!("--tls-cert and --tls-key do not go together: {e}"))
}

/// The TLS handshake on an accepted connection, bounded in time; `None` when it fails.
pub async fn handshake(
    acceptor: TlsAcceptor,
    connection: Connection,
) -> Option<TlsStream<Connection>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(connection)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}
