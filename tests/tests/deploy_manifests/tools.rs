//! Running the validators, reading files and YAML, and picking values out of JSON.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub(crate) const INSTALL: &str = "install the validators with deploy/k8s/validators.sh (deploy/local/test.sh runs it)";

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the repository").to_path_buf()
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A program from the validators' virtualenv.
pub(crate) fn venv_tool(name: &str) -> PathBuf {
    let path = repo().join(".local/deploy-tools/venv/bin").join(name);
    assert!(path.is_file(), "{} is missing: {INSTALL}", path.display());
    path
}

/// A program on `PATH`.
pub(crate) fn path_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("`{name}` is not on PATH: {INSTALL}"))
}

pub(crate) struct Ran {
    pub(crate) ok: bool,
    /// stdout and stderr together, for failure messages.
    pub(crate) output: String,
    pub(crate) stdout: String,
}

pub(crate) fn run(mut command: Command, input: Option<String>) -> Ran {
    command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}; {INSTALL}"));
    let writer = input.map(|input| {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        std::thread::spawn(move || stdin.write_all(input.as_bytes()))
    });
    let out = child.wait_with_output().expect("the child runs to its end");
    if let Some(writer) = writer {
        writer.join().expect("the stdin writer does not panic").expect("the child reads its input");
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let output = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    Ran { ok: out.status.success(), output, stdout }
}

/// A file in the temp dir, removed when dropped.
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    pub(crate) fn new(extension: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}.{extension}", shadowdiff_tests::unique("deploy_manifests")));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every document of a YAML stream, as JSON (PyYAML, from the validators' virtualenv).
pub(crate) fn yaml_documents(text: &str) -> Vec<Value> {
    let mut python = Command::new(venv_tool("python"));
    python.args(["-c", "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)"]);
    let ran = run(python, Some(text.to_owned()));
    assert!(ran.ok, "YAML does not parse:\n{}", ran.output);
    let documents: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

pub(crate) fn yaml_file(relative: &str) -> Value {
    let mut documents = yaml_documents(&read(&repo().join(relative)));
    assert_eq!(documents.len(), 1, "{relative} holds one document");
    documents.remove(0)
}

pub(crate) fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("expected a string, found {value}"))
}

pub(crate) fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().map(|i| str_of(i).to_owned()).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Null => Vec::new(),
        other => panic!("expected a list of strings, found {other}"),
    }
}

/// `http://host:port/path` or `host:port` → (host, port).
pub(crate) fn host_port(address: &str) -> (String, u16) {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or_else(|_| panic!("bad port in {address}"))),
        None if address.starts_with("http://") => (authority, 80),
        None => panic!("{address} names no port"),
    };
    (host.to_owned(), port)
}

/// The value after `flag` in an argument list.
pub(crate) fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}
