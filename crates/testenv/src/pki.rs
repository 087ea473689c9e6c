//! Certificates made with `ovs-pki` for TLS tests: a CA, a server
//! certificate and a client certificate, all signed by the CA, as OVN
//! deployments make them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::process::run_tool;

/// The three files one side of a TLS connection needs, in the form
/// `ovsdb-server`/`ovn-nbctl` take them (`--private-key`, `--certificate`,
/// `--ca-cert`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM private key (`NAME-privkey.pem`).
    pub private_key: PathBuf,
    /// PEM certificate signed by the CA (`NAME-cert.pem`; `ovs-pki` puts a
    /// text dump of the certificate before the PEM block).
    pub certificate: PathBuf,
    /// PEM certificate of the CA that signed both sides.
    pub ca_cert: PathBuf,
}

impl TlsFiles {
    /// The `--private-key=… --certificate=… --ca-cert=…` options OVS/OVN
    /// tools take.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            format!("--private-key={}", self.private_key.display()),
            format!("--certificate={}", self.certificate.display()),
            format!("--ca-cert={}", self.ca_cert.display()),
        ]
    }
}

/// A PKI made with `ovs-pki init` plus a `server` and a `client` certificate.
#[derive(Debug)]
pub struct Pki {
    /// Kept only when the PKI owns its directory (removed on drop).
    _owned_dir: Option<TempDir>,
    dir: PathBuf,
    server: TlsFiles,
    client: TlsFiles,
}

impl Pki {
    /// Creates a PKI in a fresh temporary directory, removed on drop.
    pub fn new() -> Result<Self> {
        let tmp = tempfile::Builder::new().prefix("rovn-pki").tempdir()?;
        let mut pki = Self::create_in(tmp.path())?;
        pki._owned_dir = Some(tmp);
        Ok(pki)
    }

    /// Creates a PKI inside `dir` (which must exist; the caller owns it).
    pub fn create_in(dir: &Path) -> Result<Self> {
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(dir)?;
        run_tool(
            dir,
            "ovs-pki",
            &[
                format!("--dir={}", pki_dir.display()),
                format!("--log={}", dir.join("ovs-pki.log").display()),
                "init".to_string(),
            ],
        )
        .context("ovs-pki init")?;
        let mut pki = Self {
            _owned_dir: None,
            dir: dir.to_path_buf(),
            server: TlsFiles {
                private_key: PathBuf::new(),
                certificate: PathBuf::new(),
                ca_cert: PathBuf::new(),
            },
            client: TlsFiles {
                private_key: PathBuf::new(),
                certificate: PathBuf::new(),
                ca_cert: PathBuf::new(),
            },
        };
        pki.server = pki.sign("server")?;
        pki.client = pki.sign("client")?;
        Ok(pki)
    }

    /// Makes a new key and certificate named `name`, signed by this PKI's CA.
    pub fn sign(&self, name: &str) -> Result<TlsFiles> {
        let pki_dir = self.dir.join("pki");
        run_tool(
            &self.dir,
            "ovs-pki",
            &[
                format!("--dir={}", pki_dir.display()),
                format!("--log={}", self.dir.join("ovs-pki.log").display()),
                "--batch".to_string(),
                "--force".to_string(),
                "req+sign".to_string(),
                name.to_string(),
                "switch".to_string(),
            ],
        )
        .with_context(|| format!("ovs-pki req+sign {name}"))?;
        Ok(TlsFiles {
            private_key: self.dir.join(format!("{name}-privkey.pem")),
            certificate: self.dir.join(format!("{name}-cert.pem")),
            ca_cert: self.ca_cert(),
        })
    }

    /// The CA certificate every certificate of this PKI is signed by.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("pki/switchca/cacert.pem")
    }

    /// Files for the server side (`ovsdb-server`).
    pub fn server(&self) -> &TlsFiles {
        &self.server
    }

    /// Files for the client side (`ovn-nbctl`, our own client).
    pub fn client(&self) -> &TlsFiles {
        &self.client
    }
}
