//! Aligned columns. Widths are measured on the text, then the padded text is styled, so
//! colour codes never shift a column.

use anstyle::Style;

use crate::style::{self, PLAIN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// One cell: its text and how to paint it.
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    style: Style,
}

impl Cell {
    pub fn styled(style: Style, text: impl Into<String>) -> Self {
        Self { text: text.into(), style }
    }
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Self {
        Self::styled(PLAIN, text)
    }
}

#[derive(Debug)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self { columns: columns.iter().map(|(name, align)| ((*name).to_owned(), *align)).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, each line starting with `indent`; the last column is not padded, so no
    /// line ends in spaces. Header names that are empty give no header line.
    pub fn render(&self, indent: &str) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(name, _)| width(name)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(width(&cell.text));
                }
            }
        }
        let mut out = String::new();
        if self.columns.iter().any(|(name, _)| !name.is_empty()) {
            let header: Vec<Cell> =
                self.columns.iter().map(|(name, _)| Cell::styled(style::HEADER, name.clone())).collect();
            self.line(&mut out, indent, &header, &widths);
        }
        for row in &self.rows {
            self.line(&mut out, indent, row, &widths);
        }
        out
    }

    fn line(&self, out: &mut String, indent: &str, cells: &[Cell], widths: &[usize]) {
        out.push_str(indent);
        let last = cells.len().min(self.columns.len()).saturating_sub(1);
        for (i, (cell, (_, align))) in cells.iter().zip(&self.columns).enumerate() {
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(width(&cell.text));
            let padded = match align {
                Align::Right => format!("{}{}", " ".repeat(pad), cell.text),
                Align::Left if i == last => cell.text.clone(),
                Align::Left => format!("{}{}", cell.text, " ".repeat(pad)),
            };
            out.push_str(&style::paint(cell.style, padded));
            if i != last {
                out.push_str("  ");
            }
        }
        out.push('\n');
    }
}

/// Display width, counting one column per character (the text here is ASCII and a few
/// single-width symbols).
fn width(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_whatever_the_styles() {
        let mut table = Table::new(&[("NAME", Align::Left), ("N", Align::Right), ("NOTE", Align::Left)]);
        table.row(vec![Cell::styled(style::FAIL, "divergence"), "30".into(), "bad".into()]);
        table.row(vec!["samples".into(), "400".into(), "ok".into()]);
        let plain: String = anstream::adapter::strip_str(&table.render("  ")).to_string();
        assert_eq!(plain, "  NAME          N  NOTE\n  divergence   30  bad\n  samples     400  ok\n");
    }
}
