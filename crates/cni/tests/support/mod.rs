//! Shared by the integration tests: an agent-side socket server built with
//! `cni::protocol::serve`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cni::protocol::{AgentRequest, AgentResponse, bind, serve};

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
