//! The real `rovn-cni` binary against an agent-side server built with `protocol::serve`.

mod support;

use std::io::Write;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::process::{Command as Process, Stdio};

use cni::protocol::AgentResponse;
use cni::{CniError, CniResult, Command, Interface, IpConfig, PodRef, Route};
use serde_json::{Value, json};
use support::TestAgent;

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    pub exit_code: i32,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The CNI error code printed, asserting a failed exit.
    pub fn error_code(&self) -> u64 {
        assert_ne!(
            self.exit_code, 0,
            "expected a failure, got {:?}",
            self.stdout
        );
        self.json()["code"]
            .as_u64()
            .expect("error object with a code")
    }
}

/// Runs the real `rovn-cni` with exactly `env` and `stdin`.
pub fn run_plugin(env: &[(&str, &str)], stdin: &str) -> Run {
    let mut child = Process::new(env!("CARGO_BIN_EXE_rovn-cni"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn rovn-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        stdout: String::from_utf8(output.stdout).unwrap(),
        exit_code: output.status.code().expect("exited normally"),
    }
}

fn add_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "0123abcd"),
        ("CNI_NETNS", "/var/run/netns/pod-a"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=net2;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=0123abcd;K8S_POD_UID=uid-7",
        ),
    ];
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push((key, value));
    }
    env
}

fn conf(version: &str, socket: &std::path::Path) -> String {
    json!({"cniVersion": version, "name": "rovn", "type": "rovn-cni", "socket": socket, "mtu": 1400}).to_string()
}

fn pod_result() -> CniResult {
    CniResult {
        cni_version: String::new(),
        interfaces: vec![Interface {
            name: "eth0".into(),
            mac: Some("0a:72:00:00:00:05".into()),
            mtu: Some(1400),
            sandbox: Some("/var/run/netns/pod-a".into()),
            ..Default::default()
        }],
        ips: vec![
            IpConfig {
                address: "10.0.2.5/24".parse().unwrap(),
                gateway: Some("10.0.2.1".parse().unwrap()),
                interface: Some(0),
            },
            IpConfig {
                address: "fd00:2::5/64".parse().unwrap(),
                gateway: Some("fd00:2::1".parse().unwrap()),
                interface: Some(0),
            },
        ],
        routes: vec![Route {
            dst: "0.0.0.0/0".parse().unwrap(),
            gw: Some("10.0.2.1".parse().unwrap()),
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }],
        dns: Default::default(),
    }
}

fn answer_all(request: &cni::protocol::AgentRequest) -> AgentResponse {
    match request.command {
        Command::Add => AgentResponse::Result(pod_result()),
        _ => AgentResponse::Done,
    }
}

