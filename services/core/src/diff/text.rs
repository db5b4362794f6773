//! Line diff of text bodies with `similar`, summarised within fixed bounds so one large
//! page cannot flood the differences table, and given a deadline so one cannot hold up the
//! correlator: past it `similar` settles for a coarser diff, which is still reported, with
//! a `diff_timeout` difference beside it.

use std::time::{Duration, Instant};

use similar::{ChangeTag, TextDiff};

use super::limits::{Budget, Found};
use super::{DiffKind, Difference};

/// Changed lines kept per side.
const MAX_LINES: usize = 20;
/// Bytes kept per side, across those lines.
const MAX_BYTES: usize = 2048;

/// Adds one difference at `body` holding the removed lines (primary) and added lines
/// (shadow), or nothing when the texts are equal line for line.
pub(super) fn diff(primary: &str, shadow: &str, timeout: Duration, out: &mut Found) {
    let started = Instant::now();
    let diff = TextDiff::configure().timeout(timeout).diff_lines(primary, shadow);
    if started.elapsed() >= timeout {
        out.timed_out(Budget::Time);
    }
    out.extend(summary(&diff));
}

fn summary<'a>(diff: &TextDiff<'a, 'a, 'a, str>) -> Option<Difference> {
    let (mut removed, mut added) = (Summary::default(), Summary::default());
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Delete => removed.push(change.value()),
            ChangeTag::Insert => added.push(change.value()),
            ChangeTag::Equal => {}
        }
    }
    if removed.lines == 0 && added.lines == 0 {
        return None;
    }
    Some(Difference {
        kind: DiffKind::TextLines,
        path: "body".to_owned(),
        primary: Some(removed.finish()),
        shadow: Some(added.finish()),
    })
}

#[derive(Default)]
struct Summary {
    text: String,
    lines: usize,
}

impl Summary {
    fn push(&mut self, line: &str) {
        self.lines += 1;
        if self.lines <= MAX_LINES && self.text.len() < MAX_BYTES {
            let room = MAX_BYTES - self.text.len();
            let mut end = line.len().min(room);
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(&line[..end]);
        }
    }

    fn finish(mut self) -> String {
        let shown = self.lines.min(MAX_LINES);
        if self.lines > shown {
            self.text.push_str(&format!("… {} more line(s)\n", self.lines - shown));
        }
        self.text
    }
}
