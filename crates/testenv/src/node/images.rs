//! The OCI image archives of `hack/images.sh`: the pause (sandbox) image, the busybox
//! workload image, the rovn image, built from the workspace's own binaries, and the CoreDNS
//! image (the cluster DNS server, from the binary `hack/coredns-bins.sh` builds).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};

use crate::stack::{workspace_bin, workspace_root};

/// The image archives of one `hack/images.sh` run and their image names.
#[derive(Debug, Clone)]
pub struct Images {
    dir: PathBuf,
    pause: String,
    busybox: String,
    rovn: String,
    coredns: String,
}

impl Images {
    /// The images of this process, built once: the directory in `ROVN_IMAGES` when set, else
    /// `hack/images.sh` run with `ROVN_BIN_DIR` = the directory of the workspace binaries
    /// the tests use ([`workspace_bin`]: `cargo build` first, so never stale) and
    /// `ROVN_COREDNS_BINS` = [`coredns_bins`]. The script caches by input hash, so an
    /// unchanged tree costs only the hashing.
    pub fn get() -> Result<&'static Images> {
        static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
        IMAGES
            .get_or_init(|| Self::find().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("building the node images: {e}"))
    }

    fn find() -> Result<Images> {
        if let Some(dir) = std::env::var_os("ROVN_IMAGES") {
            return Self::from_dir(Path::new(&dir));
        }
        let controller = workspace_bin("controller", "rovn-controller")?;
        workspace_bin("agent", "rovn-agent")?;
        workspace_bin("cni", "rovn-cni")?;
        let bin_dir = controller
            .parent()
            .context("the workspace binaries have no directory")?;
        let coredns = coredns_bins()?;
        let script = workspace_root().join("hack/images.sh");
        let dir = crate::process::run_dir_script(
            &script,
            &[
                ("ROVN_BIN_DIR", bin_dir.as_os_str()),
                ("ROVN_COREDNS_BINS", coredns.as_os_str()),
            ],
        )?;
        Self::from_dir(&dir)
    }

    /// The images in `dir`, a directory printed by `hack/images.sh` (its `images.txt` names
    /// the archives).
    pub fn from_dir(dir: &Path) -> Result<Images> {
        let list = dir.join("images.txt");
        let text = std::fs::read_to_string(&list)
            .with_context(|| format!("reading {} (made by hack/images.sh)", list.display()))?;
        let name_of = |file: &str| -> Result<String> {
            let name = text
                .lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(f, _)| *f == file)
                .map(|(_, name)| name.trim().to_owned())
                .with_context(|| format!("{} names no {file}", list.display()))?;
            if !dir.join(file).is_file() {
                bail!("{} lists {file}, which is missing", list.display());
            }
            Ok(name)
        };
        Ok(Images {
            dir: dir.to_owned(),
            pause: name_of("pause.tar")?,
            busybox: name_of("busybox.tar")?,
            rovn: name_of("rovn.tar")?,
            coredns: name_of("coredns.tar").with_context(|| {
                format!(
                    "{} has no CoreDNS image: made by a hack/images.sh older than the cluster \
                     DNS (run it again)",
                    dir.display()
                )
            })?,
        })
    }

    /// The directory holding the archives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Name of the pause image (containerd's sandbox image), e.g. `rovn.local/pause:1`.
    pub fn pause(&self) -> &str {
        &self.pause
    }

    /// Name of the workload image (busybox: `sh`, `ping`, `nc`, `httpd`, ...).
    pub fn busybox(&self) -> &str {
        &self.busybox
    }

    /// Name of the rovn image (`rovn-controller`, `rovn-agent`, `rovn-cni`), as `deploy/` uses it.
    pub fn rovn(&self) -> &str {
        &self.rovn
    }

    /// Name of the CoreDNS image (`/coredns`, the cluster DNS server), e.g.
    /// `rovn.local/coredns:1.14.1`.
    pub fn coredns(&self) -> &str {
        &self.coredns
    }

    /// The archives with their image names: pause, busybox, rovn, coredns.
    pub fn archives(&self) -> [(PathBuf, &str); 4] {
        let [pause, busybox, rovn] = self.node_archives();
        [pause, busybox, rovn, self.coredns_archive()]
    }

    /// The archives a node imports when it starts: pause, busybox, rovn.
    pub fn node_archives(&self) -> [(PathBuf, &str); 3] {
        [
            (self.dir.join("pause.tar"), self.pause.as_str()),
            (self.dir.join("busybox.tar"), self.busybox.as_str()),
            (self.dir.join("rovn.tar"), self.rovn.as_str()),
        ]
    }

    /// The CoreDNS archive and image name, imported by `NodeEnv::deploy_cluster_dns` (about
    /// a second for its 50 MB: nodes without cluster DNS skip it).
    pub fn coredns_archive(&self) -> (PathBuf, &str) {
        (self.dir.join("coredns.tar"), self.coredns.as_str())
    }
}

/// The directory holding the `coredns` binary the CoreDNS image is made of:
/// `ROVN_COREDNS_BINS`, else the last line printed by `hack/coredns-bins.sh` (run once per
/// process; it builds CoreDNS from the Go module proxy the first time, then reuses its cache).
/// The error says why the binary is unavailable and how to provide it.
pub fn coredns_bins() -> Result<PathBuf> {
    static BINS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINS.get_or_init(|| find_coredns_bins().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn find_coredns_bins() -> Result<PathBuf> {
    let dir = match std::env::var_os("ROVN_COREDNS_BINS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = workspace_root().join("hack/coredns-bins.sh");
            crate::process::run_dir_script(&script, &[]).context(
                "the CoreDNS binary is unavailable: hack/coredns-bins.sh could not build it \
                 (it needs Go and the Go module proxy); build it there or point \
                 ROVN_COREDNS_BINS at a directory holding `coredns`",
            )?
        }
    };
    if !dir.join("coredns").is_file() {
        bail!(
            "the CoreDNS binary is unavailable: {} has no coredns; run hack/coredns-bins.sh \
             (it builds it) or point ROVN_COREDNS_BINS at its output",
            dir.display()
        );
    }
    Ok(dir)
}
