//! Line diff of text bodies with `similar`, summarised within fixed bounds so one large
//! page cannot flood the differences table.

use similar::{ChangeTag, TextDiff};

use super::{DiffKind, Difference};

/// Changed lines kept per side.
const MAX_LINES: usize = 20;
/// Bytes kept per side, across those lines.
const MAX_BYTES: usize = 2048;

/// One difference at `body` holding the removed lines (primary) and added lines (shadow),
/// or nothing when the texts are equal line for line.
pub(super) fn diff(primary: &str, shadow: &str) -> Option<Difference> {
    let diff = TextDiff::from_lines(primary, shadow);
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
