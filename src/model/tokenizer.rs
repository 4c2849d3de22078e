//! WordPiece tokenisation as Hugging Face's BERT tokenizers do it, from a model folder.
//!
//! The vocabulary is `vocab.txt`; lower-casing and accent stripping follow HF's precedence:
//! `tokenizer_config.json` (`do_lower_case`, `strip_accents`), then the `BertNormalizer` in
//! `tokenizer.json`, then HF's defaults (lower-case, and strip accents iff lower-casing).

use std::path::Path;

use anyhow::{Context, Result};
use rust_tokenizers::tokenizer::{BertTokenizer, MultiThreadedTokenizer, TruncationStrategy};
use rust_tokenizers::vocab::{BertVocab, Vocab};
use serde_json::Value;

/// The tokenizer files a checkpoint carries along (those that exist are copied).
pub const TOKENIZER_FILES: &[&str] =
    &["vocab.txt", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json"];

pub struct SentenceTokenizer {
    inner: BertTokenizer,
    pad_id: i64,
    pub lower_case: bool,
    pub strip_accents: bool,
}

impl SentenceTokenizer {
    /// Loads `vocab.txt` and the normalisation settings from a model folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let vocab_path = dir.join("vocab.txt");
        if !vocab_path.is_file() {
            anyhow::bail!("no vocab.txt in {} (a WordPiece vocabulary is required)", dir.display());
        }
        let (lower_case, strip_accents) = normalisation_settings(dir)?;
        let vocab = BertVocab::from_file(&vocab_path)
            .map_err(|e| anyhow::anyhow!("cannot read vocabulary {}: {e}", vocab_path.display()))?;
        let pad_id = vocab.token_to_id(vocab.get_pad_value());
        let inner = BertTokenizer::from_existing_vocab(vocab, lower_case, strip_accents);
        Ok(Self { inner, pad_id, lower_case, strip_accents })
    }

    /// Token ids with `[CLS]`/`[SEP]`, at most `max_length` each; tokenised in parallel.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S], max_length: usize) -> Vec<Vec<i64>> {
        self.encode_batch_counting_truncated(texts, max_length).0
    }

    /// As `encode_batch`, with how many of the texts were longer than `max_length` tokens and
    /// lost their end.
    pub fn encode_batch_counting_truncated<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        max_length: usize,
    ) -> (Vec<Vec<i64>>, usize) {
        let encoded =
            MultiThreadedTokenizer::encode_list(&self.inner, texts, max_length, &TruncationStrategy::LongestFirst, 0);
        let truncated = encoded.iter().filter(|e| e.num_truncated_tokens > 0).count();
        (encoded.into_iter().map(|e| e.token_ids).collect(), truncated)
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }
}

/// `2 of 3 texts are longer than 8 tokens and cut to them (--max-length)`, of `truncated` of
/// `total` texts (`noun` in the singular).
pub fn truncation_note(truncated: usize, total: usize, noun: &str, max_length: usize) -> String {
    let which = if total == 1 {
        format!("the {noun} is")
    } else {
        format!("{truncated} of {total} {noun}s {}", if truncated == 1 { "is" } else { "are" })
    };
    format!("{which} longer than {max_length} tokens and cut to them (--max-length)")
}

/// (lower_case, strip_accents) with HF's precedence; see the module docs.
fn normalisation_settings(dir: &Path) -> Result<(bool, bool)> {
    fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
        Ok(Some(value))
    }
    /// Only the normaliser of `tokenizer.json`: the rest (the whole vocabulary again) is
    /// skipped while parsing instead of being built into a `Value` (20 ms of a start-up).
    #[derive(serde::Deserialize)]
    struct TokenizerJson {
        normalizer: Option<Value>,
    }
    let config: Option<Value> = read_json(&dir.join("tokenizer_config.json"))?;
    let normalizer = read_json::<TokenizerJson>(&dir.join("tokenizer.json"))?
        .and_then(|t| t.normalizer)
        .filter(|n| n.get("type").and_then(Value::as_str) == Some("BertNormalizer"));

    let flag = |value: Option<&Value>, field: &str| value.and_then(|v| v.get(field)).and_then(Value::as_bool);
    let lower_case =
        flag(config.as_ref(), "do_lower_case").or_else(|| flag(normalizer.as_ref(), "lowercase")).unwrap_or(true);
    let strip_accents = flag(config.as_ref(), "strip_accents")
        .or_else(|| flag(normalizer.as_ref(), "strip_accents"))
        .unwrap_or(lower_case);
    Ok((lower_case, strip_accents))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn settings_follow_hf_precedence() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(normalisation_settings(dir.path()).unwrap(), (true, true));
        write(
            dir.path(),
            "tokenizer.json",
            r#"{"normalizer":{"type":"BertNormalizer","lowercase":false,"strip_accents":null}}"#,
        );
        assert_eq!(normalisation_settings(dir.path()).unwrap(), (false, false));
        write(dir.path(), "tokenizer_config.json", r#"{"do_lower_case":true,"strip_accents":false}"#);
        assert_eq!(normalisation_settings(dir.path()).unwrap(), (true, false));
    }

    #[test]
    fn missing_vocab_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = SentenceTokenizer::from_dir(dir.path()).err().unwrap();
        assert!(err.to_string().contains("no vocab.txt"), "{err}");
    }

    /// A small WordPiece vocabulary written once per test process.
    fn small_tokenizer() -> &'static (SentenceTokenizer, i64) {
        static TOKENIZER: std::sync::OnceLock<(SentenceTokenizer, i64)> = std::sync::OnceLock::new();
        TOKENIZER.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap().keep();
            let vocab = [
                "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "##s", "hello", "world", "!", ",",
                "\u{4e2d}", "##ing", "cafe",
            ];
            std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
            (SentenceTokenizer::from_dir(&dir).unwrap(), vocab.len() as i64)
        })
    }

    #[test]
    fn truncation_notes_count_in_words() {
        assert_eq!(
            truncation_note(2, 3, "text", 8),
            "2 of 3 texts are longer than 8 tokens and cut to them (--max-length)"
        );
        assert_eq!(
            truncation_note(1, 3, "text", 8),
            "1 of 3 texts is longer than 8 tokens and cut to them (--max-length)"
        );
        assert_eq!(truncation_note(1, 1, "text", 8), "the text is longer than 8 tokens and cut to them (--max-length)");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        #[test]
        fn never_panics_and_respects_max_length(
            texts in proptest::collection::vec(proptest::prelude::any::<String>(), 1..6),
            max_length in 2usize..40,
        ) {
            let (tokenizer, vocab_size) = small_tokenizer();
            let ids = tokenizer.encode_batch(&texts, max_length);
            proptest::prop_assert_eq!(ids.len(), texts.len());
            for row in ids {
                proptest::prop_assert!(row.len() >= 2 && row.len() <= max_length, "length {}", row.len());
                proptest::prop_assert_eq!(row[0], 2);
                proptest::prop_assert_eq!(*row.last().unwrap(), 3);
                proptest::prop_assert!(row.iter().all(|&id| (0..*vocab_size).contains(&id)));
            }
        }
    }
}
