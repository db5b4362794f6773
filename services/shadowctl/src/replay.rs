//! `shadowctl replay`: recorded production traffic sent again to a build before it is
//! deployed, compared as a run of its own, and judged by a rollout stage's gate.
//!
//! The exchanges come off the brokers (`--from`/`--to`, as `record` reads them) or from a
//! recording (`--file`). A [`Run`] replays them by a mirror's rules (its config file's
//! `[mirror]`) to the candidates and the baseline, then either
//!
//! - publishes them with the recorded primary's answers to the topics the correlator reads,
//!   and asks the verdict API about the run until every replayed exchange is compared, or
//!   `--wait` runs out ([`published`]); or,
//! - with `--correlator-config`, compares them in this process by that correlator's rules,
//!   writes the rows to its ClickHouse, and judges them here by the verdict's own report
//!   ([`compared_here`]): no broker, correlator or verdict service at all.
//!
//! The exit code is the verdict's, the worst of the candidates'.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::path::Path;

use shadowdiff_correlator::CorrelatorConfig;
use shadowdiff_correlator::direct::Written;
use shadowdiff_mirror::MirrorConfig;
use shadowdiff_mirror::profile::{Profile, TargetRole};
use shadowdiff_mirror::replay::ReplayContext;
use shadowdiff_replay::{Compared, Outlet, Publisher, ReadOptions, Recorded, Run, Summary, read_window, recording};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::config::load;
use shadowdiff_verdict::config::VerdictSection;
use shadowdiff_verdict::{Decision, VerdictConfig, VerdictReport};

use crate::api::Api;
use crate::cli::{ReplayArgs, Window};
use crate::style::{HEADER, WARN, paint};
use crate::{CtlError, exit, out, report};

/// Time between two asks for the run's verdict.
const POLL: Duration = Duration::from_secs(1);

pub async fn run(api: &Api, args: &ReplayArgs, pages: &reqwest::Url) -> Result<u8, CtlError> {
    let config: MirrorConfig = load_config(&args.config)?;
    let context = ReplayContext::of(&config.mirror);
    let id = args.run.clone().unwrap_or_else(|| {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        format!("replay-{secs}")
    });
    let run =
        Run { profile: profile(args, &id)?, id, speed: args.speed, concurrency: args.concurrency, rate: args.rate };
    run.check(&context).map_err(refused)?;
    let reports = match &args.correlator_config {
        Some(path) => compared_here(args, &run, &context, &config, path).await?,
        None => published(api, args, &run, &context, &config).await?,
    };
    let mut codes = Vec::new();
    for report in reports {
        out(&report::render(&report, pages));
        codes.push(match report.verdict {
            Decision::Pass => exit::PASS,
            Decision::Fail => exit::FAIL,
            Decision::Inconclusive => exit::INCONCLUSIVE,
        });
    }
    // Any fail fails the run; then any inconclusive.
    Ok(if codes.contains(&exit::FAIL) {
        exit::FAIL
    } else if codes.contains(&exit::INCONCLUSIVE) {
        exit::INCONCLUSIVE
    } else {
        exit::PASS
    })
}

/// Publishes the run for the correlator, then asks the verdict API about each candidate.
async fn published(
    api: &Api,
    args: &ReplayArgs,
    run: &Run,
    context: &ReplayContext,
    config: &MirrorConfig,
) -> Result<Vec<VerdictReport>, CtlError> {
    let exchanges = exchanges(args, config).await?;
    let producer = config.kafka.producer().map_err(|e| CtlError::Unavailable(format!("the brokers: {e}")))?;
    let publisher = Publisher::new(producer, &config.topics.requests, &config.topics.responses).map_err(refused)?;
    let summary = replay(run, exchanges, context, &publisher).await?;
    let mut reports = Vec::new();
    for candidate in candidates(run) {
        let window = Window { candidate: candidate.to_owned(), revision: None, since: None, run: Some(run.id.clone()) };
        reports.push(judged(api, &window, &args.stage, summary.replayed, args.wait).await?);
    }
    Ok(reports)
}

