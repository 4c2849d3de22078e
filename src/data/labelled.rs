//! Labelled CSV files (a text column and a label column) and the label set of a task.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::csv_file::read_columns;

/// The rows of one labelled CSV file.
#[derive(Debug, Clone)]
pub struct LabelledData {
    pub path: PathBuf,
    pub texts: Vec<String>,
    pub labels: Vec<String>,
    /// 1-based line of each row in the file, for error messages.
    pub lines: Vec<u64>,
}

impl LabelledData {
    /// Reads `text_column` and `label_column`; every row needs a non-empty text and label.
    pub fn read(path: &Path, text_column: &str, label_column: &str) -> Result<Self> {
        let rows = read_columns(path, &[text_column, label_column])?;
        if rows.is_empty() {
            bail!("{}: no data rows, only a header", path.display());
        }
        let mut data = Self { path: path.to_path_buf(), texts: Vec::new(), labels: Vec::new(), lines: Vec::new() };
        for row in rows {
            let [text, label]: [String; 2] = row.fields.try_into().expect("two columns were asked for");
            if text.trim().is_empty() {
                bail!("{}:{}: empty text in column '{text_column}'", path.display(), row.line);
            }
            let label = label.trim().to_string();
            if label.is_empty() {
                bail!("{}:{}: empty label in column '{label_column}'", path.display(), row.line);
            }
            data.texts.push(text);
            data.labels.push(label);
            data.lines.push(row.line);
        }
        Ok(data)
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Class ids of every row under `labels`, with the rows they come from. Labels the set
    /// does not know are an error that lists them with their first line, unless `unknown` is
    /// [`UnknownLabelPolicy::Skip`]: then those rows are left out and reported in the
    /// returned [`UnknownLabels`].
    pub fn class_ids(
        &self,
        labels: &LabelSet,
        unknown_labels: UnknownLabelPolicy,
    ) -> Result<(Vec<usize>, Vec<usize>, UnknownLabels)> {
        let mut ids = Vec::with_capacity(self.len());
        let mut kept_rows = Vec::with_capacity(self.len());
        let mut unknown = UnknownLabels::default();
        for (row, label) in self.labels.iter().enumerate() {
            match labels.id(label) {
                Some(id) => {
                    ids.push(id);
                    kept_rows.push(row);
                }
                None => unknown.add(label, self.lines[row]),
            }
        }
        if kept_rows.is_empty() && unknown.labels.len() > LABELS_NAMED {
            bail!(
                "{}: none of its {} distinct labels is a known one ({}): is its label column the right one? (--label-column names another)",
                self.path.display(),
                unknown.labels.len(),
                quoted_list(labels.names(), LABELS_NAMED)
            );
        }
        if !unknown.is_empty() && unknown_labels == UnknownLabelPolicy::Error {
            bail!(
                "{}: {} row(s) have labels the model was not trained on: {} (known: {}; --unknown-labels skip leaves such rows out){}",
                self.path.display(),
                unknown.rows,
                unknown.describe(),
                quoted_list(labels.names(), LABELS_NAMED),
                unknown.written_another_way(labels)
            );
        }
        Ok((ids, kept_rows, unknown))
    }
}

/// What to do with rows whose label the model does not know (`--unknown-labels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownLabelPolicy {
    /// List them and stop.
    Error,
    /// Leave the rows out and count them in the report.
    Skip,
}

crate::value_names!(UnknownLabelPolicy, "--unknown-labels", [Error => "error", Skip => "skip"]);

/// Labels found in data that the model does not know, with counts.
#[derive(Debug, Clone, Default)]
pub struct UnknownLabels {
    /// (label, first line, count), in order of first appearance.
    pub labels: Vec<(String, u64, usize)>,
    pub rows: usize,
    /// Each label's place in `labels`.
    index: HashMap<String, usize>,
}

/// How many unknown labels a message names: a wrong `--label-column` makes every row's text
/// one, and a message of thousands would bury the line that says so.
pub const LABELS_NAMED: usize = 10;

