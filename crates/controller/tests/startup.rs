//! Start-up checks: the controller reaches the Northbound database over
//! `ssl:` with the `--ovn-private-key/--ovn-certificate/--ovn-ca-cert` files,
//! refuses to start with a clear error when they are missing, and refuses a
//! Northbound schema lacking a column it uses, naming it.

use api::condition::{READY, is_condition_true};
use testenv::neutron::NeutronRouter;
use testenv::ovn::OvnEnv;
use testenv::stack::{ControllerEnv, ControllerOptions, ControllerProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_over_ssl_and_refuses_missing_tls_files() -> anyhow::Result<()> {
    let env = ControllerEnv::start_without_controller(OvnEnv::builder().nb_ssl(), "tls").await?;
    let remote = env.ovn.nb_ssl_remote().expect("ssl remote");
    let files = env.ovn.pki().expect("pki").client().clone();
    let kubeconfig = env.kube.kubeconfig();

    let mut bare = ControllerProcess::start(&remote, kubeconfig, "no-tls-files")?;
    assert!(!bare.process.wait_exit()?.success());
    assert!(
        bare.process.log().contains("--ovn-private-key"),
        "the error names the missing flags: {}",
        bare.process.log()
    );

    let tls = ControllerOptions {
        args: vec![
            format!("--ovn-private-key={}", files.private_key.display()),
            format!("--ovn-certificate={}", files.certificate.display()),
            format!("--ovn-ca-cert={}", files.ca_cert.display()),
        ],
        ..ControllerOptions::default()
    };
    let mut controller = ControllerProcess::start_with(&remote, kubeconfig, "tls", &tls)?;
    controller.wait_ready().await?;
    let router = NeutronRouter::create(&env.ovn, "router-tls")?;
    env.cluster
        .wait_vpc(&router.lr_name(), "imported over ssl", |v| {
            v.status
                .as_ref()
                .is_some_and(|s| is_condition_true(&s.conditions, READY))
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_schema_without_a_needed_column() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("/usr/share/ovn/ovn-nb.ovsschema")?)?;
    schema["tables"]["Logical_Router"]["columns"]
        .as_object_mut()
        .expect("columns")
        .remove("options");
    let schema_path = dir.path().join("nb.ovsschema");
    std::fs::write(&schema_path, schema.to_string())?;
    let env = ControllerEnv::start_without_controller(
        OvnEnv::builder().nb_schema(&schema_path),
        "old-schema",
    )
    .await?;

    let mut controller =
        ControllerProcess::start(&env.ovn.nb_remote(), env.kube.kubeconfig(), "old-schema")?;
    assert!(!controller.process.wait_exit()?.success());
    let log = controller.process.log();
    assert!(
        log.contains("Logical_Router") && log.contains("options"),
        "the error names the missing column: {log}"
    );
    Ok(())
}