/// Compares the run in this process and writes its rows to the correlator config's
/// ClickHouse, then judges each candidate here: no broker, no correlator, no verdict API.
async fn compared_here(
    args: &ReplayArgs,
    run: &Run,
    context: &ReplayContext,
    config: &MirrorConfig,
    correlator: &Path,
) -> Result<Vec<VerdictReport>, CtlError> {
    let correlator: CorrelatorConfig = load_config(correlator)?;
    let verdict = match &args.verdict_config {
        Some(path) => load_config::<VerdictConfig>(path)?.verdict,
        None => VerdictSection::default(),
    };
    verdict.gates.judging(&args.stage, true).ok_or_else(|| CtlError::Input {
        path: "--stage".to_owned(),
        reason: format!("no stage {:?}: one of {}", args.stage, shadowdiff_verdict::gate::STAGES.join(", ")),
    })?;
    let unavailable =
        |e: &dyn std::fmt::Display| CtlError::Unavailable(format!("ClickHouse at {}: {e}", correlator.clickhouse.url));
    // Writes ClickHouse keeps refusing are retried until --wait is up, or an interrupt.
    let shutdown = CancellationToken::new();
    let compared = Compared::connect(&correlator, shutdown.clone()).await.map_err(|e| unavailable(&e))?;
    let exchanges = exchanges(args, config).await?;
    let (summary, written) = {
        let _stop = shutdown.clone().drop_guard();
        let deadline = shutdown.clone();
        let wait = args.wait;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => deadline.cancel(),
                () = deadline.cancelled() => {}
            }
        });
        let summary = replay(run, exchanges, context, &compared).await?;
        let finishing = tokio::time::timeout(wait, compared.finish());
        let written = finishing.await.ok().and_then(Result::ok).ok_or_else(|| unavailable(&"rows not written"))?;
        (summary, written)
    };
    out(&written_summary(&written, summary.replayed));
    let clickhouse = correlator.clickhouse.connect().await.map_err(|e| unavailable(&e))?;
    let mut reports = Vec::new();
    for candidate in candidates(run) {
        let report = shadowdiff_verdict::report::of_run(&clickhouse.client, &verdict, candidate, &run.id, &args.stage)
            .await
            .map_err(|e| unavailable(&e))?;
        reports.push(report);
    }
    Ok(reports)
}

/// Replays the exchanges to `outlet` under a progress bar, and prints what the run did.
async fn replay<O: Outlet>(
    run: &Run,
    exchanges: Vec<Recorded>,
    context: &ReplayContext,
    outlet: &O,
) -> Result<Summary, CtlError> {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(exchanges.len() as u64),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} exchanges, {per_sec}, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let summary = run.replay(exchanges, context, outlet, &|| bar.inc(1)).await.map_err(refused)?;
    bar.finish_and_clear();
    out(&summarize(run, &summary));
    if summary.replayed == 0 {
        return Err(CtlError::Input {
            path: "the recording".to_owned(),
            reason: "no exchange was replayed".to_owned(),
        });
    }
    Ok(summary)
}

/// The names of the run's candidates, each judged on its own.
fn candidates(run: &Run) -> impl Iterator<Item = &str> {
    run.profile.targets.iter().filter(|t| t.role == TargetRole::Candidate).map(|t| t.name.as_str())
}

/// A service's config file, with its environment overrides, checked key by key.
fn load_config<C: serde::de::DeserializeOwned + shadowdiff_runtime::config::Validate>(
    path: &Path,
) -> Result<C, CtlError> {
    load(Some(path), std::env::vars()).map_err(|errors| CtlError::Input {
        path: path.display().to_string(),
        reason: errors.to_string().trim_end().to_owned(),
    })
}

