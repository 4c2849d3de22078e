//! Predictions out: JSONL (`{"text", "label", "probability"}` per line) or CSV with the
//! same columns, in input order; optionally every class's probability and logit.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionFormat {
    Jsonl,
    Csv,
}

impl std::str::FromStr for PredictionFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "jsonl" | "json" => Self::Jsonl,
            "csv" => Self::Csv,
            other => bail!("unknown --format '{other}' (expected jsonl or csv)"),
        })
    }
}

impl PredictionFormat {
    /// `--format` if given, else the `--output` extension's format, else JSONL.
    pub fn choose(flag: Option<Self>, output: Option<&Path>) -> Result<Self> {
        super::format_for(flag, output, Self::Jsonl, "jsonl or csv")
    }
}

pub struct Prediction<'a> {
    pub text: &'a str,
    pub label: &'a str,
    pub probability: f32,
    /// Every class's (probability, logit), in label order, when asked for.
    pub scores: Option<Vec<(f32, f32)>>,
}

/// A JSON number holding an f32's shortest form (0.9292159, not 0.92921590805).
fn number(x: f32) -> Value {
    serde_json::from_str(&serde_json::to_string(&x).unwrap_or_default()).unwrap_or(Value::Null)
}

pub fn write_predictions(
    out: &mut dyn Write,
    format: PredictionFormat,
    labels: &[String],
    rows: &[Prediction],
) -> Result<()> {
    match format {
        PredictionFormat::Jsonl => {
            for row in rows {
                let mut line = Map::new();
                line.insert("text".into(), row.text.into());
                line.insert("label".into(), row.label.into());
                line.insert("probability".into(), number(row.probability));
                if let Some(scores) = &row.scores {
                    let probabilities = labels.iter().zip(scores).map(|(l, (p, _))| (l.clone(), number(*p))).collect();
                    let logits = labels.iter().zip(scores).map(|(l, (_, z))| (l.clone(), number(*z))).collect();
                    line.insert("probabilities".into(), Value::Object(probabilities));
                    line.insert("logits".into(), Value::Object(logits));
                }
                writeln!(out, "{}", Value::Object(line))?;
            }
        }
        PredictionFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            let all = rows.first().is_some_and(|r| r.scores.is_some());
            let mut header = vec!["text".to_string(), "label".into(), "probability".into()];
            if all {
                header.extend(labels.iter().map(|l| format!("probability:{l}")));
                header.extend(labels.iter().map(|l| format!("logit:{l}")));
            }
            csv.write_record(&header)?;
            for row in rows {
                let mut record = vec![row.text.to_string(), row.label.to_string(), row.probability.to_string()];
                if let Some(scores) = &row.scores {
                    record.extend(scores.iter().map(|(p, _)| p.to_string()));
                    record.extend(scores.iter().map(|(_, z)| z.to_string()));
                }
                csv.write_record(&record)?;
            }
            csv.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_and_csv_with_all_scores() {
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let rows = [Prediction {
            text: "a, b",
            label: "pos",
            probability: 0.75,
            scores: Some(vec![(0.25, -1.0), (0.75, 0.5)]),
        }];
        let mut buf = Vec::new();
        write_predictions(&mut buf, PredictionFormat::Jsonl, &labels, &rows).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"text\":\"a, b\",\"label\":\"pos\",\"probability\":0.75,\"probabilities\":{\"neg\":0.25,\"pos\":0.75},\"logits\":{\"neg\":-1.0,\"pos\":0.5}}\n"
        );
        let mut buf = Vec::new();
        write_predictions(&mut buf, PredictionFormat::Csv, &labels, &rows).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "text,label,probability,probability:neg,probability:pos,logit:neg,logit:pos\n\"a, b\",pos,0.75,0.25,0.75,-1,0.5\n"
        );
    }
}
