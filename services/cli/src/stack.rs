//! Touchpoint's processes, started and stopped together: the four service
//! binaries (and, for `touchpoint up`, the broker and the provider sandbox).
//!
//! Each process's stdout and stderr go to a log file of its own. Every process is
//! stopped by [`Stack::stop`] (SIGTERM, then SIGKILL for one that does not stop
//! in time), and killed if the stack is dropped without stopping, so a failed
//! start or a failed test leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};
use tonic_health::pb::health_check_response::ServingStatus;
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::grpc::client::ClientAccess;

use crate::health::{self, status};
use crate::mesh::{MeshDir, Peer};

/// The four services, in the order they start: [`health::SERVICES`]' names, so
/// the list of default ports and this one cannot disagree.
pub const SERVICES: [&str; 4] = [
    health::SERVICES[0].0,
    health::SERVICES[1].0,
    health::SERVICES[2].0,
    health::SERVICES[3].0,
];
/// How long a process has to come up.
pub const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a process has to stop after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// What the services are started with.
#[derive(Debug, Clone)]
pub struct Services {
    /// The folder holding `touchpoint-<service>`.
    pub bin_dir: PathBuf,
    /// Where each service's log goes: `<log_dir>/<service>.log`.
    pub log_dir: PathBuf,
    /// Each service's gRPC address, in [`SERVICES`] order.
    pub grpc: [String; 4],
    /// Variables every service gets (`DATABASE_URL`, `KAFKA_BROKERS`, ...).
    pub common: Vec<(String, String)>,
    /// Variables for one service only: (service, variable, value).
    pub own: Vec<(&'static str, String, String)>,
    /// The services' clock, when not the system's.
    pub clock: Option<ClockConfig>,
    /// The development mesh the services speak mutual TLS on, if any.
    pub mesh: Option<MeshDir>,
}

impl Services {
    /// The command that starts `service` with its variables and clock.
    pub fn command(&self, service: &str) -> anyhow::Result<Command> {
        let addr = self
            .grpc_of(service)
            .with_context(|| format!("no service {service}"))?;
        let mut command = self.process(service)?;
        command.env("TOUCHPOINT_GRPC_ADDR", addr);
        Ok(command)
    }

    /// The command that starts the desk on `addr`, calling the four services.
    pub fn desk_command(&self, addr: &str) -> anyhow::Result<Command> {
        let mut command = self.process("desk")?;
        command.env("TOUCHPOINT_DESK_ADDR", addr);
        for (service, grpc) in SERVICES.iter().zip(&self.grpc) {
            command.env(
                format!("TOUCHPOINT_{}_URL", service.to_ascii_uppercase()),
                format!("http://{grpc}"),
            );
        }
        Ok(command)
    }

    /// `touchpoint-<name>` with the variables every process gets, its own,
    /// its mesh identity and the clock.
    fn process(&self, name: &str) -> anyhow::Result<Command> {
        let binary = self.bin_dir.join(format!("touchpoint-{name}"));
        if !binary.exists() {
            bail!(
                "{} is missing: build with `cargo build --release --bins`",
                binary.display()
            );
        }
        let mut command = Command::new(&binary);
        command.envs(self.common.iter().map(|(k, v)| (k, v))).envs(
            self.own
                .iter()
                .filter(|(own, _, _)| *own == name)
                .map(|(_, k, v)| (k, v)),
        );
        if let Some(mesh) = &self.mesh {
            command.envs(mesh.env_of(name));
        }
        if let Some(ClockConfig::Accelerated {
            start,
            epoch,
            speed,
        }) = &self.clock
        {
            command
                .env("TOUCHPOINT_CLOCK", "accelerated")
                .env("TOUCHPOINT_CLOCK_START", start.to_rfc3339())
                .env("TOUCHPOINT_CLOCK_EPOCH", epoch.to_rfc3339())
                .env("TOUCHPOINT_CLOCK_SPEED", speed.to_string());
        }
        Ok(command)
    }

    /// What the CLI presents to the services: its mesh certificate, if any.
    pub fn access(&self) -> anyhow::Result<ClientAccess> {
        self.mesh
            .as_ref()
            .map_or_else(|| Ok(ClientAccess::default()), MeshDir::cli_access)
    }

    /// `service` as the CLI calls it.
    pub fn peer(&self, service: &str) -> anyhow::Result<Peer> {
        let addr = self
            .grpc_of(service)
            .with_context(|| format!("no service {service}"))?;
        Ok(Peer::new(format!("http://{addr}"), self.access()?))
    }

    /// Where `service`'s output goes.
    pub fn log_of(&self, service: &str) -> PathBuf {
        self.log_dir.join(format!("{service}.log"))
    }

    /// The gRPC address of `service`.
    pub fn grpc_of(&self, service: &str) -> Option<&str> {
        SERVICES
            .iter()
            .position(|s| *s == service)
            .map(|i| self.grpc[i].as_str())
    }
}

/// A process's place in the stack: it keeps its place while killed (`child` is
/// `None`), so a restart stops in the same order as the first start.
struct Process {
    name: String,
    child: Option<Child>,
}

/// Processes started together; stopped in reverse order.
#[derive(Default)]
pub struct Stack {
    processes: Vec<Process>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .processes
            .iter()
            .filter(|p| p.child.is_some())
            .map(|p| p.name.as_str())
            .collect();
        f.debug_struct("Stack").field("processes", &names).finish()
    }
}

