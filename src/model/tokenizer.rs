//! WordPiece tokenisation as Hugging Face's BERT tokenizers do it, from a model folder.
//!
//! The vocabulary is `vocab.txt`; lower-casing and accent stripping are what transformers'
//! BERT tokenizers use: `tokenizer_config.json`'s `do_lower_case` and `strip_accents`, else
//! their defaults (lower-case, and strip accents iff lower-casing). The `BertNormalizer` in
//! `tokenizer.json` does not count: transformers rebuilds it from those settings whenever it
//! differs (checked with transformers 4.44).

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
    /// One past the largest token id (the vocabulary's size).
    id_limit: i64,
    /// Where the vocabulary came from, for messages.
    vocab_path: std::path::PathBuf,
    pub lower_case: bool,
    pub strip_accents: bool,
    /// `truncation_side: "left"`: a long text keeps its end, not its start.
    truncate_start: bool,
}

impl SentenceTokenizer {
    /// Loads `vocab.txt` and the normalisation settings from a model folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let vocab_path = dir.join("vocab.txt");
        if !vocab_path.is_file() {
            anyhow::bail!("no vocab.txt in {} (a WordPiece vocabulary is required)", dir.display());
        }
        let config = read_tokenizer_config(dir)?;
        let tokenizer_json = read_tokenizer_json(dir)?;
        refuse_other_tokenizers(dir, &config, tokenizer_json.as_ref())?;
        refuse_other_special_tokens(dir, &config, tokenizer_json.as_ref())?;
        let (lower_case, strip_accents) = settings_of(dir, &config)?;
        let truncate_start = truncates_start(dir, &config)?;
        let vocab = BertVocab::from_file(&vocab_path)
            .map_err(|e| anyhow::anyhow!("cannot read vocabulary {}: {e}", vocab_path.display()))?;
        refuse_added_tokens(dir, &config, tokenizer_json.as_ref(), &vocab)?;
        refuse_other_vocabulary(dir, tokenizer_json.as_ref(), &vocab)?;
        let pad_id = vocab.token_to_id(vocab.get_pad_value());
        let id_limit = vocab.values().values().max().map_or(0, |&id| id + 1);
        let inner = BertTokenizer::from_existing_vocab(vocab, lower_case, strip_accents);
        Ok(Self { inner, pad_id, id_limit, vocab_path, lower_case, strip_accents, truncate_start })
    }

    /// Refuses a vocabulary with ids past the model's embedding table (`vocab_size` rows):
    /// the first sentence with such a token would fail in the middle of a job.
    pub fn check_fits(&self, vocab_size: i64) -> Result<()> {
        if self.id_limit > vocab_size {
            anyhow::bail!(
                "{} has {} tokens, but config.json's vocab_size is {vocab_size}: the vocabulary is not this model's (or its embeddings were not resized)",
                self.vocab_path.display(),
                self.id_limit
            );
        }
        Ok(())
    }

    /// Token ids with `[CLS]`/`[SEP]`, at most `max_length` each; tokenised in parallel.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S], max_length: usize) -> Vec<Vec<i64>> {
        self.encode_batch_counting_truncated(texts, max_length).0
    }

    /// As `encode_batch`, with how many of the texts were longer than `max_length` tokens and
    /// lost their end (or their start, where the tokenizer truncates on the left).
    pub fn encode_batch_counting_truncated<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        max_length: usize,
    ) -> (Vec<Vec<i64>>, usize) {
        let texts: Vec<std::borrow::Cow<str>> = texts.iter().map(|t| with_hf_whitespace(t.as_ref())).collect();
        if self.truncate_start {
            let whole = MultiThreadedTokenizer::encode_list(
                &self.inner,
                &texts,
                usize::MAX,
                &TruncationStrategy::DoNotTruncate,
                0,
            );
            let truncated = whole.iter().filter(|e| e.token_ids.len() > max_length).count();
            return (whole.into_iter().map(|e| keep_end(e.token_ids, max_length)).collect(), truncated);
        }
        let encoded =
            MultiThreadedTokenizer::encode_list(&self.inner, &texts, max_length, &TruncationStrategy::LongestFirst, 0);
        let truncated = encoded.iter().filter(|e| e.num_truncated_tokens > 0).count();
        (encoded.into_iter().map(|e| e.token_ids).collect(), truncated)
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }
}

