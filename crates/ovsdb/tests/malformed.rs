//! Malformed and hostile servers: a tiny in-test TCP server sends broken replies; every case
//! must end in a typed error, never a panic or a hang (timeouts here are only hang guards).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::HANG_GUARD;
use ovsdb::framing::JsonSplitter;
use ovsdb::monitor::MonitorNotification;
use ovsdb::rpc::{Connection, ConnectionOptions, NotificationHandler};
use ovsdb::{Client, ClientConfig, Error, MonitorSpec, Operation, Remote};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake server sends in answer to each request it reads; `None` closes the connection.
type Script = Arc<dyn Fn(&Json) -> Option<Vec<u8>> + Send + Sync>;

/// Serves every connection with `script`; returns the `tcp:` remote.
async fn fake_server(script: Script) -> Remote {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, script.clone()));
        }
    });
    Remote::parse(&format!("tcp:127.0.0.1:{port}")).unwrap()
}

async fn serve(mut sock: TcpStream, script: Script) {
    let mut splitter = JsonSplitter::new(1 << 20);
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        splitter.push(&buf[..n]);
        while let Ok(Some(msg)) = splitter.next_message() {
            let req: Json = serde_json::from_slice(&msg).unwrap();
            match script(&req) {
                Some(bytes) => {
                    if sock.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => return,
            }
        }
    }
}

fn reply_to(req: &Json, body: &str) -> Vec<u8> {
    body.replace("ID", &req["id"].to_string()).into_bytes()
}

fn no_notifications() -> NotificationHandler {
    Arc::new(|_: &str, _| Ok(()))
}

async fn request_with_reply(body: &'static str, options: ConnectionOptions) -> Error {
    let remote = fake_server(Arc::new(move |req| Some(reply_to(req, body)))).await;
    failing_request(&remote, &options, "get_schema", json!(["X"])).await
}

/// Connects to `remote` and makes one request, which must fail (within the hang guard).
async fn failing_request(
    remote: &Remote,
    options: &ConnectionOptions,
    method: &str,
    params: Json,
) -> Error {
    let conn = Connection::open(remote, None, options, no_notifications())
        .await
        .unwrap();
    tokio::time::timeout(HANG_GUARD, conn.request(method, &params))
        .await
        .expect("hang guard")
        .unwrap_err()
}

