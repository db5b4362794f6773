//! Services as their own processes, for scenarios about processes: crashes, and replicas
//! starting together.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The binary `bin` of `package`, built now by the cargo running this test (a no-op when it
/// is current), so a scenario never runs a stale build.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .status()
        .unwrap_or_else(|e| panic!("run cargo build: {e}"));
    assert!(built.success(), "cargo build -p {package} --bin {bin} failed");
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap_or_else(|| panic!("no target dir above {exe:?}"));
    dir.join(bin)
}

/// Starts `binary --config config`, its stderr appended to `log`. Only the file configures
/// it: no SHADOWDIFF_* override leaks in from the test's environment.
pub fn spawn(binary: &Path, config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
    Command::new(binary)
        .arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn,shadowdiff=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()))
}

/// Sends SIGTERM, as `docker stop` and Kubernetes do, and waits (up to `within`) for the
/// process to exit; its exit status, or `None` if it is still running then.
pub async fn terminate(child: &mut Child, within: std::time::Duration) -> Option<std::process::ExitStatus> {
    sigterm(child);
    wait_for_exit(child, within).await
}

/// Sends SIGTERM and returns at once.
pub fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap_or_else(|e| panic!("run kill: {e}"));
    assert!(sent.success(), "kill -TERM {pid}");
}

/// Waits (up to `within`) for the process to exit; its exit status, or `None` if it is
/// still running then.
pub async fn wait_for_exit(child: &mut Child, within: std::time::Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("wait for {}: {e}", child.id())) {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Kills the child with SIGKILL (no shutdown, no flush, no commit) and reaps it.
pub fn kill(child: &mut Child) {
    child.kill().unwrap_or_else(|e| panic!("kill {}: {e}", child.id()));
    child.wait().unwrap_or_else(|e| panic!("wait for {}: {e}", child.id()));
}

/// The consumer session (`session.timeout.ms`) of the services these scenarios SIGKILL: a
/// killed member says no goodbye, so its group drops it only when this has passed.
pub const SESSION_TIMEOUT_MS: u64 = 6000;

/// Waits until the group of a member SIGKILLed at `killed` has certainly dropped it, before
/// another member joins. tansu 0.6 strands a member that joins while a dead leader's session
/// still runs: once the session expires it drops the leader, and the joiner's SyncGroup
/// answers an empty assignment for good (seen in its coordinator's log; Apache Kafka
/// reassigns either way). A fixed wait, as the condition is the broker's clock.
pub async fn until_session_expired(killed: std::time::Instant) {
    let expired = killed + std::time::Duration::from_millis(SESSION_TIMEOUT_MS + 1000);
    tokio::time::sleep_until(expired.into()).await;
}

/// A service process killed (SIGKILL) when this is dropped, so a scenario that fails midway
/// leaves nothing running. Derefs to the [`Child`].
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
