//! The binaries of the workspace (`rovn-controller`, `rovn-agent`, `rovn-cni`, `rovnctl`),
//! found next to the running executable and brought up to date by `cargo build` first (once
//! per process), so a test never runs a binary older than the sources; and the directory
//! where tests keep their rovn processes' logs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};

/// The cargo profile directory the running executable belongs to: its own directory, or
/// the parent of `deps/` for test and bench executables.
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let dir = exe
        .parent()
        .context("the running executable has no directory")?;
    Ok(if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

/// Binary `bin` of workspace package `package`, from the profile directory of the
/// running executable (where `cargo build --bins` and `cargo test --workspace` put it),
/// after `cargo build --workspace --all-targets` into that same target directory and profile
/// (a no-op when it is up to date; without it, `cargo test -p agent` would run whatever
/// `rovn-controller` an earlier build left there). The build runs once per process.
pub fn workspace_bin(package: &str, bin: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_workspace().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
        .with_context(|| format!("building {package}'s {bin}"))?;
    let path = profile_dir()?.join(bin);
    if !path.is_file() {
        bail!("{} is missing after cargo build", path.display());
    }
    Ok(path)
}

/// The directory where tests keep the logs of the rovn processes they start, for failure
/// analysis after the test: `<target dir>/tmp/rovn-logs` (cargo's `CARGO_TARGET_TMPDIR`).
pub fn kept_log_dir() -> Result<PathBuf> {
    let dir = profile_dir()?
        .parent()
        .context("the profile directory has no parent target directory")?
        .join("tmp")
        .join("rovn-logs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `cargo build --workspace --all-targets` into the running executable's target directory
/// and profile.
fn build_workspace() -> Result<()> {
    let dir = profile_dir()?;
    let target_dir = dir
        .parent()
        .with_context(|| format!("{} has no parent target directory", dir.display()))?;
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} is not a cargo profile directory", dir.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    // What cargo sets for the test or bench running now describes that crate, not the
    // build: build scripts watch some of it (ring: `CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`,
    // `OUT_DIR`…), so inheriting it would make this build, and then the next `cargo test`,
    // rebuild them and everything above them.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_the_running_crate) {
            build.env_remove(key);
        }
    }
    build
        // The whole workspace with every target, like `cargo test --workspace --all-targets`
        // builds it: the same feature resolution, so under that command this is a no-op
        // instead of a rebuild with other features.
        .args(["build", "--workspace", "--all-targets"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace_root());
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --workspace --all-targets failed ({status})");
    }
    Ok(())
}

/// Whether environment variable `key` is one cargo sets when it runs a crate's test, bench
/// or binary (and not one of the user's or cargo's own settings).
fn set_by_cargo_for_the_running_crate(key: &str) -> bool {
    const EXACT: [&str; 9] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&key) || key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_BIN_EXE_")
}

/// The workspace's root directory (this crate is `crates/testenv` in it).
pub(crate) fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
