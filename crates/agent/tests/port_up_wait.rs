//! `PortUpWait` against a real NB database: the server-side wait ends when `up` turns true
//! (from `false`, as northd writes it, and from unset), and reports a port that stays down.

use std::time::Duration;

use agent::port_up::PortUpWait;
use ovsdb::{Client, ClientConfig};
use testenv::ovn::OvnEnv;

#[tokio::test(flavor = "multi_thread")]
async fn waits_until_ports_are_up() {
    let env = tokio::task::spawn_blocking(|| OvnEnv::builder().start())
        .await
        .unwrap()
        .expect("NB");
    env.nbctl(&["ls-add", "sw"]).unwrap();
    env.nbctl(&["lsp-add", "sw", "p1"]).unwrap();
    env.nbctl(&["set", "Logical_Switch_Port", "p1", "up=false"])
        .unwrap();
    let client = Client::connect(ClientConfig::from_remotes(&env.nb_remote()).unwrap())
        .await
        .unwrap();
    let nb = PortUpWait::new(client).await.unwrap();
    assert!(nb.connected());

    for port in ["p1", "p2"] {
        let waiting = nb.clone();
        let name = port.to_owned();
        let waiter =
            tokio::spawn(async move { waiting.wait_up(&name, Duration::from_secs(60)).await });
        // p2 does not exist yet when the wait starts.
        if port == "p2" {
            env.nbctl(&["lsp-add", "sw", "p2"]).unwrap();
        }
        env.nbctl(&["set", "Logical_Switch_Port", port, "up=true"])
            .unwrap();
        assert!(waiter.await.unwrap().unwrap(), "{port}");
    }

    // A port that stays down: the wait ends with false (short bound, no assertion on time).
    env.nbctl(&["lsp-add", "sw", "p3"]).unwrap();
    assert!(!nb.wait_up("p3", Duration::from_millis(300)).await.unwrap());
}
