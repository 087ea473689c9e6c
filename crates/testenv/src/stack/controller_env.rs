//! The controller's world for its end-to-end tests and benchmarks: OVN, an API server of
//! its own with the CRDs installed (the controller reconciles every pod and namespace of
//! the API server), an admin client and the real `rovn-controller`.

use anyhow::{Context, Result};

use super::cluster::Cluster;
use super::process::{AgentProcess, ControllerOptions, ControllerProcess};
use crate::kube::KubeEnv;
use crate::ovn::{OvnEnv, OvnEnvBuilder};

/// OVN + API server + `rovn-controller` (stopped first when dropped).
pub struct ControllerEnv {
    /// The controller, when running.
    pub controller: Option<ControllerProcess>,
    /// Its identity: kept across restarts, so that it takes its Lease back at once; names
    /// its log.
    pub identity: String,
    /// How the controller is started (log directory, more flags).
    pub options: ControllerOptions,
    /// An admin client of the API server.
    pub cluster: Cluster,
    /// The API server, own to this environment.
    pub kube: KubeEnv,
    /// OVN.
    pub ovn: OvnEnv,
}

impl ControllerEnv {
    /// Starts OVN from `ovn` and an API server, installs the CRDs; no controller yet.
    /// `identity` names the controller (and its log).
    pub async fn start_without_controller(ovn: OvnEnvBuilder, identity: &str) -> Result<Self> {
        let ovn = tokio::task::spawn_blocking(|| ovn.start())
            .await
            .context("starting OVN")?
            .context("starting OVN")?;
        let kube = tokio::task::spawn_blocking(KubeEnv::start)
            .await
            .context("starting the API server")?
            .context("starting the API server")?;
        let cluster = Cluster::connect(&kube).await?;
        cluster.install_crds().await?;
        Ok(Self {
            controller: None,
            identity: identity.to_owned(),
            options: ControllerOptions::default(),
            cluster,
            kube,
            ovn,
        })
    }

    /// Starts everything and waits until the controller is ready.
    pub async fn start(ovn: OvnEnvBuilder, identity: &str) -> Result<Self> {
        let mut env = Self::start_without_controller(ovn, identity).await?;
        env.start_controller().await?;
        Ok(env)
    }

    /// Starts (or restarts) the controller and waits until it is ready.
    pub async fn start_controller(&mut self) -> Result<()> {
        let identity = self.identity.clone();
        self.controller = Some(self.ready_controller(&identity).await?);
        Ok(())
    }

    /// Starts the controller (its log path printed: it is kept after the test) and, once
    /// it is ready, a `rovn-agent` for the environment's chassis with its state under
    /// `dir`.
    pub async fn start_controller_and_agent(
        &mut self,
        dir: &std::path::Path,
    ) -> Result<AgentProcess> {
        self.start_controller().await?;
        eprintln!(
            "rovn-controller logs to {}",
            self.controller().process.log_path().display()
        );
        let node = self
            .ovn
            .chassis_name()
            .context("the environment has no chassis for the agent")?;
        AgentProcess::start(
            dir,
            &AgentProcess::chassis_args(self.kube.kubeconfig(), node, &self.ovn)?,
        )
    }

    /// Another controller on this environment (a replica, a restart under a new
    /// identity), started like the environment's own and ready; the caller owns it.
    pub async fn ready_controller(&self, identity: &str) -> Result<ControllerProcess> {
        let mut controller = ControllerProcess::start_with(
            &self.ovn.nb_remote(),
            self.kube.kubeconfig(),
            identity,
            &self.options,
        )?;
        controller.wait_ready().await?;
        Ok(controller)
    }

    /// Kills the controller with SIGKILL; its log is kept as `<log>.killed` (a restart
    /// writes a new one).
    pub fn kill_controller(&mut self) -> Result<()> {
        let mut controller = self
            .controller
            .take()
            .context("the controller is not running")?;
        controller.process.kill();
        let log = controller.process.log_path().to_path_buf();
        drop(controller);
        let killed = log.with_extension("log.killed");
        std::fs::rename(&log, &killed)
            .with_context(|| format!("renaming {} to {}", log.display(), killed.display()))
    }

    /// The controller.
    ///
    /// # Panics
    ///
    /// When the controller is not running.
    pub fn controller(&self) -> &ControllerProcess {
        self.controller
            .as_ref()
            .expect("the controller of the ControllerEnv is not running")
    }
}
