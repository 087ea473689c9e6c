//! `rovn-cni`: reads the CNI environment and stdin, prints the result or error on stdout.

use std::io::{Read, Write};

fn main() {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin).map(|_| stdin);
    let outcome = cni::plugin::run(|key| std::env::var(key).ok(), read);
    if let Some(json) = outcome.stdout {
        let mut out = std::io::stdout().lock();
        // If stdout is gone there is no one left to tell.
        let _ = writeln!(out, "{json}");
        let _ = out.flush();
    }
    std::process::exit(outcome.exit_code);
}
