//! The README.md model card of an export: what the model is, what it was trained on, how
//! well it did, and how to load it.

use std::path::Path;

use crate::model::loaded::LoadedModel;
use crate::model::pooling::Pooling;
use crate::model::spec::{HeadInput, ModelSpec};
use crate::train::evaluate::Evaluation;

use super::ExportFormat;

/// The Python that rebuilds the classifier of an `hf` export (tested as written).
pub fn hf_python(loaded: &LoadedModel) -> String {
    let pooling = match loaded.spec.pooling {
        Pooling::Mean => "x = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # mean pooling",
        Pooling::Cls => "x = h[:, 0]  # [CLS] pooling",
        Pooling::Max => "x = h.masked_fill(m == 0, -1e9).max(1).values  # max pooling",
    };
    let projection = if loaded.spec.projection_dim.is_some() {
        "    x = x @ w[\"projection.weight\"].T + w[\"projection.bias\"]\n"
    } else {
        ""
    };
    let reading_embeddings: Vec<&str> =
        loaded.spec.head_tasks().filter(|t| t.head_input == HeadInput::Embedding).map(|t| t.name.as_str()).collect();
    let normalise = if loaded.spec.normalize && !reading_embeddings.is_empty() {
        let names = serde_json::to_string(&reading_embeddings).unwrap_or_default();
        format!(
            "    if task in {names}: x = torch.nn.functional.normalize(x, dim=-1)  # these heads read the embeddings\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"import json, torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer
d = "."  # this folder
spec, w = json.load(open(f"{{d}}/tasks.json")), load_file(f"{{d}}/heads.safetensors")
tok, enc = AutoTokenizer.from_pretrained(d), AutoModel.from_pretrained(d).eval()
@torch.no_grad()
def logits(texts, task):
    b = tok(texts, padding=True, truncation=True, max_length=spec["max_length"], return_tensors="pt")
    h = enc(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
    {pooling}
{projection}{normalise}    return x @ w[f"heads.{{task}}.weight"].T + w[f"heads.{{task}}.bias"]
"#
    )
}

/// BERT's pooler is not used for sentence features; without the base model's pooler weights
/// transformers reports it as newly initialised.
fn pooler_note(loaded: &LoadedModel) -> &'static str {
    if loaded.config.model_type() == "bert" && loaded.passthrough.is_empty() {
        " transformers will report `pooler.dense.*` as newly initialised: the base model had no pooler weights, and sentence features do not use the pooler, so the message can be ignored."
    } else {
        ""
    }
}

fn usage(loaded: &LoadedModel, format: ExportFormat) -> String {
    let first_task = loaded.spec.head_tasks().next().map(|t| t.name.as_str()).unwrap_or("TASK");
    match format {
        ExportFormat::SentenceTransformers => format!(
            "```python\nfrom sentence_transformers import SentenceTransformer\nmodel = SentenceTransformer(\".\")  # this folder\nembeddings = model.encode([\"A first sentence.\", \"Another one.\"])\n```\n\nThe embeddings equal `sentence-mtl encode --model` on the checkpoint (pooling, {}normalisation {}). Task heads are not part of a sentence-transformers model; use the `hf` or `torchscript` export for them.{}\n",
            if loaded.spec.projection_dim.is_some() { "projection as a Dense module, " } else { "" },
            if loaded.spec.normalize { "on" } else { "off" },
            pooler_note(loaded)
        ),
        ExportFormat::Hf if loaded.spec.head_tasks().next().is_none() => format!(
            "This model has no classification heads: its tasks trained the embeddings. The backbone loads with transformers' `AutoModel`; a sentence's embedding is the {} pooling of its last hidden states{}{}, as the `sentence-transformers` export of the same checkpoint computes it.{}\n\n`sentence-mtl encode` and `eval` read this folder whole (`-m` this folder).\n",
            loaded.spec.pooling,
            if loaded.spec.projection_dim.is_some() { ", then the `projection` in `heads.safetensors`" } else { "" },
            if loaded.spec.normalize { ", L2-normalised" } else { "" },
            pooler_note(loaded)
        ),
        ExportFormat::Hf => format!(
            "The backbone loads with transformers' `AutoModel`; these lines rebuild the classifier around it from `heads.safetensors` and `tasks.json`:\n\n```python\n{}```\n\nThen `logits([\"a sentence\"], \"{first_task}\").softmax(-1)` gives the class probabilities, in the order of the task's `labels` in `tasks.json`.{}\n\n`sentence-mtl encode`, `predict` and `eval` read this folder whole (`-m` this folder), projection, normalisation and heads included.\n",
            hf_python(loaded),
            pooler_note(loaded)
        ),
        ExportFormat::TorchScript => format!(
            "`model.pt` maps `input_ids` and `attention_mask` (int64, `[batch, seq]`, any size) to the tuple listed under `outputs` in `tasks.json`: the sentence embedding, then each task's logits.\n\n```python\nimport torch\nfrom transformers import AutoTokenizer\ntok, model = AutoTokenizer.from_pretrained(\".\"), torch.jit.load(\"model.pt\")\nb = tok([\"A sentence.\"], padding=True, truncation=True, max_length={}, return_tensors=\"pt\")\nembedding, *logits = model(b[\"input_ids\"], b[\"attention_mask\"])\n```\n\nThe weights are constants of the traced graph, not parameters: `model.to(...)` and `model.half()` leave them as they are, so load the module on the device it runs on (`torch.jit.load(\"model.pt\", map_location=\"cuda\")`) and give it inputs there.\n\nIn Rust: `tch::CModule::load(\"model.pt\")?.forward_is(&[IValue::Tensor(ids), IValue::Tensor(mask)])?` returns the same tuple (`CModule::load_on_device` for a GPU).\n",
            loaded.spec.max_length
        ),
    }
}

/// The first words of every export's `README.md`.
const TITLE: &str = "# sentence-mtl export (";

/// Whether `folder` is an earlier export: its `README.md` is the card [`render`] writes.
pub fn is_export(folder: &Path) -> bool {
    // An editor may have saved it with CRLF line ends (an edit `export --force` then names).
    std::fs::read_to_string(folder.join("README.md"))
        .is_ok_and(|card| after_front_matter(&card.replace("\r\n", "\n")).starts_with(TITLE))
}

/// A card without its YAML front matter (`---` lines around it), which exports before it lacked.
fn after_front_matter(card: &str) -> &str {
    card.strip_prefix("---\n").and_then(|rest| rest.split_once("\n---\n")).map_or(card, |(_, body)| body)
}

/// The Hugging Face Hub's metadata, so that a pushed export shows as what it is: the library
/// that loads it and the task it serves. No `base_model` (a local folder's name can look like
/// a hub id) and no license (the base model's to state).
///
/// A TorchScript folder names no library: no library on the Hub loads `model.pt`, and
/// `transformers` (which its config.json would suggest) finds no weights in it.
fn front_matter(format: ExportFormat) -> String {
    let (library, pipeline) = match format {
        ExportFormat::SentenceTransformers => ("sentence-transformers", "sentence-similarity"),
        ExportFormat::Hf => ("transformers", "feature-extraction"),
        ExportFormat::TorchScript => {
            return "---\npipeline_tag: feature-extraction\ntags:\n- sentence-mtl\n- torchscript\n---\n".into()
        }
    };
    format!("---\nlibrary_name: {library}\npipeline_tag: {pipeline}\ntags:\n- sentence-mtl\n- {library}\n---\n")
}

pub fn render(loaded: &LoadedModel, format: ExportFormat) -> String {
    let spec = &loaded.spec;
    let mut card = front_matter(format);
    card.push_str(&model_section(loaded, format));
    card.push_str(&tasks_section(spec));
    if let Some(training) = &spec.training {
        card.push_str(&training_section(training, &spec.base_model, &crate::checkpoint::resolved(&loaded.dir)));
    }
    card.push_str(&metrics_section(spec));
    card.push_str("\n## Usage\n\n");
    card.push_str(&usage(loaded, format));
    card
}

/// The title and the model's architecture.
fn model_section(loaded: &LoadedModel, format: ExportFormat) -> String {
    let spec = &loaded.spec;
    let config = &loaded.config;
    format!(
        "{TITLE}{})\n\nExported by sentence-mtl {} from `{}`.\n\n## Model\n\n- backbone: {} ({} layers, hidden size {}), from `{}`\n- pooling: {}; projection: {}; L2-normalised embeddings: {}; max length: {} tokens\n",
        format.name(),
        env!("CARGO_PKG_VERSION"),
        crate::checkpoint::resolved(&loaded.dir).display(),
        config.model_type(),
        config.num_layers(),
        config.hidden_size(),
        spec.base_model,
        spec.pooling,
        spec.projection_dim.map(|d| format!("Linear({} -> {d})", config.hidden_size())).unwrap_or_else(|| "none".into()),
        if spec.normalize { "yes" } else { "no" },
        spec.max_length,
    )
}

/// One row per task: its kind, loss and labels or score range.
fn tasks_section(spec: &ModelSpec) -> String {
    let mut card =
        String::from("\n## Tasks\n\n| task | kind | loss | labels (class id order) or scores |\n|---|---|---|---|\n");
    for task in &spec.tasks {
        let values = match task.score_range {
            Some([low, high]) => format!("scores {low} to {high}"),
            None => task.labels.join(", "),
        };
        let loss = task.loss.as_deref().unwrap_or("cross-entropy");
        card.push_str(&format!("| {} | {} | {loss} | {values} |\n", task.name, task.kind));
    }
    card
}

/// Where each task was trained and selected, the recipe, and the command line (from the run's
/// `settings.json` beside the checkpoint, when it is there).
fn training_section(training: &serde_json::Value, base_model: &str, checkpoint_dir: &Path) -> String {
    let mut card = String::from("\n## Training\n\n");
    if let Some(start) = training["model"].as_str().filter(|start| !crate::checkpoint::same_place(start, base_model)) {
        card.push_str(&format!("- trained further from `{start}`, whose backbone came from `{base_model}`\n"));
    }
    if let Some(tasks) = training["tasks"].as_array() {
        for task in tasks {
            let unless_one = |key: &str, label: &str| match task[key].as_f64() {
                Some(v) if v != 1.0 => format!(", {label} {v}"),
                _ => String::new(),
            };
            card.push_str(&format!(
                "- {}: trained on `{}`{}{}{}\n",
                task["name"].as_str().unwrap_or("?"),
                task["train"].as_str().unwrap_or("?"),
                task["dev"].as_str().map(|d| format!(", selected on `{d}`")).unwrap_or_default(),
                unless_one("weight", "loss weight"),
                unless_one("share", "--task-share"),
            ));
        }
    }
    let setting = |key: &str| plain(&training[key]);
    card.push_str(&format!(
        "- recipe {}: learning rates backbone {} (layer decay {}), projection {}, heads {}; schedule {} with warm-up ratio {}; label smoothing {}; class weights {}; small-data mode {}; batch {}; epochs {}; max steps {}; freeze {}; seed {}; precision {}\n",
        setting("recipe"),
        setting("lr_backbone"),
        setting("layer_decay"),
        setting("lr_projection"),
        setting("lr_heads"),
        setting("lr_schedule"),
        setting("warmup_ratio"),
        setting("label_smoothing"),
        setting("class_weights"),
        setting("small_data"),
        match training["batch_tokens"].as_u64() {
            Some(tokens) => format!("up to {tokens} padded tokens"),
            None => setting("batch_size"),
        },
        setting("epochs"),
        setting("max_steps"),
        setting("freeze"),
        setting("seed"),
        // Checkpoints from before `precision_used` give the flag's value.
        if training["precision_used"].is_string() { setting("precision_used") } else { setting("precision") },
    ));
    let settings_file = checkpoint_dir.parent().map(|run| run.join("settings.json"));
    let command = settings_file
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v["command_line"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" "))
        });
    match command {
        Some(command) if !command.is_empty() => card.push_str(&format!("- command: `{command}`\n")),
        _ => card.push_str("- command: not recorded\n"),
    }
    card
}

