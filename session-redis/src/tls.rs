//! The certificate files of a TLS config, read into what the redis crate
//! takes (feature `tls`).

use std::{fs, path::Path};

use redis::{ClientTlsConfig, TlsCertificates};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use session_core::ConfigError;

use crate::RedisConfig;

/// The CA and client certificate files of `config`, read and checked; `None`
/// when it names none, so the system's roots are trusted and no client
/// certificate is shown.
///
/// # Errors
/// A [`ConfigError`] naming the key whose file is missing, unreadable, or
/// not PEM of the kind the key needs.
pub(crate) fn certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>, ConfigError> {
    let root_cert = config
        .tls_ca_cert_file()
        .map(|path| read_certificates("tls_ca_cert_file", path))
        .transpose()?;
    let client_tls = config
        .tls_client_cert()
        .map(|(cert, key)| {
            Ok::<_, ConfigError>(ClientTlsConfig {
                client_cert: read_certificates("tls_cert_file", cert)?,
                client_key: read_private_key("tls_key_file", key)?,
            })
        })
        .transpose()?;
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// The file at `path`, which must hold at least one PEM certificate.
fn read_certificates(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let pem = read(key, path)?;
    let mut count = 0_usize;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|err| not_pem(key, path, "certificates", &err))?;
        count += 1;
    }
    if count == 0 {
        return Err(ConfigError::new(
            key,
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    Ok(pem)
}

/// The file at `path`, which must hold a PEM private key.
fn read_private_key(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|err| not_pem(key, path, "a private key (PKCS#8, PKCS#1 or SEC1)", &err))?;
    Ok(pem)
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    fs::read(path)
        .map_err(|err| ConfigError::new(key, format!("cannot read {}: {err}", path.display())))
}

fn not_pem(
    key: &'static str,
    path: &Path,
    what: &str,
    err: &rustls::pki_types::pem::Error,
) -> ConfigError {
    ConfigError::new(
        key,
        format!("{} does not hold PEM {what}: {err:?}", path.display()),
    )
}

/// Makes ring the process's rustls crypto provider, unless the app chose one
/// first. The redis crate builds rustls configs with the process default,
/// which rustls picks by itself only when exactly one backend is compiled
/// in: an app whose other dependencies bring aws-lc-rs too would otherwise
/// panic on its first `rediss://` connection. An app that wants its own
/// provider installs it before connecting, and this leaves it alone.
#[allow(
    deprecated,
    reason = "rustls 0.23.48 deprecates ring's provider for lacking post-quantum key \
              exchange; aws-lc-rs would add a heavy C build, and TLS 1.3 with X25519 is \
              what Redis servers offer today"
)]
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: either way a provider
        // is in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
