//! `shadowctl gate`: poll the verdict until it passes or fails, or `--wait` runs out.
//!
//! One progress line per poll on stderr (rewritten in place on a terminal, else a new line
//! whenever it changes); the final report on stdout. Transient failures (unreachable, 5xx,
//! timeouts) are printed and retried until the deadline; a refusal (400, 401) ends the
//! gate at once, since asking again would get the same answer.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use reqwest::Url;
use shadowdiff_verdict::{Decision, VerdictReport};

use crate::api::{Api, ApiError};
use crate::cli::GateArgs;
use crate::report::{self, interval, pct, signed_pct};
use crate::style::{self, DIM, WARN, paint};
use crate::{CtlError, exit};

/// The shortest deadline a poll gets, so the last poll before `--wait` runs out can answer.
const MIN_POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the gate; the exit code is the verdict (see [`exit`]).
pub async fn run(api: &Api, args: &GateArgs, request_timeout: Duration, page: &Url) -> Result<u8, CtlError> {
    let start = Instant::now();
    let deadline = start + args.wait;
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let mut last_report: Option<VerdictReport> = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = request_timeout.min(remaining.max(MIN_POLL_TIMEOUT));
        let outcome = match api.verdict(&args.window, Some(&args.stage), Some(timeout)).await {
            Ok(report) => {
                progress.report(start.elapsed(), &line(&report));
                let decided = match report.verdict {
                    Decision::Pass => Some(exit::PASS),
                    Decision::Fail => Some(exit::FAIL),
                    Decision::Inconclusive => None,
                };
                if let Some(code) = decided {
                    progress.finish();
                    crate::out(&report::render(&report, page));
                    return Ok(code);
                }
                Ok(report)
            }
            Err(error) if error.refused() => {
                progress.finish();
                return Err(error.into());
            }
            Err(error) => {
                progress.error(start.elapsed(), &error);
                Err(error)
            }
        };
        let now = Instant::now();
        if now >= deadline {
            progress.finish();
            return match (outcome, last_report) {
                (Ok(report), _) => Ok(inconclusive(&report, args.wait, None, page)),
                (Err(error), Some(report)) => Ok(inconclusive(&report, args.wait, Some(&error), page)),
                (Err(error), None) => Err(CtlError::NoVerdict { wait: args.wait, last: Box::new(error) }),
            };
        }
        if let Ok(report) = outcome {
            last_report = Some(report);
        }
        tokio::time::sleep(args.interval.min(deadline - now)).await;
    }
}

/// Prints the last report of a gate that ran out of time.
fn inconclusive(report: &VerdictReport, wait: Duration, error: Option<&ApiError>, page: &Url) -> u8 {
    crate::out(&report::render(report, page));
    let mut note = format!("shadowctl: still inconclusive after --wait {}", humantime::format_duration(wait));
    if let Some(error) = error {
        note.push_str(&format!("; the last poll failed: {error}"));
    }
    anstream::eprintln!("{}", paint(WARN, note));
    exit::INCONCLUSIVE
}

/// One poll's state: verdict, samples, divergence with its interval, new errors, p95 delta,
/// and the criteria still open when inconclusive.
fn line(report: &VerdictReport) -> String {
    let d = &report.divergence;
    let p95 = match report.latency.p95_shift {
        Some(shift) if report.compared > 0 => signed_pct(shift.observed),
        _ => "—".to_owned(),
    };
    // The verdict first: it survives a cut to the terminal's width.
    let mut line = format!(
        "{} · {} samples, {} compared · diverged {} [{}] · new errors {} · p95 {p95}",
        paint(style::decision(report.verdict), report.verdict.as_str()),
        report.samples,
        report.compared,
        pct(d.rate),
        interval(d.lower, d.upper),
        report.new_errors.count,
    );
    if report.verdict == Decision::Inconclusive {
        let open: Vec<&str> =
            report.criteria.iter().filter(|c| c.status == Decision::Inconclusive).map(|c| c.name.as_str()).collect();
        if !open.is_empty() {
            line.push_str(&paint(DIM, format!(" (waiting on {})", open.join(", "))));
        }
    }
    line
}

/// The progress line on stderr.
#[derive(Debug)]
struct Progress {
    tty: bool,
    /// The last line printed, without its time, to print only changes off a terminal.
    last: Option<String>,
    /// Visible width of the line being rewritten on a terminal; 0 when none is open.
    open: usize,
}

impl Progress {
    fn new(tty: bool) -> Self {
        Self { tty, last: None, open: 0 }
    }

    fn report(&mut self, elapsed: Duration, line: &str) {
        let mut text = format!("[{}] {line}", clock(elapsed));
        if self.tty {
            // A line that wraps cannot be rewritten in place: cut it to the terminal (plain,
            // since a cut could fall inside a style).
            let columns = terminal_size::terminal_size_of(std::io::stderr()).map_or(80, |(w, _)| usize::from(w.0));
            let plain = anstream::adapter::strip_str(&text).to_string();
            let mut width = plain.chars().count();
            if width >= columns {
                text = plain.chars().take(columns.saturating_sub(2)).chain(['…']).collect();
                width = columns.saturating_sub(1);
            }
            // Spaces over what is left of a longer previous line; no escape codes, so this
            // holds with NO_COLOR too.
            let blank = " ".repeat(self.open.saturating_sub(width));
            anstream::eprint!("\r{text}{blank}");
            let _ = std::io::stderr().flush();
            self.open = width;
        } else if self.last.as_deref() != Some(line) {
            anstream::eprintln!("{text}");
        }
        self.last = Some(line.to_owned());
    }

    fn error(&mut self, elapsed: Duration, error: &ApiError) {
        self.finish();
        anstream::eprintln!("[{}] {}: {error}", clock(elapsed), paint(WARN, "retrying"));
        self.last = None;
    }

    /// Ends a line being rewritten, so what follows starts on its own line.
    fn finish(&mut self) {
        if self.open > 0 {
            anstream::eprintln!();
            self.open = 0;
        }
    }
}

/// `m:ss` since the gate started.
fn clock(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    format!("{}:{:02}", secs / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reads_minutes_and_seconds() {
        assert_eq!(clock(Duration::from_millis(12_400)), "0:12");
        assert_eq!(clock(Duration::from_secs(905)), "15:05");
    }
}
