//! `shadowctl`: the shadowdiff command line, for people and CD pipelines.
//!
//! `gate` polls the verdict API until a candidate passes or fails its rollout stage's gate
//! and answers with its exit code; `verdict` and `diff` print a report and one request's
//! comparison; `accept`, `revoke` and `acceptances` manage intended differences; `profiles`
//! manages the mirror's shadow profiles; `record` writes a window of production traffic
//! from the brokers to an Avro file, and `replay` sends such a window again to a build and
//! judges it (`shadowdiff_replay`). It speaks HTTP to both
//! services and decodes their answers into their own types (`shadowdiff_verdict`,
//! `shadowdiff_mirror::profile`), so a change of shape there fails to compile here.
//!
//! Reading order: [`cli`] (commands, flags, exit codes), [`api`] (the HTTP calls), then one
//! module per command: [`gate`], [`report`] (the verdict tables), [`diff`], [`profiles`],
//! [`record`] (with [`brokers`], where the Kafka settings come from), [`replay`].

pub mod api;
pub mod brokers;
pub mod cli;
pub mod diff;
pub mod gate;
pub mod profiles;
pub mod record;
pub mod replay;
pub mod report;
pub mod style;
pub mod table;

use std::io::Write as _;
use std::time::Duration;

use api::{Api, ApiError};
use cli::{Cli, Command};
use shadowdiff_verdict::accept::ChangeRequest;

/// Exit codes, as `--help` lists them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const PASS: u8 = OK;
    pub const FAIL: u8 = 1;
    pub const INCONCLUSIVE: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const UNAVAILABLE: u8 = 4;
}

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("no verdict within --wait {}: {last}", humantime::format_duration(*.wait))]
    NoVerdict { wait: Duration, last: Box<ApiError> },
    #[error("{path}: {reason}")]
    Input { path: String, reason: String },
    #[error(transparent)]
    Window(#[from] shadowdiff_replay::WindowError),
    #[error("reading the window from the brokers: {0}")]
    Read(#[from] shadowdiff_replay::ReadError),
    #[error(transparent)]
    Recording(#[from] shadowdiff_replay::RecordingError),
    #[error("{0}")]
    Unavailable(String),
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Api(error) if error.refused() => exit::REFUSED,
            Self::Api(ApiError::Client(_)) | Self::Input { .. } | Self::Window(_) | Self::Recording(_) => exit::REFUSED,
            // A topic name that is not there is a bad argument, not an outage.
            Self::Read(shadowdiff_replay::ReadError::UnknownTopic { .. }) => exit::REFUSED,
            Self::Api(_) | Self::NoVerdict { .. } | Self::Read(_) | Self::Unavailable(_) => exit::UNAVAILABLE,
        }
    }
}

/// Runs one command; `Ok` carries the exit code.
pub async fn run(cli: Cli) -> Result<u8, CtlError> {
    // Speaks to the brokers only: no HTTP client to build.
    if let Command::Record(args) = &cli.command {
        return record::run(args).await;
    }
    let api = Api::new(cli.verdict, cli.mirror, cli.token, cli.mirror_token, cli.timeout)?;
    // The drill-down pages' base, `…/exchanges/`.
    let pages = api.exchange_page("", None);
    match &cli.command {
        Command::Gate(args) => gate::run(&api, args, cli.timeout, &pages).await,
        Command::Verdict(args) => {
            let report = api.verdict(&args.window, args.stage.as_deref(), None).await?;
            if args.json {
                // A report always serializes: plain numbers, strings and lists.
                let json = serde_json::to_string_pretty(&report).unwrap_or_default();
                out(&format!("{json}\n"));
            } else {
                out(&report::render(&report, &pages));
            }
            Ok(exit::OK)
        }
        Command::Diff(args) => {
            let detail = api.exchange(&args.request_id).await?;
            let shadow = detail.drill_down(args.candidate.as_deref());
            let page = api.exchange_page(&args.request_id, shadow.as_deref());
            out(&diff::render(&detail, shadow.as_deref(), &page));
            Ok(exit::OK)
        }
        Command::Suggest(args) => {
            let suggestions = api.suggestions(&args.candidate, args.since.as_deref()).await?;
            out(&report::suggestions(&suggestions));
            Ok(exit::OK)
        }
        Command::Accept(args) => {
            let change = ChangeRequest {
                candidate: args.path.candidate.clone(),
                route: args.path.route.clone(),
                path: args.path.path.clone(),
                reason: args.reason.clone(),
                expires: args.expires.clone(),
            };
            out(&report::acceptances(&[api.change_acceptance(&change, false).await?]));
            Ok(exit::OK)
        }
        Command::Revoke(args) => {
            let change = ChangeRequest {
                candidate: args.path.candidate.clone(),
                route: args.path.route.clone(),
                path: args.path.path.clone(),
                reason: args.reason.clone().unwrap_or_default(),
                expires: None,
            };
            out(&report::acceptances(&[api.change_acceptance(&change, true).await?]));
            Ok(exit::OK)
        }
        Command::Acceptances { candidate } => {
            out(&report::acceptances(&api.acceptances(candidate).await?));
            Ok(exit::OK)
        }
        Command::Profiles(command) => profiles::run(&api, command).await.map(|()| exit::OK),
        Command::Record(args) => record::run(args).await,
        Command::Replay(args) => replay::run(&api, args, &pages).await,
    }
}

/// Writes to stdout, styles dropped unless it is a terminal that wants them. A closed pipe
/// (`shadowctl verdict … | head`) is not an error worth a message.
pub fn out(text: &str) {
    let mut stdout = anstream::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
