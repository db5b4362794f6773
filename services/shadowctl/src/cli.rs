//! The command line: every command, flag and environment variable, with the help text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use reqwest::Url;

use crate::exit;

const EXIT_CODES: &str = "\
Exit codes:
  0  success; for `gate` and `replay`: the verdict is pass; for `record`: the file is written
  1  `gate`, `replay`: the verdict is fail
  2  `gate`, `replay`: still inconclusive when --wait ran out
  3  refused: a bad argument, an unreadable file, or a request the server rejected
     (bad parameter, missing or wrong token, unknown id); the reason is printed
  4  the service could not be reached or failed (for `gate`: until --wait ran out)";

/// Shadow-traffic diffing from the command line: gate a rollout on a candidate's verdict,
/// read verdicts and per-request diffs, and manage the mirror's shadow profiles.
#[derive(Debug, Parser)]
#[command(name = "shadowctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Base URL of the verdict API.
    #[arg(long, global = true, env = "SHADOWCTL_VERDICT", default_value = "http://127.0.0.1:8090")]
    pub verdict: Url,
    /// Base URL of the mirror's admin API.
    #[arg(long, global = true, env = "SHADOWCTL_MIRROR", default_value = "http://127.0.0.1:9465")]
    pub mirror: Url,
    /// Bearer token for the verdict API (sent to it only, never to the mirror).
    #[arg(long, global = true, env = "SHADOWCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Bearer token for the mirror's profile API (sent to it only, never to the verdict
    /// API): `read` to list profiles, `write` to change them.
    #[arg(long, global = true, env = "SHADOWCTL_MIRROR_TOKEN", hide_env_values = true)]
    pub mirror_token: Option<String>,
    /// Longest wait for one HTTP request, such as 10s or 1m.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Wait for a candidate's verdict at a rollout stage: the exit code is the answer
    /// (0 pass, 1 fail, 2 still inconclusive when --wait runs out).
    #[command(after_help = EXIT_CODES)]
    Gate(GateArgs),
    /// Print a candidate's verdict: every criterion, latency, worst routes and paths.
    Verdict(VerdictArgs),
    /// Print one request's comparison: each leg, each difference and the bodies' diff.
    Diff(DiffArgs),
    /// Propose ignore rules for what the noise model keeps classifying as noise, as
    /// correlator config to paste: never applied by shadowdiff itself.
    Suggest(SuggestArgs),
    /// Accept a candidate's differences at one route's path as intended: from now on they
    /// are shown as accepted and left out of every criterion. Needs a token with the write
    /// scope; who accepted it, when and why is kept.
    Accept(AcceptArgs),
    /// Take an acceptance back: the path's differences count again at once.
    Revoke(RevokeArgs),
    /// List a candidate's accepted paths, active, expired or revoked.
    Acceptances {
        /// The candidate deployment.
        #[arg(long)]
        candidate: String,
    },
    /// Manage the mirror's shadow profiles.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Record a window of production traffic from the brokers into an Avro file: each
    /// request the tap saw in the window, with the primary's response. The brokers and
    /// topics come from --config's [kafka] and [topics] and SHADOWDIFF_KAFKA_* and
    /// SHADOWDIFF_TOPICS_* variables, as for the services.
    #[command(after_help = EXIT_CODES)]
    Record(RecordArgs),
    /// Replay recorded production traffic to a build, before it is deployed: a window read
    /// off the brokers, or a recording. Each request is sent again to the candidates (and
    /// the baseline) by a mirror's rules, compared by the correlator with the recorded
    /// primary's answer as a run of its own, and judged like a rollout stage: the exit code
    /// is the verdict (0 pass, 1 fail, 2 still inconclusive when --wait runs out).
    #[command(after_help = EXIT_CODES)]
    Replay(Box<ReplayArgs>),
}

/// One path of one candidate's responses.
#[derive(Debug, Clone, Args)]
pub struct PathArgs {
    /// The candidate deployment.
    #[arg(long)]
    pub candidate: String,
    /// The route template, as the verdict names it (`/items/{id}`).
    #[arg(long)]
    pub route: String,
    /// The generalised path, as the verdict names it (`items[*].discount`,
    /// `header:x-api-version`); paths beneath it are covered too.
    #[arg(long)]
    pub path: String,
}

