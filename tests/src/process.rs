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
