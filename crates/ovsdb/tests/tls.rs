//! `ssl:` remote with certificates made by `ovs-pki`.

mod common;

use common::wait_for;
use ovsdb::{Client, ClientConfig, Error, MonitorSpec, Operation, Remote, Row, TlsFiles};
use testenv::ovn::OvnEnv;

const NB: &str = "OVN_Northbound";

fn files(f: &testenv::pki::TlsFiles) -> TlsFiles {
    TlsFiles {
        private_key: f.private_key.clone(),
        certificate: f.certificate.clone(),
        ca_cert: f.ca_cert.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_remote_with_ovs_pki_certificates() {
    let env = OvnEnv::builder().nb_ssl().start().unwrap();
    let pki = env.pki().unwrap();
    let remote = env.nb_ssl_remote().unwrap();
    assert!(matches!(
        Remote::parse(&remote).unwrap(),
        Remote::Ssl { .. }
    ));
    let config = ClientConfig::from_remotes(&remote)
        .unwrap()
        .with_tls(files(pki.client()));
    let c = Client::connect(config).await.unwrap();
    let replica = c
        .monitor(NB, MonitorSpec::new().table("Logical_Switch"))
        .await
        .unwrap();
    c.transact(
        NB,
        vec![Operation::Insert {
            table: "Logical_Switch".into(),
            row: Row::new().with("name", "over-tls"),
            uuid_name: None,
        }],
    )
    .await
    .unwrap();
    wait_for(&replica, "over-tls in replica", |r| {
        !r.by_name("Logical_Switch", "over-tls").is_empty()
    })
    .await;
    assert!(env.nbctl(&["ls-list"]).unwrap().contains("over-tls"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_remote_rejects_a_server_from_another_ca() {
    let env = OvnEnv::builder().nb_ssl().start().unwrap();
    let other = testenv::pki::Pki::new().unwrap();
    let mut config = ClientConfig::from_remotes(&env.nb_ssl_remote().unwrap())
        .unwrap()
        .with_tls(files(other.client()));
    config.wait_for_connection = std::time::Duration::from_secs(2);
    let e = Client::connect(config).await.unwrap_err();
    assert!(matches!(e, Error::Tls(_) | Error::Io(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_tls_files_are_a_typed_error() {
    let config = ClientConfig::from_remotes("ssl:127.0.0.1:1")
        .unwrap()
        .with_tls(TlsFiles {
            private_key: "/nonexistent/key.pem".into(),
            certificate: "/nonexistent/cert.pem".into(),
            ca_cert: "/nonexistent/ca.pem".into(),
        });
    assert!(matches!(Client::connect(config).await, Err(Error::Tls(_))));
}
