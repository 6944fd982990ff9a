//! TLS to PostgreSQL with libpq's `sslmode` meanings, over rustls (no system OpenSSL).
//!
//! | sslmode       | encrypted            | server certificate checked           |
//! |---------------|----------------------|--------------------------------------|
//! | `disable`     | never                | —                                    |
//! | `allow`       | only if the server demands it | no                          |
//! | `prefer`      | if the server offers it | no                                |
//! | `require`     | always               | no — unless a root certificate is given, then as `verify-ca` |
//! | `verify-ca`   | always               | chain to a trusted root              |
//! | `verify-full` | always               | chain, and the host name             |
//!
//! Roots: `sslrootcert` (`system` = the platform's trust store), else libpq's default file
//! `~/.postgresql/root.crt` if it exists, else the platform's trust store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first; TLS (unverified) if the server refuses plaintext.
    Allow,
    /// TLS (unverified) if the server offers it, else plaintext.
    Prefer,
    /// TLS or nothing; the certificate is not checked unless a root certificate is given.
    Require,
    /// TLS, the certificate chain checked against the roots.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

/// The values `sslmode` takes, for messages.
pub const SSL_MODES: &str = "disable, allow, prefer, require, verify-ca, verify-full";

impl SslMode {
    /// The mode named `s` (libpq's spelling), if any.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// libpq's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// The TLS parameters as written in a DSN (each `None` when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslParams {
    /// `sslmode`.
    pub mode: Option<String>,
    /// `sslrootcert`.
    pub root_cert: Option<String>,
    /// `sslcert`.
    pub cert: Option<String>,
    /// `sslkey`.
    pub key: Option<String>,
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Roots {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// The platform's trust store (`sslrootcert=system`, or no root file at all).
    System,
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Nothing: encryption against passive eavesdropping only.
    None,
    /// The chain to a trusted root, not the host name.
    Chain,
    /// The chain and the host name.
    Full,
}

/// The TLS settings in force for one connection, after the DSN, the `PGSSL*` environment and
/// libpq's default files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// The mode in force.
    pub mode: SslMode,
    /// The roots, when a file or the system store was named (or the default file exists).
    pub roots: Option<Roots>,
    /// The client certificate and key files.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// Resolves the settings as libpq does: a DSN parameter, else its `PGSSL*` variable from
    /// `env`, else the default files under `home/.postgresql/` when they exist.
    ///
    /// # Errors
    /// A message naming the parameter when a value is not understood.
    pub fn resolve(dsn: &SslParams, env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Result<Self, String> {
        let pick = |own: &Option<String>, var: &str| -> Option<(String, String)> {
            own.clone()
                .filter(|v| !v.is_empty())
                .map(|v| (v, String::new()))
                .or_else(|| env(var).filter(|v| !v.is_empty()).map(|v| (v, var.to_owned())))
        };
        let default_file = |name: &str| home.map(|h| h.join(".postgresql").join(name)).filter(|p| p.is_file());
        let named = |what: &str, origin: &str| if origin.is_empty() { what.to_owned() } else { origin.to_owned() };

        let roots = match pick(&dsn.root_cert, "PGSSLROOTCERT") {
            Some((v, _)) if v == "system" => Some(Roots::System),
            Some((v, _)) => Some(Roots::File(PathBuf::from(v))),
            None => default_file("root.crt").map(Roots::File),
        };
        let mode = match pick(&dsn.mode, "PGSSLMODE") {
            Some((v, origin)) => {
                let mode = SslMode::parse(&v).ok_or_else(|| format!("{}={v:?} is not one of {SSL_MODES}", named("sslmode", &origin)))?;
                // libpq: the system store only makes sense when the host name is checked too.
                if roots == Some(Roots::System) && mode != SslMode::VerifyFull && mode != SslMode::Disable {
                    return Err(format!("sslrootcert=system needs sslmode=verify-full, not {v}"));
                }
                mode
            }
            None if roots == Some(Roots::System) => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        let cert = pick(&dsn.cert, "PGSSLCERT").map(|(v, _)| PathBuf::from(v)).or_else(|| default_file("postgresql.crt"));
        let key = pick(&dsn.key, "PGSSLKEY").map(|(v, _)| PathBuf::from(v)).or_else(|| default_file("postgresql.key"));
        let client = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(c), None) => return Err(format!("sslcert={} is given without sslkey", c.display())),
            (None, Some(k)) => return Err(format!("sslkey={} is given without sslcert", k.display())),
        };
        Ok(Self { mode, roots, client })
    }

