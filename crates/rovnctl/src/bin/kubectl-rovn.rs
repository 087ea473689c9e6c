//! `kubectl rovn`: rovnctl as a kubectl plugin (`kubectl-rovn` on the PATH).
//! It uses the kubeconfig kubectl uses (`$KUBECONFIG`, `--kubeconfig`,
//! `--context`) and finds the OVN databases in rovn's ConfigMap.

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    rovnctl::cli::run("kubectl rovn").await
}