impl UnknownLabels {
    fn add(&mut self, label: &str, line: u64) {
        self.rows += 1;
        match self.index.get(label) {
            Some(&at) => self.labels[at].2 += 1,
            None => {
                self.index.insert(label.to_string(), self.labels.len());
                self.labels.push((label.to_string(), line, 1));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// A hint for unknown labels that are a known label's number written another way (`1.0`
    /// for `1`, as pandas writes a column that once held a NaN): `""` when none is, else
    /// `"; '1.0' is label '1' written another way, ..."` naming the first few.
    pub fn written_another_way(&self, labels: &LabelSet) -> String {
        let known: Vec<(f64, &str)> = labels
            .names()
            .iter()
            .filter_map(|name| name.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| (v, name.as_str())))
            .collect();
        let number_twin = |label: &str| -> Option<String> {
            let value = label.parse::<f64>().ok()?;
            let (_, name) = known.iter().find(|(v, _)| *v == value)?;
            Some(format!("{} is label {} written another way", quoted(label), quoted(name)))
        };
        let case_twin = |label: &str| -> Option<String> {
            let name = labels.names().iter().find(|name| name.to_lowercase() == label.to_lowercase())?;
            Some(format!("{} is label {} in another case", quoted(label), quoted(name)))
        };
        let twins: Vec<String> = self
            .labels
            .iter()
            .filter_map(|(label, _, _)| number_twin(label).or_else(|| case_twin(label)))
            .take(3)
            .collect();
        match twins.is_empty() {
            true => String::new(),
            false => format!("; {} (write the labels alike in both files)", twins.join(", ")),
        }
    }

    /// `'x' (3 rows, first at line 7), 'y' (1 row, first at line 9)`, the first
    /// [`LABELS_NAMED`] of them and how many more.
    pub fn describe(&self) -> String {
        let named = self
            .labels
            .iter()
            .take(LABELS_NAMED)
            .map(|(label, line, count)| {
                format!("{} ({count} row{}, first at line {line})", quoted(label), if *count == 1 { "" } else { "s" })
            })
            .collect::<Vec<_>>()
            .join(", ");
        match self.labels.len().saturating_sub(LABELS_NAMED) {
            0 => named,
            1 => format!("{named} and 1 more label"),
            more => format!("{named} and {more} more labels"),
        }
    }
}

/// Labels a message names in full: longer ones are cut (a wrong `--label-column` can make
/// a whole review one).
const LABEL_CHARS_SHOWN: usize = 40;

/// `label` quoted for a message on one line: control characters escaped (a newline inside
/// quotes of the CSV file is a label's), and cut after [`LABEL_CHARS_SHOWN`] characters.
pub fn quoted(label: &str) -> String {
    let escaped: String = label
        .chars()
        .take(LABEL_CHARS_SHOWN)
        .map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() })
        .collect();
    match label.chars().count() > LABEL_CHARS_SHOWN {
        true => format!("'{escaped}...'"),
        false => format!("'{escaped}'"),
    }
}

/// `labels` quoted for a message: the first `shown`, and how many more.
pub fn quoted_list<S: AsRef<str>>(labels: &[S], shown: usize) -> String {
    let quoted: Vec<String> = labels.iter().map(|l| quoted(l.as_ref())).collect();
    crate::report::table::first_and_more(&quoted, shown)
}

/// A task's class names, sorted so ids are stable across runs and machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSet {
    names: Vec<String>,
    /// Each name's id.
    ids: HashMap<String, usize>,
}

impl LabelSet {
    /// The sorted distinct labels of the training data: as numbers when every label is one
    /// (`2` before `10`, as scikit-learn's classes of a numeric column), else as text.
    pub fn from_labels<S: AsRef<str>>(labels: &[S]) -> Self {
        let distinct: BTreeSet<&str> = labels.iter().map(AsRef::as_ref).collect();
        let mut names: Vec<&str> = distinct.into_iter().collect();
        if let Some(values) = numbers(&names) {
            let mut by_value: Vec<(f64, &str)> = values.into_iter().zip(names).collect();
            // Integers beyond 2^53 (ids) can share an f64: their exact values decide.
            by_value.sort_by(|a, b| a.0.total_cmp(&b.0).then(exact_order(a.1, b.1)).then(a.1.cmp(b.1)));
            names = by_value.into_iter().map(|(_, name)| name).collect();
        }
        Self::from_names(names.into_iter().map(str::to_string).collect())
    }

