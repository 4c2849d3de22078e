//! Retrieval-style pairs (`anchor,positive` or `anchor,positive,negative`): a text and one that
//! should be found for it, optionally with a hard negative.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::csv_file::{read_columns, read_header};

pub const ANCHOR: &str = "anchor";
pub const POSITIVE: &str = "positive";
pub const NEGATIVE: &str = "negative";

#[derive(Debug, Clone)]
pub struct TextPairs {
    pub path: PathBuf,
    pub anchors: Vec<String>,
    pub positives: Vec<String>,
    /// The hard negatives, when the file has a `negative` column.
    pub negatives: Option<Vec<String>>,
    /// 1-based line of each row in the file, for error messages.
    pub lines: Vec<u64>,
}

impl TextPairs {
    /// Reads `anchor`, `positive` and, when the header has it, `negative`; no text may be empty.
    pub fn read(path: &Path) -> Result<Self> {
        let header = read_header(path)?;
        refuse_other_negative_columns(path, &header)?;
        let with_negative = header.iter().any(|h| h == NEGATIVE);
        let columns: &[&str] = if with_negative { &[ANCHOR, POSITIVE, NEGATIVE] } else { &[ANCHOR, POSITIVE] };
        let rows = read_columns(path, columns)?;
        if rows.is_empty() {
            bail!("{}: no data rows, only a header", path.display());
        }
        let mut pairs = Self {
            path: path.to_path_buf(),
            anchors: Vec::new(),
            positives: Vec::new(),
            negatives: with_negative.then(Vec::new),
            lines: Vec::new(),
        };
        for row in rows {
            for (text, column) in row.fields.iter().zip(columns) {
                if text.trim().is_empty() {
                    bail!("{}:{}: empty text in column '{column}'", path.display(), row.line);
                }
            }
            let mut fields = row.fields.into_iter();
            pairs.anchors.push(fields.next().expect("asked for"));
            pairs.positives.push(fields.next().expect("asked for"));
            if let Some(negatives) = &mut pairs.negatives {
                negatives.push(fields.next().expect("asked for"));
            }
            pairs.lines.push(row.line);
        }
        Ok(pairs)
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Each column's name and texts: anchors, positives, and negatives when there are any.
    pub fn columns(&self) -> impl Iterator<Item = (&'static str, &[String])> {
        [(ANCHOR, Some(&self.anchors)), (POSITIVE, Some(&self.positives)), (NEGATIVE, self.negatives.as_ref())]
            .into_iter()
            .filter_map(|(name, texts)| texts.map(|t| (name, t.as_slice())))
    }
}

/// Refuses columns that look like more hard negatives (`negative_1`, `hard_negative`,
/// `Negative`), as sentence-transformers reads every column after the positive: read as
/// other data, they would be left out of training and of the candidates `eval` searches.
fn refuse_other_negative_columns(path: &Path, header: &[String]) -> Result<()> {
    let looks_negative = |name: &str| {
        let lower = name.to_lowercase();
        let numbered = |prefix: &str| {
            lower.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        };
        let negative = lower == NEGATIVE || lower == "negatives" || numbered("negative_") || numbered("negative");
        let hard = ["hard_negative", "hard_negatives"].contains(&lower.as_str()) || numbered("hard_negative_");
        name != NEGATIVE && (negative || hard)
    };
    if let Some(column) = header.iter().find(|name| looks_negative(name)) {
        bail!(
            "{}: column '{column}' would not be read: a pairs file holds one hard negative per row, in a column named '{NEGATIVE}' (rows with several negatives: one row per negative, the anchor and positive repeated)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<TextPairs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        std::fs::write(&path, text).unwrap();
        TextPairs::read(&path)
    }

    #[test]
    fn reads_with_and_without_negatives() {
        let p = read("anchor,positive\nq,a\n").unwrap();
        assert!(p.negatives.is_none());
        let p = read("positive,negative,anchor\na,n,q\n").unwrap();
        assert_eq!([&p.anchors[0], &p.positives[0], &p.negatives.as_ref().unwrap()[0]], ["q", "a", "n"]);
    }

    #[test]
    fn columns_of_more_negatives_are_refused_not_left_out() {
        for header in [
            "anchor,positive,negative_1,negative_2",
            "anchor,positive,hard_negative",
            "anchor,positive,Negative",
            "anchor,positive,negatives",
            "anchor,positive,negative1",
        ] {
            let err = read(&format!("{header}\nq,a,n,m\n")).unwrap_err().to_string();
            assert!(err.contains("would not be read: a pairs file holds one hard negative per row"), "{header}: {err}");
        }
        assert!(read("anchor,positive,negative,note\nq,a,n,x\n").is_ok());
        assert!(read("anchor,positive,negative_source,negative_score\nq,a,n,x\n").is_ok());
    }

    #[test]
    fn empty_texts_name_line_and_column() {
        let err = read("anchor,positive\nq,a\n  ,b\n").unwrap_err().to_string();
        assert!(err.ends_with("p.csv:3: empty text in column 'anchor'"), "{err}");
        let err = read("anchor,positive\nq,\n").unwrap_err().to_string();
        assert!(err.ends_with("p.csv:2: empty text in column 'positive'"), "{err}");
    }
}
