//! Shared by the integration tests: an agent-side socket server built with
//! `cni::protocol::serve`, and a runner for the real `rovn-cni` binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use cni::protocol::{AgentRequest, AgentResponse, bind, serve};
use serde_json::Value;

/// A server on a unix socket playing the node agent's role: it records every request and
/// answers with `answer(&request)`.
pub struct TestAgent {
    pub socket: PathBuf,
    pub requests: Arc<Mutex<Vec<AgentRequest>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestAgent {
    pub fn start(
        socket: &Path,
        answer: impl Fn(&AgentRequest) -> AgentResponse + Send + Sync + 'static,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let answer = Arc::new(answer);
        let listener = runtime
            .block_on(async { bind(socket) })
            .expect("bind the test socket");
        runtime.spawn(serve(listener, move |request: AgentRequest| {
            let response = answer(&request);
            recorded.lock().unwrap().push(request);
            async move { response }
        }));
        TestAgent {
            socket: socket.to_owned(),
            requests,
            runtime: Some(runtime),
        }
    }

    pub fn requests(&self) -> Vec<AgentRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_rovn-cni"))
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
