//! `shadowctl record`: a window of production traffic from the brokers into an Avro file
//! (`shadowdiff_replay::recording`), and a summary of what was left out and why.

use std::fmt::Write as _;
use std::time::SystemTime;

use shadowdiff_replay::window::format_ms;
use shadowdiff_replay::{ReadOptions, Readout, Window, read_window, recording};

use crate::cli::{RecordArgs, WindowArgs};
use crate::style::{HEADER, WARN, paint};
use crate::{CtlError, brokers, exit, out};

/// How many request ids without a primary response the summary names.
const UNANSWERED_SHOWN: usize = 5;

pub async fn run(args: &RecordArgs) -> Result<u8, CtlError> {
    let window = window(&args.window, SystemTime::now())?;
    let brokers = brokers::load(args.config.as_deref())?;
    let options = ReadOptions { grace: args.window.grace, ..ReadOptions::default() };
    let readout = read_window(&brokers.kafka, &brokers.topics, &window, &options).await?;
    let written = recording::write(&args.output, &window, &readout.exchanges)?;
    out(&summary(&window, &readout, written, &args.output.display().to_string()));
    Ok(exit::OK)
}

/// The window the flags describe, `--from` and `--to` read against the same `now`.
pub fn window(args: &WindowArgs, now: SystemTime) -> Result<Window, CtlError> {
    let (Some(from), Some(to)) = (&args.from, &args.to) else {
        return Err(CtlError::Input {
            path: "--from, --to".to_owned(),
            reason: "a window needs both: an RFC 3339 time, a duration ago (2h) or now".to_owned(),
        });
    };
    Ok(Window::parse(from, to, now)?
        .with_routes(args.routes.iter().cloned())
        .with_methods(&args.methods)?
        .with_sample_percent(args.sample_percent)?
        .with_limit(args.limit)?)
}

pub fn summary(window: &Window, readout: &Readout, written: u64, path: &str) -> String {
    let report = &readout.report;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} into {path}, from [{}, {})",
        paint(HEADER, format!("recorded {written} exchanges")),
        format_ms(window.from_ms()),
        format_ms(window.to_ms()),
    );
    let _ = writeln!(
        text,
        "  read {} request and {} response records; {} requests in the window",
        report.requests_read, report.responses_read, report.in_window
    );
    let _ = writeln!(
        text,
        "  left out: {} by --route/--method, {} by --sample-percent, {} beyond --limit {}, {} repeated request ids",
        report.filtered,
        report.sampled_out,
        report.over_limit,
        window.limit(),
        report.duplicates
    );
    let unanswered = readout.unanswered.len();
    let style = if unanswered > 0 { WARN } else { HEADER };
    let _ =
        write!(text, "  {}", paint(style, format!("requests without a primary response, not recorded: {unanswered}")));
    if unanswered > 0 {
        let ids: Vec<&str> = readout.unanswered.iter().take(UNANSWERED_SHOWN).map(|r| r.request_id.as_str()).collect();
        let more = if unanswered > UNANSWERED_SHOWN { ", …" } else { "" };
        let _ = write!(text, " ({}{more})", ids.join(", "));
    }
    text.push('\n');
    let skipped = report.skipped_total();
    let style = if skipped > 0 { WARN } else { HEADER };
    let _ = writeln!(text, "  {}", paint(style, format!("records skipped as unreadable: {skipped}")));
    for s in &report.skipped {
        let _ = writeln!(
            text,
            "    {} {}: {} (first at partition {} offset {}: {})",
            s.topic.as_str(),
            s.reason.as_str(),
            s.count,
            s.first_partition,
            s.first_offset,
            s.first_error
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use clap::Parser;
    use shadowdiff_core::CapturedBody;
    use shadowdiff_replay::{ReadReport, SkipReason, Skipped, Topic};

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> RecordArgs {
        let mut line = vec!["shadowctl", "record", "--from", "2h", "--to", "1h", "-o", "w.avro"];
        line.extend(extra);
        match Cli::try_parse_from(line).unwrap().command {
            Command::Record(args) => args,
            other => panic!("not record: {other:?}"),
        }
    }

    #[test]
    fn the_flags_make_the_window() {
        let now = UNIX_EPOCH + Duration::from_secs(100_000);
        let w =
            window(&args(&["--route", "/a", "--route", "/b", "--method", "get", "--sample-percent", "25"]).window, now)
                .unwrap();
        assert_eq!((w.from_ms(), w.to_ms()), (100_000_000 - 7_200_000, 100_000_000 - 3_600_000));
        assert_eq!(
            (w.routes(), w.methods(), w.sample_percent()),
            (&["/a".to_owned(), "/b".to_owned()][..], &["GET".to_owned()][..], 25.0)
        );
        assert_eq!(w.limit(), shadowdiff_replay::DEFAULT_LIMIT);
        for bad in [&["--sample-percent", "101"][..], &["--limit", "0"], &["--method", "G T"]] {
            let error = window(&args(bad).window, now).unwrap_err();
            assert_eq!(error.exit_code(), exit::REFUSED, "{bad:?}: {error}");
        }
        let mut backwards = args(&[]);
        backwards.window.to = Some("3h".into());
        assert!(window(&backwards.window, now).unwrap_err().to_string().contains("the start must come first"));
    }

    #[test]
    fn the_summary_names_what_was_left_out() {
        let request = |id: &str| shadowdiff_core::RequestEvent {
            request_id: id.into(),
            timestamp_ms: 0,
            tap_id: "t".into(),
            method: "GET".into(),
            scheme: "http".into(),
            authority: "a".into(),
            path: "/".into(),
            query: None,
            route_template: None,
            headers: Vec::new(),
            body: CapturedBody::empty(),
            run: String::new(),
        };
        let readout = Readout {
            exchanges: Vec::new(),
            unanswered: (0..7).map(|i| request(&format!("id-{i}"))).collect(),
            report: ReadReport {
                requests_read: 40,
                responses_read: 30,
                in_window: 20,
                filtered: 3,
                sampled_out: 2,
                over_limit: 1,
                duplicates: 0,
                skipped: vec![Skipped {
                    topic: Topic::Requests,
                    reason: SkipReason::Undecodable("bad_marker"),
                    count: 2,
                    first_partition: 1,
                    first_offset: 17,
                    first_error: "no marker".into(),
                }],
            },
        };
        let window = Window::new(0, 1_000).unwrap();
        let text = anstream::adapter::strip_str(&summary(&window, &readout, 7, "w.avro")).to_string();
        for expected in [
            "recorded 7 exchanges into w.avro, from [1970-01-01T00:00:00.000Z, 1970-01-01T00:00:01.000Z)",
            "read 40 request and 30 response records; 20 requests in the window",
            "left out: 3 by --route/--method, 2 by --sample-percent, 1 beyond --limit 1000000, 0 repeated request ids",
            "requests without a primary response, not recorded: 7 (id-0, id-1, id-2, id-3, id-4, …)",
            "records skipped as unreadable: 2",
            "requests bad_marker: 2 (first at partition 1 offset 17: no marker)",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
    }
}
