//! `--web.config.file`, in the Prometheus exporter-toolkit format: TLS for the endpoint
//! (`tls_server_config`) and HTTP basic auth (`basic_auth_users`, bcrypt hashes). `/healthz`
//! and `/readyz` stay open so kubelet probes need no credentials.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth_type: ClientAuth,
    client_ca_file: Option<PathBuf>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
enum ClientAuth {
    #[default]
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
enum TlsVersion {
    TLS12,
    TLS13,
}

/// What the web server needs from the file.
pub struct WebConfig {
    pub tls: Option<TlsAcceptor>,
    pub auth: Option<BasicAuth>,
}

/// A web config file that cannot be used: the file and what is wrong (never a secret).
#[derive(Debug, thiserror::Error)]
#[error("--web.config.file {}: {message}", path.display())]
pub struct WebConfigError {
    pub path: PathBuf,
    pub message: String,
}

/// [`load`] when `--web.config.file` is given; plain HTTP without auth otherwise.
pub fn load_optional(path: Option<&Path>) -> Result<WebConfig, WebConfigError> {
    match path {
        Some(path) => load(path),
        None => Ok(WebConfig {
            tls: None,
            auth: None,
        }),
    }
}

/// Loads and checks the file; errors name it and what is wrong (never a secret).
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let err = |message: String| WebConfigError {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: File = serde_saphyr::from_str(&text).map_err(|e| err(e.to_string()))?;
    // Relative paths are relative to the file, as in exporter-toolkit.
    let base = path.parent().unwrap_or(Path::new("."));
    let tls = match file.tls_server_config {
        None => None,
        Some(t) => Some(TlsAcceptor::from(Arc::new(
            server_config(&t, base).map_err(err)?,
        ))),
    };
    let auth = if file.basic_auth_users.is_empty() {
        None
    } else {
        for (user, hash) in &file.basic_auth_users {
            if bcrypt_cost(hash).is_none() {
                return Err(err(format!(
                    "basic_auth_users.{user}: not a bcrypt hash ($2a$/$2b$/$2y$)"
                )));
            }
        }
        // Made once, at the cost the users' hashes have.
        let cost = file
            .basic_auth_users
            .values()
            .filter_map(|h| bcrypt_cost(h))
            .max()
            .unwrap_or(10);
        let decoy =
            bcrypt::hash("not a password anyone has", cost).map_err(|e| err(e.to_string()))?;
        Some(BasicAuth {
            users: file.basic_auth_users,
            decoy,
            verified: Mutex::new(HashMap::new()),
        })
    };
    Ok(WebConfig { tls, auth })
}

fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))?;
    (rest.len() == 56).then_some(())?;
    rest.get(..2)?.parse().ok()
}

fn server_config(t: &TlsFile, base: &Path) -> Result<ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let at = |p: &Path| base.join(p);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(at(&t.cert_file))
        .and_then(|i| i.collect())
        .map_err(|e| format!("tls_server_config.cert_file {}: {e}", t.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.cert_file {}: no certificate",
            t.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(at(&t.key_file))
        .map_err(|e| format!("tls_server_config.key_file {}: {e}", t.key_file.display()))?;
    let min = t.min_version.unwrap_or(TlsVersion::TLS12);
    let max = t.max_version.unwrap_or(TlsVersion::TLS13);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::TLS12, &rustls::version::TLS12),
        (TlsVersion::TLS13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| *v >= min && *v <= max)
    .map(|(_, p)| p)
    .collect();
    if versions.is_empty() {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match t.client_auth_type {
        ClientAuth::NoClientCert => builder.with_no_client_auth(),
        auth => {
            let ca = t.client_ca_file.as_ref().ok_or(
                "tls_server_config: client_auth_type verifies client certificates but client_ca_file is not set",
            )?;
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(at(ca))
                .map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| {
                    format!("tls_server_config.client_ca_file {}: {e}", ca.display())
                })?;
                roots.add(c).map_err(|e| {
                    format!("tls_server_config.client_ca_file {}: {e}", ca.display())
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if auth == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Basic auth against bcrypt hashes. A successful check is remembered as a SHA-256 of the
/// password, so a scrape every 15 s does not pay bcrypt's cost each time; the remembered
/// digest is compared in constant time.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash of a password nobody has: an unknown user costs as much as a known one.
    decoy: String,
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl BasicAuth {
    /// Whether the header matches a check that already succeeded (cheap: no bcrypt).
    pub fn allows_remembered(&self, header: Option<&str>) -> bool {
        header
            .and_then(parse_basic)
            .is_some_and(|(user, password)| {
                self.remembered(&user, &Sha256::digest(password.as_bytes()).into())
            })
    }

    fn remembered(&self, user: &str, digest: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .is_some_and(|known| constant_time_eq(known, digest))
    }

    /// Whether an `Authorization` header value grants access (may run bcrypt: slow).
    pub fn allows(&self, header: Option<&str>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        if self.remembered(&user, &digest) {
            return true;
        }
        let ok = match self.users.get(&user) {
            Some(hash) => bcrypt::verify(&password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(&password, &self.decoy);
                false
            }
        };
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(user, digest);
        }
        ok
    }
}

fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(password: &str) -> BasicAuth {
        let hash = bcrypt::hash(password, 4).unwrap();
        BasicAuth {
            users: [("prometheus".to_string(), hash.clone())].into(),
            decoy: hash,
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn header(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn right_password_in_wrong_out_and_success_is_remembered() {
        let a = auth("s3cret:with colon");
        assert!(!a.allows(None));
        assert!(!a.allows(Some("Bearer x")));
        assert!(!a.allows(Some(&header("prometheus", "wrong"))));
        assert!(!a.allows(Some(&header("nobody", "s3cret:with colon"))));
        assert!(a.verified.lock().unwrap().is_empty());
        assert!(!a.allows_remembered(Some(&header("prometheus", "s3cret:with colon"))));
        assert!(a.allows(Some(&header("prometheus", "s3cret:with colon"))));
        assert_eq!(a.verified.lock().unwrap().len(), 1);
        assert!(a.allows_remembered(Some(&header("prometheus", "s3cret:with colon"))));
        assert!(!a.allows_remembered(Some(&header("prometheus", "s3cret"))));
        // The remembered digest does not let another password through.
        assert!(!a.allows(Some(&header("prometheus", "s3cret"))));
        assert!(a.allows(Some(&header("prometheus", "s3cret:with colon"))));
    }

    #[test]
    fn bad_files_name_the_problem() {
        let dir = std::env::temp_dir().join(format!("webcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("web.yml");
        std::fs::write(&p, "basic_auth_users:\n  p: plain\n").unwrap();
        let e = load(&p).err().unwrap().to_string();
        assert!(
            e.contains("basic_auth_users.p") && e.contains("bcrypt"),
            "{e}"
        );
        std::fs::write(
            &p,
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  cipher: x\n",
        )
        .unwrap();
        assert!(load(&p).err().unwrap().to_string().contains("cipher"));
        std::fs::write(
            &p,
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n",
        )
        .unwrap();
        assert!(
            load(&p)
                .err()
                .unwrap()
                .to_string()
                .contains("cert_file missing.pem")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
