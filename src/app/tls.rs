//! HTTPS: PEM files from the settings, or a local CA and certificate for trials (`--dev-tls`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;

/// Certificate and key files to serve with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Loads a rustls configuration (ring provider, HTTP/1.1) from PEM files.
pub async fn rustls_config(files: &TlsFiles) -> anyhow::Result<RustlsConfig> {
    // Ignore the error: a provider may already be installed by an earlier call.
    let _ = rustls::crypto::ring::default_provider().install_default();
    RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .with_context(|| {
            format!(
                "loading TLS certificate {} and key {}",
                files.cert.display(),
                files.key.display()
            )
        })
}

/// Creates (once) `<dir>/ca.pem` and a certificate for `localhost`, `127.0.0.1` and `::1`
/// signed by it. Returns the server files and the CA path clients should trust.
pub fn dev_certificates(dir: &Path) -> anyhow::Result<(TlsFiles, PathBuf)> {
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let ca_path = dir.join("ca.pem");
    if files.cert.exists() && files.key.exists() && ca_path.exists() {
        return Ok((files, ca_path));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Terrace development CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;

    write_private(&files.key, key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, format!("{}{}", cert.pem(), ca.pem()))?;
    std::fs::write(&ca_path, ca.pem())?;
    Ok((files, ca_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dev_certificates_are_created_once_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let (files, ca) = dev_certificates(dir.path()).unwrap();
        let first = std::fs::read(&ca).unwrap();
        let (again, _) = dev_certificates(dir.path()).unwrap();
        assert_eq!(std::fs::read(&ca).unwrap(), first);
        assert_eq!(again.cert, files.cert);
        assert!(rustls_config(&files).await.is_ok());
    }
}
