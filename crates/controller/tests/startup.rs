//! Start-up checks: the controller reaches the Northbound database over
//! `ssl:` with the `--ovn-private-key/--ovn-certificate/--ovn-ca-cert` files,
//! refuses to start with a clear error when they are missing, and refuses a
//! Northbound schema lacking a column it uses, naming it.

mod common;

use std::process::{Child, Command, Stdio};

use api::Vpc;
use api::condition::{READY, is_condition_true};
use common::*;
use kube::Api;
use testenv::kube::KubeEnv;
use testenv::neutron::NeutronRouter;
use testenv::ovn::OvnEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_over_ssl_and_refuses_missing_tls_files() {
    let ovn = OvnEnv::builder().nb_ssl().start().expect("OVN");
    let kube = KubeEnv::start().expect("kube-apiserver");
    let client = kube.client().await.expect("client");
    install_crds(&client).await;
    let vpcs: Api<Vpc> = Api::all(client.clone());
    let remote = ovn.nb_ssl_remote().expect("ssl remote");
    let files = ovn.pki().expect("pki").client().clone();

    let mut bare = Controller::start_with(&kube, "no-tls-files", &[format!("--ovn-nb={remote}")]);
    assert_ne!(bare.wait_exit(), Some(0));
    assert!(
        bare.log().contains("--ovn-private-key"),
        "the error names the missing flags: {}",
        bare.log()
    );

    let controller = Controller::start_with(
        &kube,
        "tls",
        &[
            format!("--ovn-nb={remote}"),
            format!("--ovn-private-key={}", files.private_key.display()),
            format!("--ovn-certificate={}", files.certificate.display()),
            format!("--ovn-ca-cert={}", files.ca_cert.display()),
        ],
    );
    controller.wait_ready().await;
    let router = NeutronRouter::create(&ovn, "router-tls").expect("router");
    wait_vpc(&vpcs, &router.lr_name(), "imported over ssl", |v| {
        v.status
            .as_ref()
            .is_some_and(|s| is_condition_true(&s.conditions, READY))
    })
    .await;
}

/// An `ovsdb-server` serving a database made from `schema`, killed on drop.
struct SchemaServer(Child);

impl Drop for SchemaServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_schema_without_a_needed_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("/usr/share/ovn/ovn-nb.ovsschema").expect("NB schema"),
    )
    .expect("schema JSON");
    schema["tables"]["Logical_Router"]["columns"]
        .as_object_mut()
        .expect("columns")
        .remove("options");
    let schema_path = dir.path().join("nb.ovsschema");
    std::fs::write(&schema_path, schema.to_string()).expect("write schema");
    let db = dir.path().join("nb.db");
    let created = Command::new("ovsdb-tool")
        .arg("create")
        .arg(&db)
        .arg(&schema_path)
        .status()
        .expect("ovsdb-tool");
    assert!(created.success());
    let sock = dir.path().join("nb.sock");
    let _server = SchemaServer(
        Command::new("ovsdb-server")
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg(format!("--unixctl={}", dir.path().join("ctl").display()))
            .arg("--no-chdir")
            .arg(&db)
            .env("OVS_RUNDIR", dir.path())
            .env("OVS_DBDIR", dir.path())
            .env("OVS_LOGDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ovsdb-server"),
    );
    eventually("ovsdb-server socket", || async {
        sock.exists().then_some(())
    })
    .await;

    let kube = KubeEnv::start().expect("kube-apiserver");
    let mut controller = Controller::start_with(
        &kube,
        "old-schema",
        &[format!("--ovn-nb=unix:{}", sock.display())],
    );
    assert_ne!(controller.wait_exit(), Some(0));
    assert!(
        controller.log().contains("Logical_Router") && controller.log().contains("options"),
        "the error names the missing column: {}",
        controller.log()
    );
}