/// `[CLS] text [SEP]` cut to `max_length` ids (at least 2) by dropping the text's first tokens,
/// as transformers truncates on the left.
fn keep_end(ids: Vec<i64>, max_length: usize) -> Vec<i64> {
    if ids.len() <= max_length {
        return ids;
    }
    let mut kept = Vec::with_capacity(max_length);
    kept.push(ids[0]);
    kept.extend_from_slice(&ids[ids.len() + 1 - max_length..]);
    kept
}

/// Whitespace that HF's pre-tokenizer splits on and rust_tokenizers does not (the line and
/// paragraph separators of text from web pages and JSON), as spaces: unsplit, the word they
/// join becomes one `[UNK]`.
fn with_hf_whitespace(text: &str) -> std::borrow::Cow<'_, str> {
    const OTHER_WHITESPACE: [char; 2] = ['\u{2028}', '\u{2029}'];
    match text.contains(OTHER_WHITESPACE) {
        true => std::borrow::Cow::Owned(text.replace(OTHER_WHITESPACE, " ")),
        false => std::borrow::Cow::Borrowed(text),
    }
}

/// `2 of 3 texts are longer than 8 tokens and truncated to that length (--max-length)`, of `truncated` of
/// `total` texts (`noun` in the singular).
pub fn truncation_note(truncated: usize, total: usize, noun: &str, max_length: usize) -> String {
    let which = if total == 1 {
        format!("the {noun} is")
    } else {
        format!("{truncated} of {total} {noun}s {}", if truncated == 1 { "is" } else { "are" })
    };
    format!("{which} longer than {max_length} tokens and truncated to that length (--max-length)")
}

#[derive(serde::Deserialize)]
struct AddedToken {
    content: String,
    #[serde(default)]
    special: bool,
}

/// A part of `tokenizer.json`'s pipeline, by its type, with the settings of BERT's parts
/// that change tokens and that transformers does not rebuild from `tokenizer_config.json`.
#[derive(serde::Deserialize)]
struct Component {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// BertNormalizer: false keeps control characters.
    clean_text: Option<bool>,
    /// WordPiece: longer words become `[UNK]` (100 here, as BERT's).
    max_input_chars_per_word: Option<u64>,
    continuing_subword_prefix: Option<String>,
    /// WordPiece: the vocabulary, token to id (kept as JSON: other models' is another shape).
    vocab: Option<Value>,
}

/// What `tokenizer.json` says about the pipeline and added tokens; the rest (the vocabulary
/// again) is skipped, not built.
#[derive(serde::Deserialize)]
struct TokenizerJson {
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    normalizer: Option<Component>,
    pre_tokenizer: Option<Component>,
    model: Option<Component>,
    /// What adds `[CLS]` and `[SEP]`; `null` (none) is kept apart from a file without the key.
    #[serde(default = "no_post_processor_key")]
    post_processor: Value,
}

/// A `tokenizer.json` without a `post_processor` key: nothing to check.
fn no_post_processor_key() -> Value {
    Value::String("absent".into())
}

/// `dir`'s `tokenizer.json`, `None` when it has none.
fn read_tokenizer_json(dir: &Path) -> Result<Option<TokenizerJson>> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed =
        serde_json::from_str(&text).with_context(|| format!("{} is not a valid tokenizer file", path.display()))?;
    Ok(Some(parsed))
}

/// The tokenizer classes that are BERT's WordPiece tokenizer, the one reproduced here.
const BERT_TOKENIZER_CLASSES: &[&str] =
    &["BertTokenizer", "BertTokenizerFast", "DistilBertTokenizer", "DistilBertTokenizerFast"];

