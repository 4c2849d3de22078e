//! Numerical parity with Hugging Face: transformers' hidden states, tokenizer ids, and
//! sentence-transformers' embeddings. Correctness is measured against them, not against us.

use sentence_mtl::checkpoint::{self, TrainingSpec};
use sentence_mtl::model::spec::SpecOverrides;
use sentence_mtl::model::tokenizer::SentenceTokenizer;
use serde_json::{json, Value};
use tch::{Device, Tensor};

use crate::common::*;

fn matrix_i64(v: &Value) -> Vec<Vec<i64>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()).collect()
}

fn flatten_f64(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| flatten_f64(x, out)),
        other => out.push(other.as_f64().unwrap()),
    }
}

const PADDED_BATCH: &[&str] = &[
    "Hello world!",
    "A much longer sentence, with punctuation; and numbers 12345, to force padding in the batch.",
    "Short.",
    "Ünïcödé àccents and CJK 中文 text",
];

/// The Rust backbone reproduces transformers' `last_hidden_state` on a padded batch.
fn hidden_state_parity(test: &str, model: &str) {
    let Some(dir) = tiny_models(test) else { return };
    let dir = dir.join(model);
    let python = python(test).unwrap();
    let hf = python_json(
        &python,
        &[&reference_script("hf_outputs.py"), "hidden", dir.to_str().unwrap()],
        &json!(PADDED_BATCH),
    );
    let ids = matrix_i64(&hf["input_ids"]);
    let mask = matrix_i64(&hf["attention_mask"]);
    let mut expected = Vec::new();
    flatten_f64(&hf["last_hidden_state"], &mut expected);

    let loaded = checkpoint::load(dir.to_str().unwrap(), Device::Cpu, &SpecOverrides::default()).unwrap();
    // rust-bert's modules, as `train` builds them (no projection, no heads).
    let wanted = TrainingSpec { pooling: None, projection_dim: Some(0), max_length: 128, tasks: Vec::new() };
    let trainable = checkpoint::load_for_training(dir.to_str().unwrap(), Device::Cpu, wanted).unwrap();
    // Our tokenizer must give the ids HF gave, padding aside.
    let ours = loaded.tokenizer.encode_batch(PADDED_BATCH, 128);
    for (row, (ours_row, (hf_ids, hf_mask))) in ours.iter().zip(ids.iter().zip(&mask)).enumerate() {
        let hf_real: Vec<i64> = hf_ids.iter().zip(hf_mask).filter(|(_, m)| **m == 1).map(|(id, _)| *id).collect();
        assert_eq!(ours_row, &hf_real, "token ids differ for sentence {row}");
    }
    let to_tensor = |m: &Vec<Vec<i64>>| Tensor::from_slice(&m.concat()).view([m.len() as i64, m[0].len() as i64]);
    // Both forward passes: rust-bert's (whose modules create training's variables) and ours
    // (training, inference, export).
    let (ids, mask) = (to_tensor(&ids), to_tensor(&mask));
    let paths = [
        ("rust-bert", tch::no_grad(|| trainable.model.backbone.forward_t(&ids, &mask, false).unwrap())),
        ("fused", tch::no_grad(|| loaded.forward().hidden_states(&ids, &mask).unwrap())),
    ];
    for (path, hidden) in paths {
        let got = Vec::<f32>::try_from(hidden.flatten(0, -1)).unwrap();
        assert_eq!(got.len(), expected.len());
        let max_diff = got.iter().zip(&expected).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        eprintln!("{model} ({path} forward): max |rust - transformers| over {} values = {max_diff:.2e}", got.len());
        assert!(max_diff <= 1e-4, "{model} ({path}): hidden states differ from transformers by {max_diff}");
    }
}

#[test]
fn distilbert_hidden_states_match_transformers() {
    hidden_state_parity("distilbert_hidden_states_match_transformers", "tiny-distilbert");
}