/// The run's profile, as the mirror would take it: its candidates and baseline, the safe
/// methods and those opted in with a reason, every request of the recording.
fn profile(args: &ReplayArgs, run: &str) -> Result<Profile, CtlError> {
    let target = |spec: &str, role: &str| -> Result<serde_json::Value, CtlError> {
        let (name, url) = spec.split_once('=').ok_or_else(|| CtlError::Input {
            path: spec.to_owned(),
            reason: "a target is NAME=URL (v2=http://127.0.0.1:8080)".to_owned(),
        })?;
        let timeout_ms = u64::try_from(args.target_timeout.as_millis()).unwrap_or(u64::MAX);
        Ok(serde_json::json!({ "name": name, "role": role, "base_url": url, "timeout_ms": timeout_ms }))
    };
    let mut targets = Vec::new();
    for candidate in &args.candidates {
        targets.push(target(candidate, "candidate")?);
    }
    if let Some(baseline) = &args.baseline {
        targets.push(target(baseline, "secondary")?);
    }
    let mut profile = serde_json::json!({ "id": format!("replay.{run}"), "targets": targets });
    if !args.unsafe_methods.is_empty() {
        profile["unsafe_methods"] =
            serde_json::json!({ "methods": args.unsafe_methods, "reason": args.reason.clone().unwrap_or_default() });
    }
    serde_json::from_value(profile)
        .map_err(|e| CtlError::Input { path: "--candidate, --baseline".to_owned(), reason: e.to_string() })
}

/// The recorded exchanges: the recording's, or the window's off the brokers.
async fn exchanges(args: &ReplayArgs, config: &MirrorConfig) -> Result<Vec<Recorded>, CtlError> {
    if let Some(path) = &args.file {
        return Ok(recording::read_at_most(path, args.window.limit)?.collect::<Result<Vec<_>, _>>()?);
    }
    let window = crate::record::window(&args.window, SystemTime::now())?;
    let options = ReadOptions { grace: args.window.grace, ..ReadOptions::default() };
    Ok(read_window(&config.kafka, &config.topics, &window, &options).await?.exchanges)
}

/// Asks for the run's verdict until every replayed exchange is compared (the verdict can no
/// longer change), or `wait` runs out: the latest report either way.
async fn judged(
    api: &Api,
    window: &Window,
    stage: &str,
    replayed: u64,
    wait: Duration,
) -> Result<VerdictReport, CtlError> {
    let deadline = Instant::now() + wait;
    loop {
        let report = api.verdict(window, Some(stage), None).await?;
        if report.samples >= replayed || Instant::now() >= deadline {
            if report.samples < replayed {
                let note = format!(
                    "{} of {replayed} replayed exchanges compared within --wait {}: is a correlator reading these topics?",
                    report.samples,
                    humantime::format_duration(wait)
                );
                anstream::eprintln!("{}", paint(WARN, note));
            }
            return Ok(report);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn summarize(run: &Run, summary: &Summary) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} in {:.1}s (recorded over {:.1}s)",
        paint(HEADER, format!("run {}: replayed {} exchanges", run.id, summary.replayed)),
        summary.elapsed.as_secs_f64(),
        summary.recorded_span.as_secs_f64()
    );
    for (reason, n) in &summary.refused {
        let why = match *reason {
            "method" => "not a safe method, nor opted in with --unsafe-method",
            "request_id" => "its request id with the run's is too long",
            other => other,
        };
        let _ = writeln!(text, "  not replayed: {n} ({why})");
    }
    if summary.unkept > 0 {
        let _ = writeln!(
            text,
            "  {}",
            paint(WARN, format!("{} replayed but not all kept (events the brokers refused)", summary.unkept))
        );
    }
    text
}

fn written_summary(written: &Written, replayed: u64) -> String {
    let mut text = format!(
        "compared here: {} comparisons of {replayed} exchanges written, {} complete\n",
        written.comparisons, written.complete
    );
    for (reason, n) in &written.rejected {
        let _ = writeln!(text, "  {}", paint(WARN, format!("rows ClickHouse rejected, not written: {n} ({reason})")));
    }
    text
}

fn refused(error: shadowdiff_replay::RunError) -> CtlError {
    CtlError::Input { path: "the run".to_owned(), reason: error.to_string() }
}
