//! Certificates and keys of the Kubernetes test environment, made with the
//! `openssl` command-line tool: a CA, the API server's serving certificate
//! (for 127.0.0.1, the address it serves on and the `kubernetes` Service's 10.96.0.1), an admin client certificate (group `system:masters`) and
//! the service-account signing key pair.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// `openssl` configuration: the extension sections of each certificate.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:10.96.0.1,IP:@ADDRESS@,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
";

/// Paths of the generated PEM files.
#[derive(Clone, Debug)]
pub(crate) struct Certs {
    /// CA certificate (trusted for serving and client certificates).
    pub ca_cert: PathBuf,
    /// API server serving certificate and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Admin client certificate and key (`O=system:masters`).
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// Service-account token signing key and its public key.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

impl Certs {
    /// Generates all files in `dir`.
    pub(crate) fn generate(dir: &Path, address: std::net::Ipv4Addr) -> Result<Self> {
        let config = dir.join("openssl.cnf");
        std::fs::write(
            &config,
            OPENSSL_CONFIG.replace("@ADDRESS@", &address.to_string()),
        )
        .context("writing openssl.cnf")?;
        let path = |name: &str| dir.join(name);
        let certs = Certs {
            ca_cert: path("ca.crt"),
            server_cert: path("apiserver.crt"),
            server_key: path("apiserver.key"),
            admin_cert: path("admin.crt"),
            admin_key: path("admin.key"),
            sa_key: path("sa.key"),
            sa_pub: path("sa.pub"),
        };
        let ca_key = path("ca.key");
        let cert = |key: &Path, cert: &Path, subject: &str, section: &str, signed: bool| {
            let mut args = vec![
                "req".to_string(),
                "-x509".into(),
                "-config".into(),
                config.display().to_string(),
                "-extensions".into(),
                section.into(),
                "-newkey".into(),
                "ec".into(),
                "-pkeyopt".into(),
                "ec_paramgen_curve:prime256v1".into(),
                "-nodes".into(),
                "-days".into(),
                "3650".into(),
                "-subj".into(),
                subject.into(),
                "-keyout".into(),
                key.display().to_string(),
                "-out".into(),
                cert.display().to_string(),
            ];
            if signed {
                args.extend([
                    "-CA".into(),
                    certs.ca_cert.display().to_string(),
                    "-CAkey".into(),
                    ca_key.display().to_string(),
                ]);
            }
            openssl(&args)
        };
        cert(&ca_key, &certs.ca_cert, "/CN=rovn-test-ca", "ca", false)?;
        cert(
            &certs.server_key,
            &certs.server_cert,
            "/CN=kube-apiserver",
            "server",
            true,
        )?;
        cert(
            &certs.admin_key,
            &certs.admin_cert,
            "/O=system:masters/CN=rovn-admin",
            "client",
            true,
        )?;
        let sa_key = certs.sa_key.display().to_string();
        openssl(&[
            "genpkey".into(),
            "-algorithm".into(),
            "EC".into(),
            "-pkeyopt".into(),
            "ec_paramgen_curve:prime256v1".into(),
            "-out".into(),
            sa_key.clone(),
        ])?;
        openssl(&[
            "pkey".into(),
            "-in".into(),
            sa_key,
            "-pubout".into(),
            "-out".into(),
            certs.sa_pub.display().to_string(),
        ])?;
        Ok(certs)
    }
}

/// Runs `openssl args…`; a failure carries its stderr.
fn openssl(args: &[String]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (is the openssl command-line tool installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