#[test]
fn version_is_answered_without_the_agent() {
    let run = run_plugin(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(run.exit_code, 0);
    assert_eq!(
        run.json(),
        json!({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
    );
    let run = run_plugin(&[("CNI_COMMAND", "VERSION")], "");
    assert_eq!(run.json()["cniVersion"], "1.1.0");
}

#[test]
fn add_passes_the_agent_result_through() {
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(&dir.path().join("cni.sock"), answer_all);
    let run = run_plugin(&add_env(&[]), &conf("1.1.0", &agent.socket));
    assert_eq!(run.exit_code, 0, "{}", run.stdout);
    let mut expected = pod_result();
    expected.cni_version = "1.1.0".into();
    assert_eq!(
        serde_json::from_value::<CniResult>(run.json()).unwrap(),
        expected
    );
    assert_eq!(
        run.json()["ips"][0],
        json!({"address": "10.0.2.5/24", "gateway": "10.0.2.1", "interface": 0})
    );

    let requests = agent.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.command, Command::Add);
    assert_eq!(r.cni_version, "1.1.0");
    assert_eq!(r.network, "rovn");
    assert_eq!(r.container_id.as_deref(), Some("0123abcd"));
    assert_eq!(r.netns.as_deref(), Some("/var/run/netns/pod-a"));
    assert_eq!(r.ifname.as_deref(), Some("eth0"));
    assert_eq!(
        r.pod,
        Some(PodRef {
            namespace: "net2".into(),
            name: "web-0".into(),
            uid: Some("uid-7".into()),
            infra_container_id: Some("0123abcd".into()),
        })
    );
    assert_eq!(r.config["mtu"], 1400);
    assert!(r.prev_result.is_none());
}

#[test]
fn add_result_in_0_4_0_format() {
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(&dir.path().join("cni.sock"), answer_all);
    let run = run_plugin(&add_env(&[]), &conf("0.4.0", &agent.socket));
    let out = run.json();
    assert_eq!(out["cniVersion"], "0.4.0");
    assert_eq!(out["ips"][0]["version"], "4");
    assert_eq!(out["ips"][1]["version"], "6");
}

#[test]
fn del_check_status_and_gc_print_nothing_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(&dir.path().join("cni.sock"), answer_all);
    let mut with_prev: serde_json::Value =
        serde_json::from_str(&conf("1.0.0", &agent.socket)).unwrap();
    with_prev["prevResult"] = pod_result().to_json("1.0.0");
    let with_prev = with_prev.to_string();

    let run = run_plugin(&add_env(&[("CNI_COMMAND", "CHECK")]), &with_prev);
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, ""));
    let del_env = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "0123abcd"),
        ("CNI_IFNAME", "eth0"),
    ];
    let run = run_plugin(&del_env, &with_prev);
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, ""));
    let run = run_plugin(&[("CNI_COMMAND", "STATUS")], &conf("1.1.0", &agent.socket));
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, ""));
    let mut gc: serde_json::Value = serde_json::from_str(&conf("1.1.0", &agent.socket)).unwrap();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    let run = run_plugin(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
        &gc.to_string(),
    );
    assert_eq!((run.exit_code, run.stdout.as_str()), (0, ""));

    let requests = agent.requests();
    let commands: Vec<Command> = requests.iter().map(|r| r.command).collect();
    assert_eq!(
        commands,
        [Command::Check, Command::Del, Command::Status, Command::Gc]
    );
    let mut prev = pod_result();
    prev.cni_version = "1.0.0".into();
    assert_eq!(requests[0].prev_result.as_ref(), Some(&prev));
    assert_eq!(requests[1].prev_result.as_ref(), Some(&prev));
    assert_eq!(requests[1].netns, None);
    assert_eq!(requests[1].pod, None);
    assert_eq!(requests[3].valid_attachments.len(), 1);
    assert_eq!(requests[3].valid_attachments[0].container_id, "c1");
}

#[test]
fn agent_errors_are_printed_with_their_code() {
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(&dir.path().join("cni.sock"), |request| {
        match request.command {
            Command::Status => AgentResponse::Error(CniError::new(
                CniError::PLUGIN_NOT_AVAILABLE,
                "OVN southbound not connected",
                "ovn-controller has no connection",
            )),
            _ => AgentResponse::Error(CniError::new(
                CniError::TRY_AGAIN_LATER,
                "pod net2/web-0 has no address yet",
                "annotation ovn.kubernetes.io/allocated missing",
            )),
        }
    });
    let run = run_plugin(&add_env(&[]), &conf("1.0.0", &agent.socket));
    assert_eq!(run.error_code(), 11);
    assert_eq!(
        run.json(),
        json!({"cniVersion": "1.0.0", "code": 11, "msg": "pod net2/web-0 has no address yet",
               "details": "annotation ovn.kubernetes.io/allocated missing"})
    );
    let run = run_plugin(&[("CNI_COMMAND", "STATUS")], &conf("1.1.0", &agent.socket));
    assert_eq!(run.error_code(), 50);
}

#[test]
fn invalid_environment_gives_code_4_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(&dir.path().join("cni.sock"), answer_all);
    let config = conf("1.0.0", &agent.socket);
    for (env, variable) in [
        (add_env(&[("CNI_COMMAND", "FROBNICATE")]), "CNI_COMMAND"),
        (add_env(&[("CNI_NETNS", "")]), "CNI_NETNS"),
        (add_env(&[("CNI_CONTAINERID", "")]), "CNI_CONTAINERID"),
        (
            add_env(&[("CNI_IFNAME", "way-too-long-ifname")]),
            "CNI_IFNAME",
        ),
        (
            add_env(&[("CNI_ARGS", "K8S_POD_NAMESPACE=net2")]),
            "CNI_ARGS",
        ),
    ] {
        let run = run_plugin(&env, &config);
        assert_eq!(run.error_code(), 4, "{variable}: {}", run.stdout);
        assert!(
            run.json()["msg"].as_str().unwrap().contains(variable),
            "{}",
            run.stdout
        );
        assert_eq!(run.json()["cniVersion"], "1.0.0");
    }
    assert!(
        agent.requests().is_empty(),
        "nothing invalid reaches the agent"
    );
}