#[tokio::test]
async fn truncated_json_then_close() {
    let remote = fake_server(Arc::new(|req| {
        if req["method"] == "get_schema" {
            Some(reply_to(req, r#"{"id":ID,"result":{"na"#))
        } else {
            None
        }
    }))
    .await;
    // The server sends half a message and keeps the socket open until our next request,
    // which makes it close: the pending request fails as truncated.
    let conn = Connection::open(&remote, None, &Default::default(), no_notifications())
        .await
        .unwrap();
    let params = json!(["X"]);
    let first = conn.request("get_schema", &params);
    let conn2 = &conn;
    let second = async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn2.request("list_dbs", &json!([])).await
    };
    let (a, b) = tokio::time::timeout(HANG_GUARD, async { tokio::join!(first, second) })
        .await
        .expect("hang guard");
    assert!(matches!(a, Err(Error::Truncated(n)) if n > 0), "{a:?}");
    assert!(matches!(b, Err(Error::Truncated(_))), "{b:?}");
    assert!(matches!(conn.closed().await, Error::Truncated(_)));
}

#[tokio::test]
async fn invalid_json() {
    let e = request_with_reply(r#"{"id":ID,"result":[1,,2]}"#, Default::default()).await;
    assert!(matches!(e, Error::Json(_)), "{e:?}");
}

#[tokio::test]
async fn deeply_nested_and_non_utf8_json() {
    let deep: &'static str = Box::leak(
        format!(
            r#"{{"id":ID,"result":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
        .into_boxed_str(),
    );
    let e = request_with_reply(deep, Default::default()).await;
    assert!(matches!(e, Error::Json(_)), "{e:?}");
    let bad_utf8: &'static str =
        Box::leak(format!("{{\"id\":ID,\"result\":\"{}\"}}", "\u{fffd}").into_boxed_str());
    let remote = fake_server(Arc::new(move |req| {
        let mut bytes = reply_to(req, bad_utf8);
        // Replace the U+FFFD (3 bytes) by a lone continuation byte: invalid UTF-8.
        let pos = bytes
            .windows(3)
            .position(|w| w == [0xef, 0xbf, 0xbd])
            .unwrap();
        bytes.splice(pos..pos + 3, [0x80]);
        Some(bytes)
    }))
    .await;
    let e = failing_request(&remote, &Default::default(), "list_dbs", json!([])).await;
    assert!(matches!(e, Error::Json(_)), "{e:?}");
}

#[tokio::test]
async fn message_that_is_not_an_object() {
    let e = request_with_reply("[1,2]", Default::default()).await;
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

#[tokio::test]
async fn garbage_bytes_between_messages() {
    let e = request_with_reply("\u{1}\u{2}not json", Default::default()).await;
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

#[tokio::test]
async fn error_reply_is_an_rpc_error() {
    let e = request_with_reply(
        r#"{"id":ID,"result":null,"error":{"error":"unknown database","details":"X"}}"#,
        Default::default(),
    )
    .await;
    match e {
        Error::Rpc { method, error } => {
            assert_eq!(method, "get_schema");
            assert_eq!(error["error"], "unknown database");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn reply_without_result_or_to_unknown_id() {
    let e = request_with_reply(r#"{"id":ID,"error":null}"#, Default::default()).await;
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    let e = request_with_reply(r#"{"id":9999,"result":1,"error":null}"#, Default::default()).await;
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    let e = request_with_reply(r#"{"id":ID,"method":5,"params":[]}"#, Default::default()).await;
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

#[tokio::test]
async fn oversized_message() {
    let big: &'static str =
        Box::leak(format!(r#"{{"id":ID,"result":"{}"}}"#, "a".repeat(2 << 20)).into_boxed_str());
    let options = ConnectionOptions {
        max_message_size: 1 << 20,
        ..Default::default()
    };
    let e = request_with_reply(big, options).await;
    assert!(
        matches!(e, Error::MessageTooLarge { limit } if limit == 1 << 20),
        "{e:?}"
    );
}

#[tokio::test]
async fn silent_server_fails_the_inactivity_probe() {
    let remote = fake_server(Arc::new(|_| Some(Vec::new()))).await;
    let options = ConnectionOptions {
        probe_interval: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let e = failing_request(&remote, &options, "list_dbs", json!([])).await;
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
}

#[tokio::test]
async fn server_echo_is_answered() {
    // On our request, the server sends an echo request first, then answers ours with whatever
    // it received as the echo reply.
    let remote = fake_server(Arc::new(|req| {
        if req["method"] == "list_dbs" {
            Some(br#"{"id":"e1","method":"echo","params":["ping"]}"#.to_vec())
        } else if req["id"] == "e1" {
            let body = json!({"id": 1, "result": [req.clone()], "error": null});
            Some(body.to_string().into_bytes())
        } else {
            None
        }
    }))
    .await;
    let conn = Connection::open(&remote, None, &Default::default(), no_notifications())
        .await
        .unwrap();
    let r = tokio::time::timeout(HANG_GUARD, conn.request("list_dbs", &json!([])))
        .await
        .expect("hang guard")
        .unwrap();
    assert_eq!(r[0]["result"], json!(["ping"]));
    assert_eq!(r[0]["error"], Json::Null);
}

#[tokio::test]
async fn malformed_monitor_notification_closes_the_connection() {
    let remote = fake_server(Arc::new(|req| {
        let note =
            r#"{"id":null,"method":"update2","params":["m1",{"T":{"not-a-uuid":{"insert":{}}}}]}"#;
        Some(reply_to(
            req,
            &format!(r#"{note}{{"id":ID,"result":{{}},"error":null}}"#),
        ))
    }))
    .await;
    let handler: NotificationHandler =
        Arc::new(|m: &str, p| MonitorNotification::parse(m, &p).map(|_| ()));
    let conn = Connection::open(&remote, None, &Default::default(), handler)
        .await
        .unwrap();
    let e = tokio::time::timeout(HANG_GUARD, conn.request("list_dbs", &json!([])))
        .await
        .expect("hang guard")
        .unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

/// A fake server answering `get_schema` with a small valid schema and everything else with
/// `bad`.
fn schema_then(bad: &'static str) -> Script {
    Arc::new(move |req| {
        if req["method"] == "get_schema" {
            let schema = json!({"name": "DB", "version": "1", "tables": {"T": {"columns": {
                "name": {"type": "string"}}}}});
            let body = json!({"id": req["id"], "result": schema, "error": null});
            Some(body.to_string().into_bytes())
        } else {
            Some(reply_to(req, bad))
        }
    })
}

async fn client_for(script: Script) -> Client {
    let remote = fake_server(script).await;
    let mut config = ClientConfig::new(vec![remote]);
    config.wait_for_connection = Duration::from_secs(5);
    Client::connect(config).await.unwrap()
}

#[tokio::test]
async fn client_wrong_types_in_replies() {
    // transact result with a count that is not a number.
    let c = client_for(schema_then(
        r#"{"id":ID,"result":[{"count":"x"}],"error":null}"#,
    ))
    .await;
    let e = tokio::time::timeout(HANG_GUARD, c.transact("DB", vec![Operation::Abort]))
        .await
        .expect("hang guard")
        .unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");

    // monitor reply that is not table-updates.
    let c = client_for(schema_then(
        r#"{"id":ID,"result":[true,"x",[1]],"error":null}"#,
    ))
    .await;
    let e = tokio::time::timeout(HANG_GUARD, c.monitor("DB", MonitorSpec::new().table("T")))
        .await
        .expect("hang guard")
        .unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");

    // monitor of a table or column the schema does not have: refused before asking the server.
    let e = c
        .monitor("DB", MonitorSpec::new().table_columns("T", &["nope"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::UnknownColumn { table, column, .. } if table == "T" && column == "nope"),
        "{e:?}"
    );
    let e = c
        .monitor("DB", MonitorSpec::new().table("U"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownTable { .. }), "{e:?}");

    // get_schema answered with something that is not a schema.
    let c = client_for(Arc::new(|req| {
        Some(reply_to(
            req,
            r#"{"id":ID,"result":"schema?","error":null}"#,
        ))
    }))
    .await;
    let e = tokio::time::timeout(HANG_GUARD, c.get_schema("DB"))
        .await
        .expect("hang guard")
        .unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

#[tokio::test]
async fn client_without_any_reachable_server_fails_to_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut config = ClientConfig::from_remotes(&format!("tcp:127.0.0.1:{port}")).unwrap();
    config.wait_for_connection = Duration::from_millis(500);
    let e = tokio::time::timeout(HANG_GUARD, Client::connect(config))
        .await
        .expect("hang guard")
        .unwrap_err();
    assert!(matches!(e, Error::Io(_) | Error::Timeout(_)), "{e:?}");
}
