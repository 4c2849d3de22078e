//! Predictions out: JSONL (`{"text", "label", "probability"}` per line) or CSV with the
//! same columns, in input order.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionFormat {
    Jsonl,
    Csv,
}

impl PredictionFormat {
    /// `--format` if given, else from the `--output` extension, else JSONL.
    pub fn choose(flag: Option<&str>, output: Option<&Path>) -> Result<Self> {
        match flag {
            Some("jsonl") | Some("json") => Ok(Self::Jsonl),
            Some("csv") => Ok(Self::Csv),
            Some(other) => bail!("unknown --format '{other}' (expected jsonl or csv)"),
            None => Ok(match output.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
                Some(e) if e.eq_ignore_ascii_case("csv") => Self::Csv,
                _ => Self::Jsonl,
            }),
        }
    }
}

#[derive(serde::Serialize)]
pub struct Prediction<'a> {
    pub text: &'a str,
    pub label: &'a str,
    pub probability: f32,
}

pub fn write_predictions(out: &mut dyn Write, format: PredictionFormat, rows: &[Prediction]) -> Result<()> {
    match format {
        PredictionFormat::Jsonl => {
            for row in rows {
                // A struct keeps the f32 probability's shortest form (0.9292159, not 0.92921590805).
                serde_json::to_writer(&mut *out, row)?;
                out.write_all(b"\n")?;
            }
        }
        PredictionFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record(["text", "label", "probability"])?;
            for row in rows {
                csv.write_record([row.text, row.label, &row.probability.to_string()])?;
            }
            csv.flush()?;
        }
    }
    Ok(())
}