#[test]
fn invalid_configuration_gives_spec_codes() {
    let socket = "/nonexistent/cni.sock";
    for (stdin, code) in [
        ("{not json".to_owned(), 6),
        (json!({"cniVersion": "2.0.0", "name": "rovn", "type": "rovn-cni"}).to_string(), 1),
        (json!({"cniVersion": "1.0.0", "type": "rovn-cni"}).to_string(), 7),
        (json!({"cniVersion": "1.0.0", "name": "rovn", "type": "rovn-cni", "socket": "relative.sock"}).to_string(), 7),
        (json!({"cniVersion": "1.0.0", "name": "rovn", "type": "rovn-cni", "socket": socket, "prevResult": {"ips": 5}}).to_string(), 6),
    ] {
        let run = run_plugin(&add_env(&[]), &stdin);
        assert_eq!(run.error_code(), code, "{stdin} -> {}", run.stdout);
    }
}

#[test]
fn check_without_prev_result_is_refused_before_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(&dir.path().join("cni.sock"), answer_all);
    let run = run_plugin(
        &add_env(&[("CNI_COMMAND", "CHECK")]),
        &conf("1.1.0", &agent.socket),
    );
    assert_eq!(run.error_code(), 7);
    assert!(agent.requests().is_empty());
}

#[test]
fn agent_not_running_gives_try_again_later_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let run = run_plugin(&add_env(&[]), &conf("1.0.0", &socket));
    assert_eq!(run.error_code(), 11);
    let out = run.json();
    assert!(out["msg"].as_str().unwrap().contains("rovn-agent"), "{out}");
    assert!(
        out["details"]
            .as_str()
            .unwrap()
            .contains(socket.to_str().unwrap()),
        "{out}"
    );

    // A stale socket file nobody listens on: same answer.
    drop(StdUnixListener::bind(&socket).unwrap());
    let run = run_plugin(&add_env(&[]), &conf("1.0.0", &socket));
    assert_eq!(run.error_code(), 11);
}

#[test]
fn silent_or_broken_agents_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    // Accepts but never answers: the plugin gives up after agentTimeoutSeconds.
    let silent = StdUnixListener::bind(&socket).unwrap();
    let mut stdin: serde_json::Value = serde_json::from_str(&conf("1.0.0", &socket)).unwrap();
    stdin["agentTimeoutSeconds"] = json!(1);
    let run = run_plugin(&add_env(&[]), &stdin.to_string());
    assert_eq!(run.error_code(), 11);
    assert!(
        run.json()["details"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{}",
        run.stdout
    );
    drop(silent);

    // Closes without answering (agent stopped mid-request): try again later.
    let socket = dir.path().join("closing.sock");
    let listener = StdUnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || drop(listener.accept().unwrap()));
    let run = run_plugin(&add_env(&[]), &conf("1.0.0", &socket));
    server.join().unwrap();
    assert_eq!(run.error_code(), 11);
    assert!(
        run.json()["details"]
            .as_str()
            .unwrap()
            .contains("without answering"),
        "{}",
        run.stdout
    );

    // Answers garbage: decode error.
    let socket = dir.path().join("garbage.sock");
    let listener = StdUnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        stream.read_to_end(&mut request).unwrap();
        stream.write_all(b"{\"status\":\"maybe\"}").unwrap();
        request
    });
    let run = run_plugin(&add_env(&[]), &conf("1.0.0", &socket));
    assert_eq!(run.error_code(), 6);
    let request: serde_json::Value = serde_json::from_slice(&server.join().unwrap()).unwrap();
    assert_eq!(request["command"], "ADD");
}

#[test]
fn server_answers_undecodable_requests_with_code_6() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(&dir.path().join("cni.sock"), answer_all);
    let mut stream = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    stream.write_all(b"{\"command\":\"ADD\"").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let answer: AgentResponse = serde_json::from_str(&answer).unwrap();
    assert!(
        matches!(answer, AgentResponse::Error(CniError { code: 6, .. })),
        "{answer:?}"
    );
    assert!(agent.requests().is_empty());
}
