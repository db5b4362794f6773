//! `shadowdiff-demo backend` stops promptly on SIGTERM, as `docker compose stop` and
//! Kubernetes send it, even with a client holding an idle keep-alive connection open.
//!
//! In a container the backend is PID 1, for which SIGTERM has no default action: without a
//! handler it would be ignored until the runtime kills. Outside one (here) the default
//! action kills at once, so the test asserts the handler's doing: exit status 0 and the
//! line the backend prints when it has stopped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Well below the 10 s a container runtime waits before it kills.
const STOP_WITHIN: Duration = Duration::from_secs(3);

/// Kills the backend if the test ends before it does.
struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn backend_exits_promptly_on_sigterm() {
    let child = Command::new(env!("CARGO_BIN_EXE_shadowdiff-demo"))
        .args(["backend", "--listen", "127.0.0.1:0", "--noise"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the demo binary starts");
    let mut backend = Backend(child);

    // The first line names the bound address: the backend is then accepting.
    let mut stdout = BufReader::new(backend.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let address = line
        .strip_prefix("demo backend on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    // One answered request on a keep-alive connection that stays open, idle.
    let mut connection = TcpStream::connect(&address).unwrap();
    connection.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(connection, "GET /items/7 HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut head = [0_u8; 12];
    connection.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the backend answers before it is stopped");

    let pid = backend.0.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(kill.success(), "kill -TERM {pid}");
    let started = Instant::now();
    let status = wait_for_exit(&mut backend.0, STOP_WITHIN)
        .unwrap_or_else(|| panic!("still running {STOP_WITHIN:?} after SIGTERM"));
    assert!(status.success(), "a graceful stop exits 0, not {status} (after {:?})", started.elapsed());

    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.contains(&format!("demo backend on {address} stopped")), "the backend logs its stop: {rest:?}");
}