/// Refuses a folder whose tokenizer is not BERT's (a `tokenizer_class` such as
/// `BertJapaneseTokenizer`, or a `tokenizer.json` pipeline of other parts, an NFKC normaliser
/// in front of BERT's): read as BERT's, its texts would give other tokens, silently.
fn refuse_other_tokenizers(dir: &Path, config: &Value, tokenizer_json: Option<&TokenizerJson>) -> Result<()> {
    if let Some(class) = config.get("tokenizer_class").and_then(Value::as_str) {
        if !BERT_TOKENIZER_CLASSES.contains(&class) {
            anyhow::bail!(
                "{}: tokenizer_class {class} is not supported: sentence-mtl tokenizes as BERT's WordPiece tokenizer (BertTokenizer), which would give this model other tokens",
                dir.join(TOKENIZER_CONFIG).display()
            );
        }
    }
    let Some(json) = tokenizer_json else { return Ok(()) };
    let parts = [
        ("normalizer", &json.normalizer, "BertNormalizer"),
        ("pre_tokenizer", &json.pre_tokenizer, "BertPreTokenizer"),
        ("model", &json.model, "WordPiece"),
    ];
    let file = dir.join("tokenizer.json");
    for (part, component, bert) in parts {
        if let Some(other) = component.as_ref().and_then(|c| c.kind.as_deref()).filter(|kind| *kind != bert) {
            anyhow::bail!(
                "{}: its {part} is {other}, not BERT's {bert}: sentence-mtl tokenizes as BERT's WordPiece tokenizer, which would give this model other tokens",
                file.display(),
            );
        }
    }
    let other_setting = |setting: String| {
        anyhow::anyhow!(
            "{}: {setting} is not supported: sentence-mtl tokenizes as BERT's WordPiece tokenizer, which would give this model other tokens",
            file.display()
        )
    };
    if json.normalizer.as_ref().and_then(|n| n.clean_text) == Some(false) {
        return Err(other_setting("the normalizer's clean_text false (control characters kept)".into()));
    }
    if let Some(model) = &json.model {
        if let Some(chars) = model.max_input_chars_per_word.filter(|&c| c != 100) {
            return Err(other_setting(format!("WordPiece max_input_chars_per_word {chars} (BERT's is 100)")));
        }
        if let Some(prefix) = model.continuing_subword_prefix.as_deref().filter(|&p| p != "##") {
            return Err(other_setting(format!("WordPiece continuing_subword_prefix '{prefix}' (BERT's is '##')")));
        }
    }
    if !adds_cls_and_sep(&json.post_processor) {
        return Err(other_setting(format!(
            "a post_processor that does not put [CLS] before and [SEP] after a text ({})",
            json.post_processor
        )));
    }
    Ok(())
}

/// Whether `tokenizer.json`'s `post_processor` makes a text `[CLS] text [SEP]`, as BERT's
/// does (or the file has no such key).
fn adds_cls_and_sep(post_processor: &Value) -> bool {
    let special = |item: &Value| item["SpecialToken"]["id"].as_str().map(str::to_string);
    match post_processor["type"].as_str() {
        None => post_processor == &no_post_processor_key(),
        Some("BertProcessing") => {
            post_processor["cls"][0].as_str() == Some("[CLS]") && post_processor["sep"][0].as_str() == Some("[SEP]")
        }
        Some("TemplateProcessing") => match post_processor["single"].as_array().map(Vec::as_slice) {
            Some([first, text, last]) => {
                special(first).as_deref() == Some("[CLS]")
                    && text["Sequence"]["id"].as_str() == Some("A")
                    && special(last).as_deref() == Some("[SEP]")
            }
            _ => false,
        },
        Some(_) => false,
    }
}

