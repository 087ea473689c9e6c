//! Remotes (`unix:PATH`, `tcp:HOST:PORT`, `ssl:HOST:PORT`) and opening a byte stream to one,
//! with TLS from PEM files as `ovs-pki` makes them.

use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::error::{Error, Result};

/// One server address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Remote {
    /// Unix domain socket.
    Unix(PathBuf),
    /// Plain TCP.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
    },
    /// TLS over TCP.
    Ssl {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
    },
}

impl Remote {
    /// Parses one remote (`unix:/run/ovn/ovnnb_db.sock`, `tcp:127.0.0.1:6641`, `ssl:[::1]:6641`).
    pub fn parse(s: &str) -> Result<Remote> {
        let bad = |reason: &str| Error::InvalidRemote {
            remote: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, rest) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| bad("missing type"))?;
        match kind {
            "unix" if !rest.is_empty() => Ok(Remote::Unix(PathBuf::from(rest))),
            "unix" => Err(bad("empty path")),
            "tcp" | "ssl" => {
                let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() {
                    return Err(bad("missing host"));
                }
                let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
                let host = host.to_owned();
                Ok(if kind == "tcp" {
                    Remote::Tcp { host, port }
                } else {
                    Remote::Ssl { host, port }
                })
            }
            _ => Err(bad("type must be unix, tcp or ssl")),
        }
    }

    /// Parses a comma-separated list of remotes, as OVN's `--db` option takes them.
    pub fn parse_list(s: &str) -> Result<Vec<Remote>> {
        let list = s
            .split(',')
            .filter(|r| !r.trim().is_empty())
            .map(Remote::parse)
            .collect::<Result<Vec<_>>>()?;
        if list.is_empty() {
            return Err(Error::InvalidRemote {
                remote: s.to_owned(),
                reason: "no remote".into(),
            });
        }
        Ok(list)
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fmt_host = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_owned()
            }
        };
        match self {
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
            Remote::Tcp { host, port } => write!(f, "tcp:{}:{port}", fmt_host(host)),
            Remote::Ssl { host, port } => write!(f, "ssl:{}:{port}", fmt_host(host)),
        }
    }
}

/// PEM files for `ssl:` remotes (the `--private-key`, `--certificate`, `--ca-cert` of OVN tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Our private key.
    pub private_key: PathBuf,
    /// Our certificate, signed by a CA the server trusts.
    pub certificate: PathBuf,
    /// CA certificate the server's certificate must chain to.
    pub ca_cert: PathBuf,
}

impl TlsFiles {
    /// The files of the three command-line flags (private key, certificate, CA
    /// certificate) when all three are given.
    pub fn from_flags(
        private_key: Option<&PathBuf>,
        certificate: Option<&PathBuf>,
        ca_cert: Option<&PathBuf>,
    ) -> Option<Self> {
        Some(TlsFiles {
            private_key: private_key?.clone(),
            certificate: certificate?.clone(),
            ca_cert: ca_cert?.clone(),
        })
    }
}

/// A connected byte stream of any transport.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Boxed stream returned by [`connect`].
pub type BoxStream = Pin<Box<dyn Stream>>;

/// Opens a stream to `remote`. `tls` is required for `ssl:` remotes.
pub async fn connect(remote: &Remote, tls: Option<&TlsConnector>) -> Result<BoxStream> {
    match remote {
        Remote::Unix(p) => Ok(Box::pin(UnixStream::connect(p).await?)),
        Remote::Tcp { host, port } => {
            let s = TcpStream::connect((host.as_str(), *port)).await?;
            s.set_nodelay(true)?;
            Ok(Box::pin(s))
        }
        Remote::Ssl { host, port } => {
            let tls = tls.ok_or_else(|| {
                Error::Tls(format!(
                    "{remote}: ssl remote without private key/certificate/CA"
                ))
            })?;
            let s = TcpStream::connect((host.as_str(), *port)).await?;
            s.set_nodelay(true)?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| Error::Tls(format!("{host}: {e}")))?;
            let s = tls
                .0
                .connect(name, s)
                .await
                .map_err(|e| Error::Tls(format!("{remote}: handshake: {e}")))?;
            Ok(Box::pin(s))
        }
    }
}

/// TLS client configuration built once from [`TlsFiles`].
#[derive(Clone)]
pub struct TlsConnector(tokio_rustls::TlsConnector);

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl TlsConnector {
    /// Loads the PEM files. Like OVS, the server certificate must chain to the CA but its name is
    /// not checked (`ovs-pki` certificates name a switch/controller id, not a host).
    pub fn from_files(files: &TlsFiles) -> Result<TlsConnector> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = read_certs(&files.ca_cert)?;
        let mut roots = rustls::RootCertStore::empty();
        for c in ca {
            roots
                .add(c)
                .map_err(|e| Error::Tls(format!("{}: {e}", files.ca_cert.display())))?;
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| Error::Tls(e.to_string()))?;
        let certs = read_certs(&files.certificate)?;
        let key = read_key(&files.private_key)?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CaOnlyVerifier(webpki)))
            .with_client_auth_cert(certs, key)
            .map_err(|e| Error::Tls(format!("{}: {e}", files.certificate.display())))?;
        Ok(TlsConnector(tokio_rustls::TlsConnector::from(Arc::new(
            config,
        ))))
    }
}

fn read_pem(path: &Path) -> Result<BufReader<std::fs::File>> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut read_pem(path)?)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut read_pem(path)?)
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
        .ok_or_else(|| Error::Tls(format!("{}: no private key", path.display())))
}

/// Verifies the chain to the configured CA and ignores the server name, as OVS does.
#[derive(Debug)]
struct CaOnlyVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for CaOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain (and revocation) before the name, so a name error means the
        // chain itself is trusted.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_come_from_all_three_flags_or_none() {
        let (key, cert, ca) = (
            PathBuf::from("key.pem"),
            PathBuf::from("cert.pem"),
            PathBuf::from("ca.pem"),
        );
        let all = TlsFiles::from_flags(Some(&key), Some(&cert), Some(&ca)).unwrap();
        assert_eq!((all.private_key, all.ca_cert), (key.clone(), ca));
        assert_eq!(TlsFiles::from_flags(Some(&key), Some(&cert), None), None);
        assert_eq!(TlsFiles::from_flags(None, None, None), None);
    }

    #[test]
    fn parses_remote_lists() {
        let l = Remote::parse_list("unix:/tmp/a.sock,tcp:127.0.0.1:6641, ssl:[::1]:6643").unwrap();
        assert_eq!(l[0], Remote::Unix("/tmp/a.sock".into()));
        assert_eq!(
            l[1],
            Remote::Tcp {
                host: "127.0.0.1".into(),
                port: 6641
            }
        );
        assert_eq!(l[2].to_string(), "ssl:[::1]:6643");
        for bad in [
            "",
            "tcp:1.2.3.4",
            "tcp::1",
            "http:x:1",
            "unix:",
            "tcp:h:99999",
        ] {
            assert!(Remote::parse_list(bad).is_err(), "{bad} accepted");
        }
    }
}
