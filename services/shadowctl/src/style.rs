//! Colours and emphasis. Output is written with ANSI styles through `anstream`, which drops
//! them when the stream is not a terminal or `NO_COLOR` is set.

use anstyle::{AnsiColor, Style};
use shadowdiff_verdict::Decision;

pub const HEADER: Style = Style::new().bold();
pub const DIM: Style = Style::new().dimmed();
pub const PASS: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green))).bold();
pub const FAIL: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red))).bold();
pub const WARN: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow))).bold();
pub const REMOVED: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
pub const ADDED: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));
pub const HUNK: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Cyan)));
pub const PLAIN: Style = Style::new();

/// `text` in `style`.
pub fn paint(style: Style, text: impl std::fmt::Display) -> String {
    format!("{style}{text}{style:#}")
}

pub const fn decision(decision: Decision) -> Style {
    match decision {
        Decision::Pass => PASS,
        Decision::Inconclusive => WARN,
        Decision::Fail => FAIL,
    }
}