#[derive(Debug, Args)]
pub struct AcceptArgs {
    #[command(flatten)]
    pub path: PathArgs,
    /// Why the difference is intended, for whoever reads the verdict next.
    #[arg(long)]
    pub reason: String,
    /// How long the acceptance lasts, such as 7d; without it, until revoked.
    #[arg(long)]
    pub expires: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub path: PathArgs,
    /// Why it no longer holds.
    #[arg(long)]
    pub reason: Option<String>,
}

/// Which comparisons a verdict covers.
#[derive(Debug, Clone, Args)]
pub struct Window {
    /// The candidate deployment, as named in the mirror profile's targets.
    #[arg(long)]
    pub candidate: String,
    /// The release under test (a build or commit id): only comparisons made since the
    /// verdict API was first asked about it count, so earlier releases' rows never do.
    #[arg(long)]
    pub revision: Option<String>,
    /// Only rows from this point on: a duration ago (15m, 2h), an RFC 3339 time or Unix
    /// seconds. A duration is evaluated by the server at every poll, so the window slides.
    /// Without --revision or --since, the server's default window (the last hour).
    #[arg(long)]
    pub since: Option<String>,
    /// A replay run (`shadowctl replay`) to judge instead of the live traffic: all of its
    /// comparisons, within the server's longest window.
    #[arg(long, conflicts_with = "revision")]
    pub run: Option<String>,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    #[command(flatten)]
    pub window: Window,
    /// The rollout stage whose gate applies: shadow, 1, 10, 50 or 100.
    #[arg(long)]
    pub stage: String,
    /// How long to wait for a pass or a fail, such as 15m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Time between two polls.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub interval: Duration,
}

#[derive(Debug, Args)]
pub struct VerdictArgs {
    #[command(flatten)]
    pub window: Window,
    /// The rollout stage whose gate applies; without it, the shadow gate.
    #[arg(long)]
    pub stage: Option<String>,
    /// Print the report as the API's JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// The candidate deployment whose comparisons are read.
    #[arg(long)]
    pub candidate: String,
    /// Only comparisons from this point on (default: the verdict API's default window).
    #[arg(long)]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The request id (X-Request-Id) of the exchange.
    pub request_id: String,
    /// The shadow deployment to compare with the primary; default: the first candidate leg.
    #[arg(long)]
    pub candidate: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// List the profiles the mirror applies.
    List,
    /// Create or replace a profile from a .json or .toml file (one profile, the fields of
    /// `[[mirror.profiles]]`).
    Apply { file: PathBuf },
    /// Remove a profile.
    Delete { id: String },
    /// Replace a profile's injected faults; a flag left out is 0 (error status: 503).
    Fault(FaultArgs),
    /// Per-target replay counters, circuit state and consumer lag of a profile.
    Status { id: String },
}

/// The mirror's `Faults`, one flag per field.
#[derive(Debug, Args)]
pub struct FaultArgs {
    pub id: String,
    /// Latency added to the affected share of replays, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of replays delayed by --latency-ms, 0 to 100.
    #[arg(long, default_value_t = 0.0)]
    pub latency_percent: f64,
    /// Status answered instead of replaying, for the --error-percent share.
    #[arg(long, default_value_t = 503)]
    pub error_status: u16,
    /// Share of replays answered with --error-status, 0 to 100.
    #[arg(long, default_value_t = 0.0)]
    pub error_percent: f64,
    /// Share of replays dropped (no response published), 0 to 100.
    #[arg(long, default_value_t = 0.0)]
    pub drop_percent: f64,
}

