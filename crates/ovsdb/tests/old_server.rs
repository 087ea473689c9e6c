//! Monitor fallback for servers without `monitor_cond_since`/`monitor_cond`: a scripted
//! in-test server that only knows RFC 7047 `monitor` (old/new row format).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{HANG_GUARD, wait_for};
use ovsdb::framing::JsonSplitter;
use ovsdb::{Client, ClientConfig, MonitorSpec, Remote, Uuid};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const U1: &str = "00000000-0000-0000-0000-000000000001";
const U2: &str = "00000000-0000-0000-0000-000000000002";

/// Answers one connection like an RFC 7047-only server; records the methods it was asked.
async fn rfc7047_server(methods: Arc<Mutex<Vec<String>>>) -> Remote {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut splitter = JsonSplitter::new(1 << 20);
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            splitter.push(&buf[..n]);
            while let Some(msg) = splitter.next_message().unwrap() {
                let req: Json = serde_json::from_slice(&msg).unwrap();
                let method = req["method"].as_str().unwrap_or_default().to_owned();
                methods.lock().unwrap().push(method.clone());
                let id = req["id"].clone();
                let reply = match method.as_str() {
                    "get_schema" => json!({"id": id, "error": null, "result": {
                        "name": "DB", "version": "1", "tables": {"T": {"columns": {
                            "name": {"type": "string"},
                            "tags": {"type": {"key": "string", "min": 0, "max": "unlimited"}}}}}}}),
                    "monitor" => json!({"id": id, "error": null, "result": {"T": {
                        U1: {"new": {"name": "a", "tags": ["set", ["x"]]}}}}}),
                    _ => json!({"id": id, "result": null, "error": "unknown method"}),
                };
                let mut out = reply.to_string();
                if method == "monitor" {
                    // Then: modify a (only changed columns in "old"), insert b.
                    out.push_str(&json!({"id": null, "method": "update", "params": [req["params"][1], {"T": {
                        U1: {"old": {"tags": "x"}, "new": {"name": "a", "tags": ["set", ["x", "y"]]}},
                        U2: {"new": {"name": "b", "tags": ["set", []]}}}}]}).to_string());
                }
                sock.write_all(out.as_bytes()).await.unwrap();
            }
        }
    });
    Remote::parse(&format!("tcp:127.0.0.1:{port}")).unwrap()
}

#[tokio::test]
async fn falls_back_to_rfc7047_monitor() {
    let methods = Arc::new(Mutex::new(Vec::new()));
    let remote = rfc7047_server(methods.clone()).await;
    let mut config = ClientConfig::new(vec![remote]);
    config.wait_for_connection = Duration::from_secs(10);
    let c = Client::connect(config).await.unwrap();
    let replica = tokio::time::timeout(HANG_GUARD, c.monitor("DB", MonitorSpec::new().table("T")))
        .await
        .expect("hang guard")
        .unwrap();
    wait_for(&replica, "update applied", |r| r.count("T") == 2).await;
    let a = replica.get(Uuid::parse_str(U1).unwrap()).unwrap();
    assert_eq!(a.get_strs("tags"), vec!["x", "y"]);
    let b = replica.by_name("T", "b");
    assert_eq!(b.len(), 1);
    assert!(b[0].get_strs("tags").is_empty());
    assert_eq!(
        *methods.lock().unwrap(),
        vec![
            "get_schema",
            "monitor_cond_since",
            "monitor_cond",
            "monitor"
        ]
    );
}
