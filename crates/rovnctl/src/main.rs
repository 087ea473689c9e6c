//! `rovnctl`: command-line tooling for rovn (see `rovnctl::cli`).

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    rovnctl::cli::run("rovnctl").await
}