#[test]
fn bert_hidden_states_match_transformers() {
    hidden_state_parity("bert_hidden_states_match_transformers", "tiny-bert");
}

#[test]
fn tokenizer_ids_match_hf_on_awkward_strings() {
    let test = "tokenizer_ids_match_hf_on_awkward_strings";
    let (Some(python), Some(dir)) = (python(test), minilm(test)) else {
        return;
    };
    let long = "word ".repeat(400) + "end";
    let texts: Vec<String> = [
        "Café déjà vu, naïve Zoë, ÀÉÎÕÜ",
        "我爱北京天安门 and 日本語のテキスト",
        "!!!???...---,,,;;;",
        "wait... what?!?! (really) [yes] {no}",
        "xqzjvbwk supercalifragilisticexpialidocious",
        "I love 🍕 and 🎉! 😀",
        "",
        "   leading and trailing spaces   ",
        "tab\there\nnewline",
        "zero\u{200b}width and soft\u{ad}hyphen",
        "HTML &amp; <b>tags</b> https://example.com/a?b=c#d",
        "don't won't it's O'Neill",
        "3.14159 1,000,000 42nd 1990s",
        "MiXeD CaSe ALLCAPS",
        "What 's the capital of `` France '' ?",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(long))
    .collect();
    let tokenizer = SentenceTokenizer::from_dir(&dir).unwrap();
    for max_length in [512usize, 16] {
        let hf = python_json(
            &python,
            &[&reference_script("hf_outputs.py"), "tokens", dir.to_str().unwrap(), &max_length.to_string()],
            &json!(texts),
        );
        let expected = matrix_i64(&hf["input_ids"]);
        let ours = tokenizer.encode_batch(&texts, max_length);
        for ((text, o), e) in texts.iter().zip(&ours).zip(&expected) {
            assert_eq!(o, e, "token ids differ (max_length {max_length}) for {:?}", &text[..text.len().min(60)]);
        }
    }
}

/// all-MiniLM-L6-v2 through `sentence-mtl encode` agrees with sentence-transformers on 120
/// real sentences (SST-2 and TREC dev) at cosine >= 0.9999 each.
#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let test = "minilm_embeddings_match_sentence_transformers";
    let (Some(python), Some(model), Some(data)) = (python(test), minilm(test), shared_data(test)) else {
        return;
    };
    let mut sentences = Vec::new();
    for (file, n) in [("sst2/dev.csv", 100), ("trec/dev_split.csv", 20)] {
        let mut reader = csv::Reader::from_path(data.join(file)).unwrap();
        for row in reader.records().take(n) {
            sentences.push(row.unwrap()[0].to_string());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sentences.csv");
    let mut writer = csv::Writer::from_path(&input).unwrap();
    writer.write_record(["text"]).unwrap();
    for s in &sentences {
        writer.write_record([s]).unwrap();
    }
    writer.flush().unwrap();
    let output = dir.path().join("emb.jsonl");
    let run = run(&[
        "encode",
        "-m",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_ok(&run);
    let ours = parse_jsonl_embeddings(&std::fs::read_to_string(&output).unwrap());
    let st = python_json(
        &python,
        &[&reference_script("hf_outputs.py"), "st-embed", model.to_str().unwrap()],
        &json!(sentences),
    );
    let st: Vec<Vec<f64>> = st["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect();
    assert_eq!(ours.len(), sentences.len());
    let mut worst = 1.0f64;
    for (i, ((text, emb), reference)) in ours.iter().zip(&st).enumerate() {
        assert_eq!(text, &sentences[i], "output order differs from input order");
        let cos = cosine(emb, reference);
        worst = worst.min(cos);
        assert!(cos >= 0.9999, "sentence {i} {text:?}: cosine {cos} < 0.9999");
    }
    eprintln!("all-MiniLM-L6-v2 vs sentence-transformers on {} sentences: worst cosine {worst:.7}", ours.len());
}
