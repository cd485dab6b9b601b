//! Certificates for tests, made by `openssl` (Debian's): self-signed for `localhost` and
//! 127.0.0.1, and what a TLS server presents.

use std::path::Path;

/// Writes a new self-signed EC certificate for `localhost` / 127.0.0.1, with `name` as its
/// common name, and its key.
pub async fn self_signed(cert: &Path, key: &Path, name: &str) {
    let made = tokio::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .await
        .expect("openssl is installed");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// The subject of the certificate the TLS server on `port` presents (`openssl s_client`).
pub async fn presented_subject(port: u16) -> Option<String> {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null \
         | openssl x509 -noout -subject"
    );
    let out = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .await
        .ok()?;
    let subject = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!subject.is_empty()).then_some(subject)
}
