//! Which servers the host's TLS believes: the platform's certificate
//! authorities, plus private ones a user names with `--ca-cert` (or
//! `CAIRN_CA_CERT`). TLS is the host's job, so a stage in any language
//! reaches HTTPS without a TLS stack or a root store of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A `--ca-cert` file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file cannot be read or holds no PEM certificate.
    #[error("cannot use the CA certificate `{path}`: {reason}")]
    Certificate {
        /// The file as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The certificate authorities stages' HTTPS requests are checked against.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    extra: Vec<CertificateDer<'static>>,
}

impl Trust {
    /// The platform's authorities and those in each PEM file of `paths`,
    /// read now so that a bad file is reported before any stage runs.
    pub fn with_ca_files(paths: &[PathBuf]) -> Result<Self, TrustError> {
        let mut extra = Vec::new();
        for path in paths {
            extra.extend(read_pem(path)?);
        }
        Ok(Self { extra })
    }

    /// The client configuration: the platform's roots (read here, once per
    /// process, when the first HTTPS request is made) and the extra ones.
    pub(crate) fn client_config(&self) -> Arc<rustls::ClientConfig> {
        // One process-wide provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = RootCertStore::empty();
        let platform = rustls_native_certs::load_native_certs();
        if !platform.errors.is_empty() {
            tracing::debug!(errors = ?platform.errors, "some platform certificates could not be read");
        }
        let (added, ignored) = roots.add_parsable_certificates(platform.certs);
        tracing::debug!(added, ignored, "platform certificate authorities");
        for certificate in &self.extra {
            // Checked when the file was read.
            let _ = roots.add(certificate.clone());
        }
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let error = |reason: String| TrustError::Certificate {
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|pem| error(pem.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|pem| error(pem.to_string()))?;
    if certificates.is_empty() {
        return Err(error("it holds no `BEGIN CERTIFICATE` block".to_owned()));
    }
    let mut check = RootCertStore::empty();
    for certificate in &certificates {
        check
            .add(certificate.clone())
            .map_err(|invalid| error(format!("not a CA certificate rustls accepts: {invalid}")))?;
    }
    Ok(certificates)
}
