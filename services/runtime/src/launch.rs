//! The common `main`: parse the command line, load and validate config, set up telemetry,
//! and run the service on a tokio runtime until a signal.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::config::{Validate, load_from_env};
use crate::telemetry::{LogConfig, init_tracing};

/// What [`launch`] needs to know of a service's config.
pub trait ServiceConfig: DeserializeOwned + Validate {
    fn log(&self) -> &LogConfig;
}

const USAGE: &str = "usage: SERVICE [--config FILE] [--check-config]\n\
    Config: FILE (or $SHADOWDIFF_CONFIG), then SHADOWDIFF_<SECTION>_<KEY> environment overrides.";

/// Runs a service: `run` gets the validated config and a token cancelled on SIGINT/SIGTERM.
/// Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or config.
pub fn launch<C, F, Fut, E>(service: &'static str, run: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut file = std::env::var_os("SHADOWDIFF_CONFIG").map(PathBuf::from);
    let mut check_only = false;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--config") => file = args.next().map(PathBuf::from),
            Some("--check-config") => check_only = true,
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("{service}: unexpected argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let config: C = match load_from_env(file.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{service}: {errors}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!("{service}: configuration is valid");
        return ExitCode::SUCCESS;
    }
    init_tracing(config.log());
    crate::telemetry::metrics();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{service}: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = crate::shutdown::on_signal();
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
        match run(config, shutdown).await {
            Ok(()) => {
                tracing::info!(service, "stopped");
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(service, %error, "failed");
                ExitCode::FAILURE
            }
        }
    })
}