    /// A label with a fraction (`3.8`) when every label is a number: scores, which a
    /// classification task would learn as one class per distinct value.
    pub fn fractional_number(&self) -> Option<&str> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let values = numbers(&names)?;
        names.into_iter().zip(values).find(|(_, v)| v.fract() != 0.0).map(|(name, _)| name)
    }

    /// Two labels that are one number written two ways (`2` and `2.0`), when every label is
    /// a number: pandas and scikit-learn read them as one class, this task would see two.
    pub fn one_number_twice(&self) -> Option<(&str, &str)> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let values = numbers(&names)?;
        // Sorted by value, so equal values are neighbours; distinct integers are two numbers
        // even where f64 cannot tell them apart (pandas reads them as int64).
        let distinct_integers = |a: &str, b: &str| matches!((integer(a), integer(b)), (Some(x), Some(y)) if x != y);
        (1..names.len())
            .find(|&i| values[i] == values[i - 1] && !distinct_integers(names[i - 1], names[i]))
            .map(|i| (names[i - 1], names[i]))
    }

    /// Two labels that differ only in case (`Positive` and `positive`): pandas and
    /// scikit-learn would see two classes too, but it is most often a typing slip.
    pub fn equal_but_for_case(&self) -> Option<(&str, &str)> {
        let mut lowered: Vec<(String, &str)> = self.names.iter().map(|n| (n.to_lowercase(), n.as_str())).collect();
        lowered.sort();
        lowered.windows(2).find(|w| w[0].0 == w[1].0).map(|w| (w[0].1, w[1].1))
    }

    /// Labels as saved in a checkpoint (already in id order).
    pub fn from_names(names: Vec<String>) -> Self {
        let ids = names.iter().enumerate().map(|(id, name)| (name.clone(), id)).collect();
        Self { names, ids }
    }

    pub fn id(&self, label: &str) -> Option<usize> {
        self.ids.get(label).copied()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A label's value when it is written as an integer.
fn integer(name: &str) -> Option<i128> {
    name.parse().ok()
}

/// The order of two labels' exact values when both are integers (else `Equal`).
fn exact_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// The labels' values when every one is a finite number.
fn numbers(names: &[&str]) -> Option<Vec<f64>> {
    names.iter().map(|n| n.parse::<f64>().ok().filter(|v| v.is_finite())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A label in a message stays on one line and short.
    #[test]
    fn quoted_labels_escape_control_characters_and_are_cut() {
        assert_eq!(quoted("a\nb'c"), "'a\\nb'c'");
        assert_eq!(quoted(&"x".repeat(41)), format!("'{}...'", "x".repeat(40)));
        let many: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        assert_eq!(quoted_list(&many, LABELS_NAMED), "'0', '1', '2', '3', '4', '5', '6', '7', '8', '9' and 2 more");
    }

    #[test]
    fn unknown_labels_that_are_known_numbers_get_a_hint() {
        let labels = LabelSet::from_names(vec!["0".into(), "1".into(), "10".into()]);
        let mut unknown = UnknownLabels::default();
        for label in ["1.0", "cat", "10.00", "2"] {
            unknown.add(label, 2);
        }
        assert_eq!(
            unknown.written_another_way(&labels),
            "; '1.0' is label '1' written another way, '10.00' is label '10' written another way (write the labels alike in both files)"
        );
        let mut words = UnknownLabels::default();
        words.add("cat", 2);
        assert_eq!(words.written_another_way(&labels), "");
    }

    #[test]
    fn labels_in_another_case_are_named() {
        let labels = LabelSet::from_names(vec!["negative".into(), "positive".into()]);
        let mut unknown = UnknownLabels::default();
        unknown.add("Positive", 2);
        assert!(unknown.written_another_way(&labels).contains("'Positive' is label 'positive' in another case"));
        let both = LabelSet::from_labels(&["positive", "Positive", "negative"]);
        assert_eq!(both.equal_but_for_case(), Some(("Positive", "positive")));
        assert_eq!(labels.equal_but_for_case(), None);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn labels_are_sorted_and_stable() {
        let set = LabelSet::from_labels(&["pos", "neg", "pos", "neutral"]);
        assert_eq!(set.names(), &["neg", "neutral", "pos"]);
        assert_eq!(set.id("pos"), Some(2));
        assert_eq!(set.id("other"), None);
        let numbers = LabelSet::from_labels(&["10", "2", "1", "2", "-3"]);
        assert_eq!(numbers.names(), &["-3", "1", "2", "10"], "numbers sort as numbers");
        assert_eq!((numbers.id("10"), numbers.fractional_number()), (Some(3), None));
        let mixed = LabelSet::from_labels(&["10", "2", "two"]);
        assert_eq!(mixed.names(), &["10", "2", "two"], "else as text");
        assert_eq!(LabelSet::from_labels(&["0", "3.8", "4"]).fractional_number(), Some("3.8"));
        assert_eq!(LabelSet::from_labels(&["1", "2.0", "10", "2"]).one_number_twice(), Some(("2", "2.0")));
        assert_eq!(LabelSet::from_labels(&["1", "2", "two", "2.0"]).one_number_twice(), None);
        assert_eq!(numbers.one_number_twice(), None);
        assert_eq!(LabelSet::from_labels(&["nan", "1.5"]).fractional_number(), None);
        let ids = LabelSet::from_labels(&["9007199254740993", "9007199254740992", "7"]);
        assert_eq!(ids.names(), &["7", "9007199254740992", "9007199254740993"]);
        assert_eq!(ids.one_number_twice(), None, "integers beyond 2^53 that f64 cannot tell apart");
    }

    #[test]
    fn empty_text_and_label_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.csv", "text,label\nfine,pos\n  ,neg\n");
        let err = LabelledData::read(&p, "text", "label").unwrap_err().to_string();
        assert!(err.ends_with("a.csv:3: empty text in column 'text'"), "{err}");
        let p = write(dir.path(), "b.csv", "text,label\nfine,\n");
        let err = LabelledData::read(&p, "text", "label").unwrap_err().to_string();
        assert!(err.ends_with("b.csv:2: empty label in column 'label'"), "{err}");
        let p = write(dir.path(), "c.csv", "text,label\n");
        let err = LabelledData::read(&p, "text", "label").unwrap_err().to_string();
        assert!(err.contains("no data rows"), "{err}");
    }

    #[test]
    fn unknown_labels_are_listed_or_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.csv", "text,label\na,pos\nb,meh\nc,neg\nd,meh\n");
        let data = LabelledData::read(&p, "text", "label").unwrap();
        let set = LabelSet::from_names(vec!["neg".into(), "pos".into()]);
        let err = data.class_ids(&set, UnknownLabelPolicy::Error).unwrap_err().to_string();
        assert!(err.contains("'meh' (2 rows, first at line 3)"), "{err}");
        let (ids, rows, unknown) = data.class_ids(&set, UnknownLabelPolicy::Skip).unwrap();
        assert_eq!(ids, vec![1, 0]);
        assert_eq!(rows, vec![0, 2]);
        assert_eq!(unknown.rows, 2);
    }

    #[test]
    fn a_label_column_of_texts_is_named_in_a_short_message() {
        let dir = tempfile::tempdir().unwrap();
        let rows: String = (0..500).map(|i| format!("sentence {i},pos\n")).collect();
        let p = write(dir.path(), "e.csv", &format!("label,text\n{rows}"));
        let data = LabelledData::read(&p, "text", "label").unwrap();
        let set = LabelSet::from_names(vec!["neg".into(), "pos".into()]);
        let err = data.class_ids(&set, UnknownLabelPolicy::Skip).unwrap_err().to_string();
        assert!(
            err.contains("none of its 500 distinct labels is a known one ('neg', 'pos'): is its label column"),
            "{err}"
        );
        // A model of many classes names ten of them.
        let many = LabelSet::from_names((0..150).map(|i| format!("intent{i}")).collect());
        let err = data.class_ids(&many, UnknownLabelPolicy::Error).unwrap_err().to_string();
        assert!(err.contains("known one ('intent0', 'intent1', "), "{err}");
        assert!(err.contains("'intent9' and 140 more): is its label column"), "{err}");
        let mut unknown = UnknownLabels::default();
        (0..12).for_each(|i| unknown.add(&format!("l{i}"), i + 2));
        let described = unknown.describe();
        assert!(
            described.starts_with("'l0' (1 row, first at line 2), ")
                && described.ends_with("'l9' (1 row, first at line 11) and 2 more labels"),
            "{described}"
        );
    }
}