    /// What is checked of the server's certificate once TLS is up.
    #[must_use]
    pub fn verification(&self) -> Verification {
        match self.mode {
            SslMode::VerifyFull => Verification::Full,
            SslMode::VerifyCa => Verification::Chain,
            // libpq: a root certificate turns require into verify-ca.
            SslMode::Require if self.roots.is_some() => Verification::Chain,
            _ => Verification::None,
        }
    }

    /// Where the roots come from, for messages.
    #[must_use]
    pub fn roots_label(&self) -> String {
        match &self.roots {
            Some(Roots::File(p)) => format!("sslrootcert={}", p.display()),
            Some(Roots::System) | None => "the system's trusted roots".to_owned(),
        }
    }

    /// The rustls configuration for these settings.
    ///
    /// # Errors
    /// A message naming the file that cannot be read or holds no usable certificate or key.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.verification() {
            Verification::None => Arc::new(Unverified(provider.clone())),
            level => {
                let roots = Arc::new(self.root_store()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build().map_err(|e| e.to_string())?;
                if level == Verification::Full {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        match &self.client {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain = read_certs(cert, "sslcert")?;
                let bytes = read(key, "sslkey")?;
                let key_der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| format!("sslkey={}: no private key ({e})", key.display()))?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| format!("sslcert/sslkey: {e}"))
            }
        }
    }

    fn root_store(&self) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Some(Roots::File(path)) => {
                for cert in read_certs(path, "sslrootcert")? {
                    store.add(cert).map_err(|e| format!("sslrootcert={}: {e}", path.display()))?;
                }
            }
            Some(Roots::System) | None => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    return Err("no trusted root certificates on this machine: set sslrootcert to the server's CA file".to_owned());
                }
            }
        }
        Ok(store)
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what}={}: {e}", path.display()))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}={}: not PEM certificates ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what}={}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// Why a server certificate did not verify, in words: `None` if `e` is not about the
/// certificate.
#[must_use]
pub fn certificate_problem(e: &rustls::Error, settings: &TlsSettings, host: &str) -> Option<String> {
    let rustls::Error::InvalidCertificate(c) = e else { return None };
    Some(match c {
        CertificateError::UnknownIssuer => format!("unknown CA: the certificate is not signed by a CA in {}", settings.roots_label()),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let presented = match c {
                CertificateError::NotValidForNameContext { presented, .. } => {
                    // rustls writes them as `DnsName("db.example.com")`: keep the name.
                    let names: Vec<&str> = presented.iter().map(|p| p.split('"').nth(1).unwrap_or(p)).collect();
                    format!(" (it names {})", names.join(", "))
                }
                _ => String::new(),
            };
            format!("host name mismatch: the certificate is not valid for {host}{presented}")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "the certificate has expired".to_owned(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "the certificate is not valid yet".to_owned(),
        other => format!("{other:?}"),
    })
}

/// `verify-ca`: the chain must reach a trusted root; the host name may differ.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name: a name error means the chain verified.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require` without roots: any certificate, but the handshake signatures are still
/// checked (the session key really belongs to the certificate the server sent).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(dsn: SslParams, env: &[(&str, &str)], home: Option<&Path>) -> Result<TlsSettings, String> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        TlsSettings::resolve(&dsn, &|k| env.get(k).cloned(), home)
    }

    fn mode(m: &str) -> SslParams {
        SslParams { mode: Some(m.into()), ..SslParams::default() }
    }

    #[test]
    fn every_libpq_mode_parses_and_round_trips() {
        for s in SSL_MODES.split(", ") {
            assert_eq!(SslMode::parse(s).map(SslMode::as_str), Some(s));
        }
        assert_eq!(SslMode::parse("verify_full"), None);
        assert_eq!(SslMode::parse("REQUIRE"), None);
        assert_eq!(SslMode::parse(""), None);
    }

    #[test]
    fn default_is_prefer_without_verification() {
        let s = resolve(SslParams::default(), &[], None).unwrap();
        assert_eq!((s.mode, s.roots.clone(), s.client.clone()), (SslMode::Prefer, None, None));
        assert_eq!(s.verification(), Verification::None);
    }

    #[test]
    fn verification_per_mode() {
        let v = |m: &str, root: Option<&str>| {
            let p = SslParams { mode: Some(m.into()), root_cert: root.map(Into::into), ..SslParams::default() };
            resolve(p, &[], None).unwrap().verification()
        };
        assert_eq!(v("disable", None), Verification::None);
        assert_eq!(v("allow", None), Verification::None);
        assert_eq!(v("prefer", None), Verification::None);
        assert_eq!(v("require", None), Verification::None);
        // libpq: require with a root certificate behaves as verify-ca.
        assert_eq!(v("require", Some("/ca.pem")), Verification::Chain);
        assert_eq!(v("verify-ca", None), Verification::Chain);
        assert_eq!(v("verify-full", None), Verification::Full);
        assert_eq!(v("verify-full", Some("/ca.pem")), Verification::Full);
    }

    #[test]
    fn environment_fills_what_the_dsn_lacks_and_never_overrides_it() {
        let env = [("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", "/env/ca.pem")];
        let s = resolve(SslParams::default(), &env, None).unwrap();
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.roots, Some(Roots::File("/env/ca.pem".into())));
        let own = SslParams { mode: Some("require".into()), root_cert: Some("/dsn/ca.pem".into()), ..SslParams::default() };
        let s = resolve(own, &env, None).unwrap();
        assert_eq!(s.mode, SslMode::Require);
        assert_eq!(s.roots, Some(Roots::File("/dsn/ca.pem".into())));
        // An empty variable counts as unset, as in libpq.
        assert_eq!(resolve(SslParams::default(), &[("PGSSLMODE", "")], None).unwrap().mode, SslMode::Prefer);
        let s = resolve(SslParams::default(), &[("PGSSLCERT", "/c.pem"), ("PGSSLKEY", "/k.pem")], None).unwrap();
        assert_eq!(s.client, Some(("/c.pem".into(), "/k.pem".into())));
    }

    #[test]
    fn bad_values_name_their_origin() {
        let e = resolve(mode("verify_full"), &[], None).unwrap_err();
        assert!(e.starts_with("sslmode=\"verify_full\" is not one of disable"), "{e}");
        let e = resolve(SslParams::default(), &[("PGSSLMODE", "on")], None).unwrap_err();
        assert!(e.starts_with("PGSSLMODE=\"on\""), "{e}");
        let p = SslParams { cert: Some("/c.pem".into()), ..SslParams::default() };
        assert!(resolve(p, &[], None).unwrap_err().contains("without sslkey"));
    }

    #[test]
    fn system_roots_mean_verify_full() {
        let p = SslParams { root_cert: Some("system".into()), ..SslParams::default() };
        let s = resolve(p.clone(), &[], None).unwrap();
        assert_eq!((s.mode, s.roots), (SslMode::VerifyFull, Some(Roots::System)));
        let weak = SslParams { mode: Some("require".into()), ..p };
        assert!(resolve(weak, &[], None).unwrap_err().contains("verify-full"));
    }

    #[test]
    fn libpq_default_files_count_when_present() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".postgresql");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(resolve(mode("require"), &[], Some(home.path())).unwrap().verification(), Verification::None);
        std::fs::write(dir.join("root.crt"), "x").unwrap();
        let s = resolve(mode("require"), &[], Some(home.path())).unwrap();
        assert_eq!(s.roots, Some(Roots::File(dir.join("root.crt"))));
        assert_eq!(s.verification(), Verification::Chain);
        std::fs::write(dir.join("postgresql.crt"), "x").unwrap();
        std::fs::write(dir.join("postgresql.key"), "x").unwrap();
        let s = resolve(SslParams::default(), &[], Some(home.path())).unwrap();
        assert_eq!(s.client, Some((dir.join("postgresql.crt"), dir.join("postgresql.key"))));
    }

    #[test]
    fn unreadable_files_are_named() {
        let p = SslParams { mode: Some("verify-full".into()), root_cert: Some("/nonexistent/ca.pem".into()), ..SslParams::default() };
        let e = resolve(p, &[], None).unwrap().client_config().unwrap_err();
        assert!(e.contains("sslrootcert=/nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let p = SslParams { mode: Some("verify-ca".into()), root_cert: Some(empty.display().to_string()), ..SslParams::default() };
        let e = resolve(p, &[], None).unwrap().client_config().unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
    }

    #[test]
    fn unverified_modes_build_without_any_roots() {
        for m in ["prefer", "require", "allow"] {
            resolve(mode(m), &[], None).unwrap().client_config().unwrap();
        }
    }
}