/// Which recorded exchanges: a time window on the brokers and its filters.
#[derive(Debug, Args)]
pub struct WindowArgs {
    /// Start of the window (included), by the tap's request timestamps: an RFC 3339 time
    /// (2025-01-31T12:00:00Z) or a duration ago (90m, 2h).
    #[arg(long)]
    pub from: Option<String>,
    /// End of the window (excluded), as --from, or `now`. Requests of the last --grace may
    /// not have their primary's response on the brokers yet: such requests are counted,
    /// not recorded.
    #[arg(long)]
    pub to: Option<String>,
    /// Only requests to this route template (`/items/{id}`; the path where the tap had no
    /// template). Repeat for several; without it, every route.
    #[arg(long = "route", value_name = "ROUTE")]
    pub routes: Vec<String>,
    /// Only requests with this method. Repeat for several; without it, every method.
    #[arg(long = "method", value_name = "METHOD")]
    pub methods: Vec<String>,
    /// Keep this share of the requests, 0 to 100, chosen by request id: the same requests
    /// on every run, and the ones a mirror profile sampling the same share replays.
    #[arg(long, default_value_t = 100.0)]
    pub sample_percent: f64,
    /// Keep at most this many exchanges: the earliest ones.
    #[arg(long, default_value_t = shadowdiff_replay::DEFAULT_LIMIT)]
    pub limit: usize,
    /// How long after a request the tap may publish it and its primary's response.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub grace: Duration,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    /// A service's config file (the tap's, say), read for its [kafka] and [topics] only.
    #[arg(long, env = "SHADOWDIFF_CONFIG")]
    pub config: Option<PathBuf>,
    /// The Avro file to write; replaced once the whole recording is written.
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recorded exchanges: --from and --to (and the filters) read them off the brokers.
    #[command(flatten)]
    pub window: WindowArgs,
    /// Replay a recording (`shadowctl record`) instead: no brokers are read for it.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub file: Option<PathBuf>,
    /// A mirror's config file: its [kafka] and [topics] (where the run's events go, and
    /// where --from/--to are read), and its [mirror] keys and rules, which the run replays
    /// by: allowed_targets, the seal key that opens sealed headers, the redaction of answers.
    #[arg(long, env = "SHADOWDIFF_CONFIG")]
    pub config: PathBuf,
    /// A build under test, as NAME=URL (`v2=http://127.0.0.1:8080`). Repeat for several.
    #[arg(long = "candidate", value_name = "NAME=URL", required = true)]
    pub candidates: Vec<String>,
    /// A build of the primary's version, as NAME=URL: the secondary, whose own differences
    /// from the recorded answers are noise.
    #[arg(long, value_name = "NAME=URL")]
    pub baseline: Option<String>,
    /// The run's id (1 to 64 of A-Z a-z 0-9 - _ . + / =); default: `replay-` and the time.
    #[arg(long)]
    pub run: Option<String>,
    /// The pace: a factor of the recorded one (1x, 2x, 0.5x), or max.
    #[arg(long, default_value = "1x")]
    pub speed: shadowdiff_replay::Speed,
    /// Replays in flight at most.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Exchanges started a second at most.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Longest wait for one target's answer.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    pub target_timeout: Duration,
    /// Replay this method too, beyond GET, HEAD and OPTIONS. Repeat for several; needs
    /// --reason. Replays are real requests: only against targets whose writes go nowhere.
    #[arg(long = "unsafe-method", value_name = "METHOD", requires = "reason")]
    pub unsafe_methods: Vec<String>,
    /// Why replaying --unsafe-method is safe here (a scratch database, stubbed writes).
    #[arg(long)]
    pub reason: Option<String>,
    /// The rollout stage whose gate judges the run.
    #[arg(long, default_value = "shadow")]
    pub stage: String,
    /// How long to wait for every replayed exchange to be compared, and the verdict.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Compare and judge here, with no broker: a correlator's config file, whose
    /// [clickhouse] the run's rows are written to and whose [correlator] rules compare them.
    /// The run is judged in this process rather than by the verdict API.
    #[arg(long, value_name = "FILE")]
    pub correlator_config: Option<PathBuf>,
    /// With --correlator-config: a verdict service's config file, whose [verdict.gates]
    /// judge the run (default: the built-in gates).
    #[arg(long, value_name = "FILE", requires = "correlator_config")]
    pub verdict_config: Option<PathBuf>,
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than 0".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses the command line. Help and version exit 0; a usage error exits with
/// [`exit::REFUSED`] rather than clap's 2, which `gate` uses for inconclusive.
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Nothing useful to do if the terminal is gone.
            let _ = error.print();
            std::process::exit(if error.use_stderr() { i32::from(exit::REFUSED) } else { 0 })
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn gate_reads_durations() {
        let cli = Cli::try_parse_from([
            "shadowctl",
            "gate",
            "--candidate",
            "v2",
            "--stage",
            "10",
            "--wait",
            "15m",
            "--interval",
            "500ms",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Gate(gate) = cli.command else { panic!("not gate: {:?}", cli.command) };
        assert_eq!(gate.wait, Duration::from_secs(900));
        assert_eq!(gate.interval, Duration::from_millis(500));
        assert_eq!(gate.window.candidate, "v2");
        assert!(Cli::try_parse_from(["shadowctl", "gate", "--candidate", "v2", "--stage", "10"]).is_err());
        let zero = ["shadowctl", "gate", "--candidate", "v", "--stage", "1", "--wait", "1m", "--interval", "0s"];
        assert!(Cli::try_parse_from(zero).is_err(), "a zero interval would poll in a busy loop");
    }
}
