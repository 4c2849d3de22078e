//! Aligned plain-text tables for the terminal (and for pasting into markdown-less READMEs).

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    align: Vec<Align>,
}

impl Table {
    /// A table with these column titles; the first column is left-aligned, the rest right
    /// (labels then numbers), which [`Table::align`] can change.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        // A confusion matrix's header holds class labels, which a quoted CSV field may break.
        let header: Vec<String> = header.into_iter().map(|h| one_line(h.into())).collect();
        let align = (0..header.len()).map(|i| if i == 0 { Align::Left } else { Align::Right }).collect();
        Self { header, rows: Vec::new(), align }
    }

    pub fn align(mut self, column: usize, align: Align) -> Self {
        if let Some(a) = self.align.get_mut(column) {
            *a = align;
        }
        self
    }

    /// A row; a line break or tab inside a cell (a quoted CSV field's) shows as a space, so
    /// the row stays one line.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(|cell| one_line(cell.into())).collect());
    }

    /// An empty line between row groups (e.g. before the averages of a report).
    pub fn separator(&mut self) {
        self.rows.push(Vec::new());
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let width = |s: &str| s.width();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = w - width(cell);
                if i > 0 {
                    text.push_str("  ");
                }
                match self.align[i] {
                    Align::Left => {
                        text.push_str(cell);
                        text.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        text.push_str(&" ".repeat(pad));
                        text.push_str(cell);
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.header);
        for row in &self.rows {
            line(row);
        }
        out
    }
}

/// `text` with its control characters (line breaks, tabs) as spaces.
pub fn one_line(text: String) -> String {
    match text.contains(char::is_control) {
        true => text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect(),
        false => text,
    }
}

/// Shortens `text` to at most `max` terminal columns, marking the cut with `…`.
pub fn ellipsize(text: &str, max: usize) -> String {
    if text.width() <= max {
        return text.to_string();
    }
    let mut short = String::new();
    let mut columns = 0;
    for c in text.chars() {
        columns += c.width().unwrap_or(0);
        if columns > max.saturating_sub(1) {
            break;
        }
        short.push(c);
    }
    short.push('…');
    short
}

/// Shortens `text` to at most `max` terminal columns by cutting its middle (`…`): labels
/// that share a long prefix (`intent_billing_refund`, `intent_billing_invoice`) keep the ends
/// that tell them apart.
pub fn ellipsize_middle(text: &str, max: usize) -> String {
    if text.width() <= max {
        return text.to_string();
    }
    let tail_columns = max.saturating_sub(1) / 2;
    let head = ellipsize(text, max - tail_columns);
    let mut tail: Vec<char> = Vec::new();
    let mut columns = 0;
    for c in text.chars().rev() {
        columns += c.width().unwrap_or(0);
        if columns > tail_columns {
            break;
        }
        tail.push(c);
    }
    head + &tail.into_iter().rev().collect::<String>()
}

/// The first `shown` of `items`, comma-separated, and how many more: "a, b and 3 more".
pub fn first_and_more<S: AsRef<str>>(items: &[S], shown: usize) -> String {
    let listed = items[..items.len().min(shown)].iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(shown) {
        0 => listed,
        more => format!("{listed} and {more} more"),
    }
}

/// `n` and `noun`, plural unless `n` is 1: "1 optimizer step", "4 optimizer steps".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_singular_only_for_one() {
        assert_eq!(count(1, "optimizer step"), "1 optimizer step");
        assert_eq!(count(0, "step"), "0 steps");
        assert_eq!(count(3, "task"), "3 tasks");
    }

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(["label", "f1"]);
        t.row(["a", "0.50"]);
        t.row(["longer", "1.00"]);
        assert_eq!(t.render(), "label     f1\na       0.50\nlonger  1.00\n");
    }

    #[test]
    fn a_line_break_in_a_cell_keeps_the_row_on_one_line() {
        let mut t = Table::new(["text", "n"]);
        t.row(["two\nlines\tand a tab", "1"]);
        assert_eq!(t.render(), format!("text{}n\ntwo lines and a tab  1\n", " ".repeat(17)));
    }

    #[test]
    fn wide_characters_take_two_columns() {
        let mut t = Table::new(["text", "n"]);
        t.row(["日本", "1"]);
        t.row(["abcd", "2"]);
        assert_eq!(t.render(), "text  n\n日本  1\nabcd  2\n");
    }

    #[test]
    fn ellipsize_middle_keeps_both_ends() {
        let refund = "intent_category_for_customer_support_requests_about_billing_refund";
        let short = ellipsize_middle(refund, 40);
        assert_eq!(short.chars().count(), 40);
        assert!(short.starts_with("intent_category_for") && short.ends_with("billing_refund"), "{short}");
        assert_eq!(ellipsize_middle("abc", 4), "abc");
        let mut header = Table::new(["two\nlines", "b"]);
        header.row(["x".to_string(), "y".to_string()]);
        let text = header.render();
        assert!(text.starts_with("two lines") && !text.lines().any(|l| l.starts_with("lines")), "{text}");
    }

    #[test]
    fn ellipsize_marks_cuts() {
        assert_eq!(ellipsize("abcdef", 4), "abc…");
        assert_eq!(ellipsize("abc", 4), "abc");
        assert_eq!(ellipsize("日本語です", 6), "日本…");
    }
}
