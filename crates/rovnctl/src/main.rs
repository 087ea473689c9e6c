//! `rovnctl`: command-line tooling for rovn.

use clap::{Parser, Subcommand};

/// Command-line tooling for rovn.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (multi-document YAML) of the kubeovn.io/v1 resources.
    Crds,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds => print!("{}", rovnctl::crds::crds_yaml()?),
    }
    Ok(())
}