/// The special tokens BERT's tokenizer uses, which this one uses whatever a folder says.
const BERT_SPECIAL_TOKENS: [(&str, &str); 4] =
    [("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("unk_token", "[UNK]"), ("pad_token", "[PAD]")];

/// Refuses other special tokens in `tokenizer_config.json` or `special_tokens_map.json` of a
/// folder without `tokenizer.json`: transformers then builds its tokenizer around them (with
/// `tokenizer.json`, its post-processor decides, checked by [`refuse_other_tokenizers`]).
fn refuse_other_special_tokens(dir: &Path, config: &Value, tokenizer_json: Option<&TokenizerJson>) -> Result<()> {
    if tokenizer_json.is_some() {
        return Ok(());
    }
    let map_path = dir.join("special_tokens_map.json");
    let map = read_optional_json(&map_path)?;
    for (file, values) in [(dir.join(TOKENIZER_CONFIG), config), (map_path, &map)] {
        for (field, bert) in BERT_SPECIAL_TOKENS {
            // A token is a string, or an object with its `content`.
            let value = &values[field];
            let token = value.as_str().or_else(|| value["content"].as_str());
            if let Some(token) = token.filter(|&t| t != bert) {
                anyhow::bail!(
                    "{}: {field} '{token}' is not supported: sentence-mtl's tokenizer uses BERT's {bert}, which would give this model other tokens",
                    file.display()
                );
            }
        }
    }
    Ok(())
}

/// Whether the tokenizer truncates a long text at its start (`truncation_side: "left"` in
/// `tokenizer_config.json`); any other side than left and right is refused.
fn truncates_start(dir: &Path, config: &Value) -> Result<bool> {
    match config.get("truncation_side").and_then(Value::as_str) {
        None | Some("right") => Ok(false),
        Some("left") => Ok(true),
        Some(other) => anyhow::bail!(
            "{}: truncation_side '{other}' is not one of left and right",
            dir.join(TOKENIZER_CONFIG).display()
        ),
    }
}

/// Refuses tokens added to the tokenizer (`tokenizer.add_tokens`, in `tokenizer.json`'s
/// `added_tokens`, `tokenizer_config.json`'s `added_tokens_decoder` or `added_tokens.json`)
/// that `vocab.txt` lacks, or that are not special: transformers matches them whole before
/// WordPiece, which this tokenizer does not.
fn refuse_added_tokens(
    dir: &Path,
    config: &Value,
    tokenizer_json: Option<&TokenizerJson>,
    vocab: &BertVocab,
) -> Result<()> {
    let whole = |t: &AddedToken| !t.special || !vocab.values().contains_key(&t.content);
    let mut added: Vec<String> = Vec::new();
    if let Some(json) = tokenizer_json {
        added.extend(json.added_tokens.iter().filter(|t| whole(t)).map(|t| t.content.clone()));
    }
    if let Some(decoder) = config.get("added_tokens_decoder") {
        let decoder: std::collections::BTreeMap<String, AddedToken> = serde_json::from_value(decoder.clone())
            .with_context(|| {
                format!("{}: added_tokens_decoder is not readable", dir.join(TOKENIZER_CONFIG).display())
            })?;
        added.extend(decoder.values().filter(|t| whole(t)).map(|t| t.content.clone()));
    }
    let added_json = dir.join("added_tokens.json");
    if added_json.exists() {
        let text = std::fs::read_to_string(&added_json)
            .with_context(|| format!("cannot read {} as UTF-8 text", added_json.display()))?;
        let tokens: std::collections::BTreeMap<String, Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON object of tokens", added_json.display()))?;
        added.extend(tokens.into_keys().filter(|t| !vocab.values().contains_key(t)));
    }
    added.sort();
    added.dedup();
    if !added.is_empty() {
        anyhow::bail!(
            "{} has tokens added to its tokenizer ({}), which transformers keeps whole and sentence-mtl's WordPiece tokenizer would split",
            dir.display(),
            added.iter().take(5).map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Refuses a `tokenizer.json` whose WordPiece vocabulary is not `vocab.txt`'s: transformers'
/// fast tokenizer reads the former and this one the latter, so the same text would become
/// other token ids, silently. Only tokens a text can become are compared: rust_tokenizers
/// trims each line of `vocab.txt` (transformers keeps a token such as `"\u00a0"` whole), and
/// a token with whitespace at an end is never a word piece, since words split at whitespace.
fn refuse_other_vocabulary(dir: &Path, tokenizer_json: Option<&TokenizerJson>, vocab: &BertVocab) -> Result<()> {
    let in_json = tokenizer_json.and_then(|json| json.model.as_ref()).and_then(|model| model.vocab.as_ref());
    let Some(in_json) = in_json.and_then(Value::as_object) else { return Ok(()) };
    let word_piece = |token: &str| !token.is_empty() && token.trim() == token;
    let in_json: Vec<(&String, &Value)> = in_json.iter().filter(|(token, _)| word_piece(token)).collect();
    let in_txt = vocab.values();
    let txt_word_pieces = in_txt.keys().filter(|token| word_piece(token)).count();
    let differs = |difference: String| {
        anyhow::anyhow!(
            "{}: its vocabulary is not {}'s ({difference}); transformers reads tokenizer.json and sentence-mtl vocab.txt, so they would tokenize differently: make them agree",
            dir.join("tokenizer.json").display(),
            dir.join("vocab.txt").display()
        )
    };
    for &(token, id) in &in_json {
        match in_txt.get(token.as_str()) {
            Some(&txt_id) if Some(txt_id) == id.as_i64() => {}
            Some(txt_id) => return Err(differs(format!("{token:?} is id {id} there, {txt_id} in vocab.txt"))),
            None => return Err(differs(format!("{token:?} is not in vocab.txt"))),
        }
    }
    if in_json.len() != txt_word_pieces {
        return Err(differs(format!("{} tokens there, {txt_word_pieces} in vocab.txt", in_json.len())));
    }
    Ok(())
}

/// Whether the tokenizer of the model folder `dir` lower-cases its text.
pub fn lower_cases(dir: &Path) -> Result<bool> {
    Ok(normalisation_settings(dir)?.0)
}

const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// `dir`'s `tokenizer_config.json`, `Null` when it has none.
fn read_tokenizer_config(dir: &Path) -> Result<Value> {
    read_optional_json(&dir.join(TOKENIZER_CONFIG))
}

/// The JSON file at `path`, `Null` when there is none.
fn read_optional_json(path: &Path) -> Result<Value> {
    if !path.is_file() {
        return Ok(Value::Null);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// `dir`'s `tokenizer_config.json` `model_max_length`: the length transformers truncates at,
/// and sentence-transformers' limit for a folder whose own config sets none. `None` when the
/// file or field is missing, or holds transformers' "no limit" (a number near 1e30).
pub fn model_max_length(dir: &Path) -> Result<Option<usize>> {
    let config = read_tokenizer_config(dir)?;
    let limit = match config.get("model_max_length") {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value.as_f64().filter(|m| *m >= 0.0 && m.fract() == 0.0),
    };
    let Some(limit) = limit else {
        anyhow::bail!(
            "{}: model_max_length {} is not a number of tokens",
            dir.join(TOKENIZER_CONFIG).display(),
            config["model_max_length"]
        );
    };
    Ok((limit < 1e15).then_some(limit as usize))
}

/// (lower_case, strip_accents) of the model folder `dir`, as the module docs say.
fn normalisation_settings(dir: &Path) -> Result<(bool, bool)> {
    settings_of(dir, &read_tokenizer_config(dir)?)
}

/// (lower_case, strip_accents) from `dir`'s tokenizer configuration `config`.
fn settings_of(dir: &Path, config: &Value) -> Result<(bool, bool)> {
    // transformers reads any value by Python's truth (`0` is false, `"false"` true): only
    // true, false and null mean here what they mean there.
    let flag = |field: &str| match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(on)) => Ok(Some(*on)),
        Some(other) => Err(anyhow::anyhow!(
            "{}: {field} is {other}, not true, false or null",
            dir.join(TOKENIZER_CONFIG).display()
        )),
    };
    if flag("tokenize_chinese_chars")? == Some(false) {
        anyhow::bail!(
            "{}: tokenize_chinese_chars false is not supported (sentence-mtl's tokenizer always splits Chinese characters apart)",
            dir.join(TOKENIZER_CONFIG).display()
        );
    }
    let lower_case = flag("do_lower_case")?.unwrap_or(true);
    Ok((lower_case, flag("strip_accents")?.unwrap_or(lower_case)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn settings_are_transformers_own() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(normalisation_settings(dir.path()).unwrap(), (true, true));
        // transformers rebuilds a normaliser that disagrees with its settings.
        write(
            dir.path(),
            "tokenizer.json",
            r#"{"normalizer":{"type":"BertNormalizer","lowercase":false,"strip_accents":null}}"#,
        );
        assert_eq!(normalisation_settings(dir.path()).unwrap(), (true, true));
        write(dir.path(), "tokenizer_config.json", r#"{"do_lower_case":true,"strip_accents":false}"#);
        assert_eq!(normalisation_settings(dir.path()).unwrap(), (true, false));
        write(dir.path(), "tokenizer_config.json", r#"{"do_lower_case":false}"#);
        assert_eq!(normalisation_settings(dir.path()).unwrap(), (false, false));
        write(dir.path(), "tokenizer_config.json", r#"{"tokenize_chinese_chars":false}"#);
        let err = normalisation_settings(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("tokenize_chinese_chars false is not supported (sentence-mtl's tokenizer always splits Chinese characters apart)"), "{err}");
    }

    /// transformers' "no limit" (`1000000000000000019884624838656`) is no limit here either.
    #[test]
    fn model_max_length_is_the_tokenizer_configs_own() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(model_max_length(dir.path()).unwrap(), None);
        write(dir.path(), "tokenizer_config.json", r#"{"model_max_length": 64}"#);
        assert_eq!(model_max_length(dir.path()).unwrap(), Some(64));
        write(dir.path(), "tokenizer_config.json", r#"{"model_max_length": 1000000000000000019884624838656}"#);
        assert_eq!(model_max_length(dir.path()).unwrap(), None);
        for wrong in [r#""512""#, "-3", "2.5"] {
            write(dir.path(), "tokenizer_config.json", &format!(r#"{{"model_max_length": {wrong}}}"#));
            let err = model_max_length(dir.path()).unwrap_err().to_string();
            assert!(
                err.ends_with(&format!("tokenizer_config.json: model_max_length {wrong} is not a number of tokens")),
                "{err}"
            );
        }
    }

    /// Settings transformers reads by Python's truth are refused unless true, false or null.
    #[test]
    fn settings_of_other_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "tokenizer_config.json", r#"{"do_lower_case": false, "strip_accents": null}"#);
        assert_eq!(normalisation_settings(dir.path()).unwrap(), (false, false));
        write(dir.path(), "tokenizer_config.json", r#"{"do_lower_case": 0}"#);
        let err = normalisation_settings(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("tokenizer_config.json: do_lower_case is 0, not true, false or null"), "{err}");
    }

    /// A tokenizer that truncates on the left keeps a long text's end, between [CLS] and [SEP].
    #[test]
    fn truncation_on_the_left_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nc\nd\n");
        let right = SentenceTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(right.encode_batch_counting_truncated(&["a b c d"], 4), (vec![vec![2, 5, 6, 3]], 1));
        write(dir.path(), "tokenizer_config.json", r#"{"truncation_side": "left"}"#);
        let left = SentenceTokenizer::from_dir(dir.path()).unwrap();
        let (ids, truncated) = left.encode_batch_counting_truncated(&["a b c d", "a b", "a"], 4);
        assert_eq!((ids, truncated), (vec![vec![2, 7, 8, 3], vec![2, 5, 6, 3], vec![2, 5, 3]], 1));
        assert_eq!(left.encode_batch(&["a b c d"], 2), vec![vec![2, 3]]);
    }

    /// Pipelines and special tokens that make other tokens than BERT's are refused.
    #[test]
    fn other_post_processors_word_pieces_and_special_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n");
        let template = |last: &str| {
            format!(
                r#"{{"post_processor": {{"type": "TemplateProcessing", "single": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}}, {{"Sequence": {{"id": "A", "type_id": 0}}}}{last}]}}}}"#
            )
        };
        write(dir.path(), "tokenizer.json", &template(r#", {"SpecialToken": {"id": "[SEP]", "type_id": 0}}"#));
        assert!(SentenceTokenizer::from_dir(dir.path()).is_ok());
        let refused = |json: &str| {
            write(dir.path(), "tokenizer.json", json);
            SentenceTokenizer::from_dir(dir.path()).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(refused(&template("")).contains("a post_processor that does not put [CLS] before and [SEP] after"));
        assert!(refused(r#"{"post_processor": null}"#).contains("a post_processor that does not put"));
        let bert = r#"{"post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}}"#;
        assert_eq!(refused(bert), "");
        assert!(refused(r#"{"model": {"type": "WordPiece", "max_input_chars_per_word": 10}}"#)
            .contains("WordPiece max_input_chars_per_word 10 (BERT's is 100) is not supported"));
        assert!(
            refused(r#"{"normalizer": {"type": "BertNormalizer", "clean_text": false}}"#).contains("clean_text false")
        );
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        write(dir.path(), "special_tokens_map.json", r#"{"cls_token": {"content": "[unused1]"}}"#);
        let err = SentenceTokenizer::from_dir(dir.path()).err().unwrap().to_string();
        assert!(err.ends_with("special_tokens_map.json: cls_token '[unused1]' is not supported: sentence-mtl's tokenizer uses BERT's [CLS], which would give this model other tokens"), "{err}");
    }

    /// transformers reads `tokenizer.json`'s vocabulary: one that is not `vocab.txt`'s is refused.
    #[test]
    fn a_tokenizer_json_of_another_vocabulary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n");
        let refused = |vocab: &str| {
            write(dir.path(), "tokenizer.json", &format!(r#"{{"model": {{"type": "WordPiece", "vocab": {vocab}}}}}"#));
            SentenceTokenizer::from_dir(dir.path()).err().map(|e| e.to_string()).unwrap_or_default()
        };
        let same = r#"{"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "hello": 5}"#;
        assert_eq!(refused(same), "");
        let moved = refused(r#"{"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "hello": 6}"#);
        assert!(
            moved.contains(r#"its vocabulary is not "#) && moved.contains(r#"("hello" is id 6 there, 5 in vocab.txt)"#),
            "{moved}"
        );
        let other = refused(r#"{"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "bye": 5}"#);
        assert!(other.contains(r#"("bye" is not in vocab.txt)"#), "{other}");
        let fewer = refused(r#"{"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}"#);
        assert!(fewer.contains("(5 tokens there, 6 in vocab.txt); transformers reads tokenizer.json"), "{fewer}");
        // A token with whitespace at an end (which rust_tokenizers trims) is no word piece.
        write(dir.path(), "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n\u{a0}\n");
        let spaced = r#"{"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "hello": 5, "\u00a0": 6}"#;
        assert_eq!(refused(spaced), "");
    }

    #[test]
    fn missing_vocab_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = SentenceTokenizer::from_dir(dir.path()).err().unwrap();
        assert!(err.to_string().contains("no vocab.txt"), "{err}");
    }

    #[test]
    fn line_and_paragraph_separators_split_words_as_spaces_do() {
        let (tokenizer, _) = small_tokenizer();
        let spaced = tokenizer.encode_batch(&["hello world"], 16);
        for separator in ['\u{2028}', '\u{2029}'] {
            assert_eq!(tokenizer.encode_batch(&[format!("hello{separator}world")], 16), spaced);
        }
    }

    #[test]
    fn added_tokens_are_refused_but_the_special_ones_of_the_vocabulary() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n");
        let special = r#"{"content": "[PAD]", "special": true}, {"content": "[CLS]", "special": true}"#;
        write(dir.path(), "tokenizer.json", &format!(r#"{{"added_tokens": [{special}], "model": {{}}}}"#));
        assert!(SentenceTokenizer::from_dir(dir.path()).is_ok());
        let added = r#"{"content": "guitarzz", "special": false}"#;
        write(dir.path(), "tokenizer.json", &format!(r#"{{"added_tokens": [{special}, {added}]}}"#));
        let err = SentenceTokenizer::from_dir(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("has tokens added to its tokenizer ('guitarzz'), which transformers keeps whole"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        let decoder = r#"{"0": {"content": "[PAD]", "special": true}, "6": {"content": "<e1>", "special": true}}"#;
        write(dir.path(), "tokenizer_config.json", &format!(r#"{{"added_tokens_decoder": {decoder}}}"#));
        let err = SentenceTokenizer::from_dir(dir.path()).err().unwrap().to_string();
        assert!(err.contains("('<e1>')"), "{err}");
        std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
        write(dir.path(), "added_tokens.json", r#"{"<ent>": 6}"#);
        let err = SentenceTokenizer::from_dir(dir.path()).err().unwrap().to_string();
        assert!(err.contains("('<ent>')"), "{err}");
    }

    /// A tokenizer other than BERT's, by its class or its pipeline's parts, is refused.
    #[test]
    fn other_tokenizers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n");
        write(dir.path(), "tokenizer_config.json", r#"{"tokenizer_class": "BertTokenizerFast"}"#);
        let bert = r#""normalizer": {"type": "BertNormalizer"}, "pre_tokenizer": null, "model": {"type": "WordPiece"}"#;
        write(dir.path(), "tokenizer.json", &format!("{{{bert}}}"));
        assert!(SentenceTokenizer::from_dir(dir.path()).is_ok());
        write(dir.path(), "tokenizer.json", r#"{"model": {"type": "BPE"}}"#);
        let err = SentenceTokenizer::from_dir(dir.path()).err().unwrap().to_string();
        assert!(err.ends_with("tokenizer.json: its model is BPE, not BERT's WordPiece: sentence-mtl tokenizes as BERT's WordPiece tokenizer, which would give this model other tokens"), "{err}");
        write(dir.path(), "tokenizer_config.json", r#"{"tokenizer_class": "BertJapaneseTokenizer"}"#);
        let err = SentenceTokenizer::from_dir(dir.path()).err().unwrap().to_string();
        assert!(err.contains("tokenizer_class BertJapaneseTokenizer is not supported"), "{err}");
    }

    #[test]
    fn a_vocabulary_larger_than_the_embedding_table_is_refused() {
        let (tokenizer, size) = small_tokenizer();
        assert!(tokenizer.check_fits(*size).is_ok());
        let err = tokenizer.check_fits(size - 1).unwrap_err().to_string();
        assert!(err.ends_with(&format!("has {size} tokens, but config.json's vocab_size is {}: the vocabulary is not this model's (or its embeddings were not resized)", size - 1)), "{err}");
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
            "2 of 3 texts are longer than 8 tokens and truncated to that length (--max-length)"
        );
        assert_eq!(
            truncation_note(1, 3, "text", 8),
            "1 of 3 texts is longer than 8 tokens and truncated to that length (--max-length)"
        );
        assert_eq!(
            truncation_note(1, 1, "text", 8),
            "the text is longer than 8 tokens and truncated to that length (--max-length)"
        );
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
