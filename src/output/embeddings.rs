//! Embeddings out: JSONL (`{"text", "embedding"}` per line), CSV (`text,dim_0,...`), `.npy`.

use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Result};

use super::npy::write_f32_matrix;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingFormat {
    Jsonl,
    Csv,
    Npy,
}

impl FromStr for EmbeddingFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "jsonl" | "json" => Self::Jsonl,
            "csv" => Self::Csv,
            "npy" => Self::Npy,
            other => bail!("unknown --format '{other}' (expected jsonl, csv or npy)"),
        })
    }
}

impl EmbeddingFormat {
    /// `--format` if given, else the `--output` extension's format, else JSONL.
    pub fn choose(flag: Option<Self>, output: Option<&Path>) -> Result<Self> {
        super::format_for(flag, output, Self::Jsonl, "jsonl, csv or npy")
    }

    pub fn is_binary(self) -> bool {
        self == Self::Npy
    }
}

/// Writes `n` embeddings of width `dim` (row-major `values`) with their texts.
pub fn write_embeddings(
    out: &mut dyn Write,
    format: EmbeddingFormat,
    texts: &[String],
    values: &[f32],
    dim: usize,
) -> Result<()> {
    match format {
        EmbeddingFormat::Npy => write_f32_matrix(out, values, texts.len(), dim),
        EmbeddingFormat::Jsonl => {
            #[derive(serde::Serialize)]
            struct Line<'a> {
                text: &'a str,
                embedding: &'a [f32],
            }
            for (text, row) in texts.iter().zip(values.chunks(dim.max(1))) {
                serde_json::to_writer(&mut *out, &Line { text, embedding: row })?;
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        EmbeddingFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            let mut header = vec!["text".to_string()];
            header.extend((0..dim).map(|i| format!("dim_{i}")));
            csv.write_record(&header)?;
            for (text, row) in texts.iter().zip(values.chunks(dim.max(1))) {
                let mut record = vec![text.clone()];
                record.extend(row.iter().map(|v| v.to_string()));
                csv.write_record(&record)?;
            }
            csv.flush()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_extension() {
        let choose = |flag, output: Option<&str>| EmbeddingFormat::choose(flag, output.map(Path::new));
        assert_eq!(choose(None, Some("x.npy")).unwrap(), EmbeddingFormat::Npy);
        assert_eq!(choose(None, Some("x.CSV")).unwrap(), EmbeddingFormat::Csv);
        assert_eq!(choose(None, Some("/dev/stdout")).unwrap(), EmbeddingFormat::Jsonl);
        assert_eq!(choose(None, None).unwrap(), EmbeddingFormat::Jsonl);
        assert_eq!(choose(Some(EmbeddingFormat::Csv), Some("x.txt")).unwrap(), EmbeddingFormat::Csv);
        assert_eq!(choose(Some(EmbeddingFormat::Npy), Some("x.NPY")).unwrap(), EmbeddingFormat::Npy);
        let err = choose(Some(EmbeddingFormat::Csv), Some("x.npy")).unwrap_err().to_string();
        assert!(err.contains("--format names another format than --output x.npy's .npy"), "{err}");
        let err = choose(None, Some("x.tsv")).unwrap_err().to_string();
        assert!(err.contains(".tsv is not an output format (expected jsonl, csv or npy)"), "{err}");
        assert!("xml".parse::<EmbeddingFormat>().is_err());
    }

    #[test]
    fn jsonl_and_csv_rows() {
        let texts = vec!["a \"q\"".to_string(), "b".to_string()];
        let mut buf = Vec::new();
        write_embeddings(&mut buf, EmbeddingFormat::Jsonl, &texts, &[0.5, 1.0, -2.0, 0.25], 2).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            "{\"text\":\"a \\\"q\\\"\",\"embedding\":[0.5,1.0]}\n{\"text\":\"b\",\"embedding\":[-2.0,0.25]}\n"
        );
        let mut buf = Vec::new();
        write_embeddings(&mut buf, EmbeddingFormat::Csv, &texts, &[0.5, 1.0, -2.0, 0.25], 2).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "text,dim_0,dim_1\n\"a \"\"q\"\"\",0.5,1\nb,-2,0.25\n");
    }
}