impl Stack {
    /// Starts `command` as `name`, its output to `log`.
    pub fn spawn(&mut self, name: &str, command: Command, log: &Path) -> anyhow::Result<()> {
        let log = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        self.start(name, command, log)
    }

    fn start(
        &mut self,
        name: &str,
        mut command: Command,
        log: std::fs::File,
    ) -> anyhow::Result<()> {
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        match self
            .processes
            .iter_mut()
            .find(|p| p.name == name && p.child.is_none())
        {
            Some(killed) => killed.child = Some(child),
            None => self.processes.push(Process {
                name: name.to_owned(),
                child: Some(child),
            }),
        }
        Ok(())
    }

    /// Starts the four services and waits until each reports SERVING.
    pub async fn start_services(&mut self, services: &Services) -> anyhow::Result<()> {
        for name in SERVICES {
            let command = services.command(name)?;
            self.spawn(name, command, &services.log_of(name))?;
        }
        let access = services.access()?;
        for (name, addr) in SERVICES.iter().zip(&services.grpc) {
            wait_until_serving(addr, &access).await.with_context(|| {
                format!(
                    "{name} did not become healthy; see {}",
                    services.log_of(name).display()
                )
            })?;
        }
        Ok(())
    }

    /// Kills `name` with SIGKILL, as a crash would, and waits until it is gone;
    /// false if no such process was running.
    pub async fn kill(&mut self, name: &str) -> bool {
        let Some(mut child) = self
            .processes
            .iter_mut()
            .find(|p| p.name == name)
            .and_then(|p| p.child.take())
        else {
            return false;
        };
        let _ = child.kill().await;
        true
    }

    /// Starts `name` again with `command` after [`Stack::kill`], its output
    /// appended to `log`, in the place it had among the others.
    pub fn respawn(&mut self, name: &str, command: Command, log: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        self.start(name, command, log)
    }

    /// Starts service `name` again after [`Stack::kill`] and waits until it
    /// reports SERVING.
    pub async fn restart_service(&mut self, services: &Services, name: &str) -> anyhow::Result<()> {
        self.respawn(name, services.command(name)?, &services.log_of(name))?;
        let addr = services.grpc_of(name).unwrap_or_default();
        wait_until_serving(addr, &services.access()?)
            .await
            .with_context(|| format!("{name} did not become healthy again"))
    }

    /// Each running process's name and pid, in start order.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.processes
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.child.as_ref()?.id()?)))
            .collect()
    }

    /// The name of the first process to exit; waits until one does.
    pub async fn first_exit(&mut self) -> String {
        loop {
            for process in &mut self.processes {
                if let Some(child) = &mut process.child
                    && let Ok(Some(_)) = child.try_wait()
                {
                    return process.name.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops every process, the last started first (services drain into the
    /// broker before it goes); returns the names of those that did not exit
    /// cleanly.
    pub async fn stop(&mut self) -> Vec<String> {
        let mut unclean = Vec::new();
        while let Some(process) = self.processes.pop() {
            if let Some(child) = process.child
                && !terminate(child, &process.name).await
            {
                unclean.push(process.name);
            }
        }
        unclean
    }
}

/// Sends `child` SIGTERM and waits; kills it if it does not exit in
/// [`STOP_LIMIT`]. True if it exited with success.
async fn terminate(mut child: Child, name: &str) -> bool {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
    }
    match tokio::time::timeout(STOP_LIMIT, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        Ok(Err(_)) => false,
        Err(_) => {
            eprintln!("{name} did not stop in {STOP_LIMIT:?}; killing it");
            let _ = child.kill().await;
            false
        }
    }
}

/// Waits until something listens on `addr`.
pub async fn wait_for_port(addr: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nothing listens on {addr} after {START_LIMIT:?}")
}

async fn wait_until_serving(addr: &str, access: &ClientAccess) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        let last = status(addr, access).await;
        if matches!(last, Ok(ServingStatus::Serving)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last.err().unwrap_or_else(|| anyhow::anyhow!("not serving")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper() -> Command {
        let mut command = Command::new("sleep");
        command.arg("60");
        command
    }

    #[tokio::test]
    async fn a_killed_process_restarts_in_its_place_and_stops_in_order() {
        let log = std::env::temp_dir().join(format!("stack-test-{}.log", std::process::id()));
        let mut stack = Stack::default();
        for name in ["broker", "cases", "dispatch"] {
            stack
                .spawn(name, sleeper(), &log)
                .unwrap_or_else(|e| panic!("{e:#}"));
        }

        assert!(stack.kill("cases").await);
        assert!(!stack.kill("cases").await, "cases was already down");
        let running: Vec<String> = stack.pids().into_iter().map(|(name, _)| name).collect();
        assert_eq!(running, ["broker", "dispatch"]);

        stack
            .respawn("cases", sleeper(), &log)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let running: Vec<String> = stack.pids().into_iter().map(|(name, _)| name).collect();
        assert_eq!(running, ["broker", "cases", "dispatch"]);

        // `sleep` dies of SIGTERM, so each counts as unclean, in stopping order.
        assert_eq!(stack.stop().await, ["dispatch", "cases", "broker"]);
        assert!(stack.pids().is_empty());
        let _ = std::fs::remove_file(log);
    }
}