/// The dev metrics the checkpoint was saved with, if any.
fn metrics_section(spec: &ModelSpec) -> String {
    let Some(evaluation) = spec.metrics.clone().and_then(|m| serde_json::from_value::<Evaluation>(m).ok()) else {
        return String::new();
    };
    let mut card = format!(
        "\n## Dev metrics (step {}, when this checkpoint was saved)\n\n| task | kind | main metric | value | also | examples |\n|---|---|---|---:|---|---:|\n",
        evaluation.step
    );
    // In the order of the tasks table above.
    let ordered = spec.tasks.iter().filter_map(|task| evaluation.tasks.get_key_value(&task.name));
    for (name, score) in ordered {
        let (second, value) = score.secondary();
        card.push_str(&format!(
            "| {name} | {} | {} | {:.4} | {second} {value:.4} | {} |\n",
            score.kind(),
            score.kind().main_metric(),
            score.main(),
            score.examples()
        ));
    }
    card
}

/// A setting as a reader writes it: strings without quotes, lists comma-separated, `none` for
/// an unset one.
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) if items.is_empty() => "none".into(),
        serde_json::Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_is_known_with_or_without_front_matter() {
        let dir = tempfile::tempdir().unwrap();
        let card = dir.path().join("README.md");
        std::fs::write(&card, format!("---\nlibrary_name: transformers\n---\n{TITLE}hf)\n")).unwrap();
        assert!(is_export(dir.path()));
        std::fs::write(&card, format!("{TITLE}hf)\n")).unwrap();
        assert!(is_export(dir.path()), "exports from before the front matter");
        std::fs::write(&card, format!("---\r\nlibrary_name: transformers\r\n---\r\n{TITLE}hf)\r\n")).unwrap();
        assert!(is_export(dir.path()), "saved with CRLF line ends");
        std::fs::write(&card, "---\ntitle: mine\n---\n# My model\n").unwrap();
        assert!(!is_export(dir.path()));
    }

    #[test]
    fn dev_metrics_come_in_the_order_of_the_tasks() {
        let mut spec = crate::model::test_support::spec("bert", None, &[("trec", 6), ("sst", 2)]);
        let score = |accuracy: f64| serde_json::json!({"accuracy": accuracy, "macro_f1": accuracy, "examples": 10});
        let tasks = serde_json::json!({"sst": score(0.8), "trec": score(0.9)});
        spec.metrics = Some(serde_json::json!({"step": 5, "tasks": tasks, "mean_main_metric": 0.85}));
        let section = metrics_section(&spec);
        let (trec, sst) = (section.find("| trec |").unwrap(), section.find("| sst |").unwrap());
        assert!(trec < sst, "{section}");
    }

    #[test]
    fn a_model_trained_further_names_the_checkpoint_it_started_from() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        std::fs::create_dir(&base).unwrap();
        let base = base.to_string_lossy().into_owned();
        let from = |model: &str| training_section(&serde_json::json!({ "model": model }), &base, dir.path());
        let further = from("runs/first/best");
        assert!(
            further.contains(&format!("- trained further from `runs/first/best`, whose backbone came from `{base}`")),
            "{further}"
        );
        // The base model itself, however spelled, is no step of its own.
        let spelled_otherwise = format!("{}/../base", base);
        assert!(!from(&base).contains("trained further") && !from(&spelled_otherwise).contains("trained further"));
    }

    #[test]
    fn settings_read_as_a_person_writes_them() {
        let settings = serde_json::json!({"recipe": "default", "max_steps": null, "freeze": ["backbone", "layers:3"], "none": [], "lr": 8e-5, "epochs": 3});
        let read: Vec<String> =
            ["recipe", "max_steps", "freeze", "none", "lr", "epochs"].iter().map(|k| plain(&settings[*k])).collect();
        assert_eq!(read, ["default", "none", "backbone, layers:3", "none", "0.00008", "3"]);
    }
}
