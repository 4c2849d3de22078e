//! Sentence pairs with a graded similarity score (`sentence1,sentence2,score`), as in the STS
//! Benchmark. Scores may use any numeric range; at least two must differ.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::csv_file::read_columns;

pub const COLUMNS: [&str; 3] = ["sentence1", "sentence2", "score"];

#[derive(Debug, Clone)]
pub struct ScoredPairs {
    pub path: PathBuf,
    pub first: Vec<String>,
    pub second: Vec<String>,
    pub scores: Vec<f64>,
    /// 1-based line of each row in the file, for error messages.
    pub lines: Vec<u64>,
}

impl ScoredPairs {
    /// Reads the three columns; every row needs two non-empty texts and a finite score.
    pub fn read(path: &Path) -> Result<Self> {
        let rows = read_columns(path, &COLUMNS)?;
        if rows.is_empty() {
            bail!("{}: no data rows, only a header", path.display());
        }
        let mut pairs = Self {
            path: path.to_path_buf(),
            first: Vec::new(),
            second: Vec::new(),
            scores: Vec::new(),
            lines: Vec::new(),
        };
        for row in rows {
            let [first, second, score]: [String; 3] = row.fields.try_into().expect("three columns were asked for");
            for (text, column) in [(&first, COLUMNS[0]), (&second, COLUMNS[1])] {
                if text.trim().is_empty() {
                    bail!("{}:{}: empty text in column '{column}'", path.display(), row.line);
                }
            }
            let score_text = score.trim();
            if score_text.is_empty() {
                bail!("{}:{}: empty score in column 'score'", path.display(), row.line);
            }
            let value: f64 = match score_text.parse() {
                // Training computes in f32, where a larger score is infinite.
                Ok(v) if f64::is_finite(v) && v.abs() <= f32::MAX as f64 => v,
                Ok(v) if f64::is_finite(v) => bail!(
                    "{}:{}: score '{score_text}' in column 'score' is beyond what training's 32-bit numbers hold (about 3.4e38); rescale the scores (STS-B's are 0 to 5)",
                    path.display(),
                    row.line
                ),
                _ => {
                    let comma = score_text.replace(',', ".").parse::<f64>().is_ok_and(f64::is_finite);
                    bail!(
                        "{}:{}: score '{score_text}' in column 'score' is not a finite number{}",
                        path.display(),
                        row.line,
                        if comma { " (a decimal comma? write it with a point)" } else { "" }
                    )
                }
            };
            pairs.first.push(first);
            pairs.second.push(second);
            pairs.scores.push(value);
            pairs.lines.push(row.line);
        }
        let (low, high) = pairs.score_range();
        if pairs.scores.len() == 1 {
            bail!("{} has only 1 row; similarity needs several, with scores that differ", path.display());
        }
        if low == high {
            bail!(
                "{}: every score is {low}; similarity needs scores that differ (a correlation cannot be computed otherwise)",
                path.display()
            );
        }
        // Training reads scores as 32-bit floats, and evaluation takes scores that differ by
        // no more than their rounding for equal (`metrics::correlation::is_constant`).
        // Below 32-bit floats' range (1e-39 and less) they are all 0 to training.
        let one_as_f32 = pairs.scores.iter().all(|&score| score as f32 == low as f32);
        if crate::metrics::correlation::is_constant(&pairs.scores) || one_as_f32 {
            bail!(
                "{}: the scores, from {} to {}, differ only past 32-bit precision, where training and evaluation see them as one; subtract their common part, or rescale them (STS-B's are 0 to 5)",
                path.display(),
                readable(low),
                readable(high)
            );
        }
        if !((high - low) as f32).is_finite() {
            bail!(
                "{}: scores from {low:e} to {high:e} span more than a number can hold; rescale them (STS-B's are 0 to 5)",
                path.display()
            );
        }
        Ok(pairs)
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// (lowest, highest) score.
    pub fn score_range(&self) -> (f64, f64) {
        self.scores.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| (lo.min(s), hi.max(s)))
    }
}

/// A score as a message shows it: in scientific notation where the plain one would run to
/// hundreds of digits.
fn readable(score: f64) -> String {
    match score != 0.0 && !(1e-6..1e15).contains(&score.abs()) {
        true => format!("{score:e}"),
        false => score.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<ScoredPairs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        std::fs::write(&path, text).unwrap();
        ScoredPairs::read(&path)
    }

    #[test]
    fn reads_pairs_and_their_range() {
        let p = read("sentence1,sentence2,score\na,b,0.5\nc,d,4\n").unwrap();
        assert_eq!((p.first[1].as_str(), p.second[1].as_str(), p.scores[1]), ("c", "d", 4.0));
        assert_eq!(p.score_range(), (0.5, 4.0));
    }

    #[test]
    fn bad_scores_and_texts_name_their_line() {
        let err = read("sentence1,sentence2,score\na,b,1\nc,d,high\n").unwrap_err().to_string();
        assert!(err.ends_with("p.csv:3: score 'high' in column 'score' is not a finite number"), "{err}");
        let err = read("sentence1,sentence2,score\na,b,\n").unwrap_err().to_string();
        assert!(err.ends_with("p.csv:2: empty score in column 'score'"), "{err}");
        let err = read("sentence1,sentence2,score\na, ,1\n").unwrap_err().to_string();
        assert!(err.ends_with("p.csv:2: empty text in column 'sentence2'"), "{err}");
        let err = read("sentence1,sentence2,score\na,b,NaN\n").unwrap_err().to_string();
        assert!(err.contains("is not a finite number"), "{err}");
        let err = read("sentence1,sentence2,score\na,b,2\nc,d,2\n").unwrap_err().to_string();
        assert!(err.contains("every score is 2"), "{err}");
        let err = read("sentence1,sentence2,score\na,b,10000.001\nc,d,10000.002\n").unwrap_err().to_string();
        assert!(err.ends_with("p.csv: the scores, from 10000.001 to 10000.002, differ only past 32-bit precision, where training and evaluation see them as one; subtract their common part, or rescale them (STS-B's are 0 to 5)"), "{err}");
        let err = read("sentence1,sentence2,score\na,b,1e-320\nc,d,2e-320\n").unwrap_err().to_string();
        assert!(err.ends_with("p.csv: the scores, from 1e-320 to 2e-320, differ only past 32-bit precision, where training and evaluation see them as one; subtract their common part, or rescale them (STS-B's are 0 to 5)"), "{err}");
        assert!(read("sentence1,sentence2,score\na,b,10000.5\nc,d,10001\n").is_ok(), "scores f32 tells apart");
        let err = read("sentence1,sentence2,score\na,b,2\nc,d,1e39\n").unwrap_err().to_string();
        assert!(err.ends_with("p.csv:3: score '1e39' in column 'score' is beyond what training's 32-bit numbers hold (about 3.4e38); rescale the scores (STS-B's are 0 to 5)"), "{err}");
        let err = read("sentence1,sentence2,score\na,b,3e38\nc,d,-3e38\n").unwrap_err().to_string();
        assert!(err.contains("span more than a number can hold"), "{err}");
    }
}
