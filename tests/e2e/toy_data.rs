//! A small, separable dataset written by the tests: `topic` (sport, food, weather keywords;
//! 3 classes) and `mood` (positive or negative words; 2 classes), and for the embedding task
//! kinds `similar` (sentence pairs scored 5 when they share the keyword, 2 when the keywords
//! share a topic, 0 otherwise) and `match` (a question about a keyword, whose positives are
//! the sentences that mention it).
//! Everything is signalled by keywords, so even a tiny random encoder can learn it quickly.

use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct ToyData {
    pub topic_train: PathBuf,
    pub topic_dev: PathBuf,
    pub mood_train: PathBuf,
    pub mood_dev: PathBuf,
    pub similar_train: PathBuf,
    pub similar_dev: PathBuf,
    pub match_train: PathBuf,
    pub match_dev: PathBuf,
}

impl ToyData {
    pub fn task_args(&self) -> Vec<String> {
        vec![
            "--task".into(),
            format!("topic={},{}", self.topic_train.display(), self.topic_dev.display()),
            "--task".into(),
            format!("mood={},{}", self.mood_train.display(), self.mood_dev.display()),
        ]
    }

    /// `--task` flags of the similarity (`similar`) and pairs (`match`) tasks.
    pub fn embedding_task_args(&self) -> Vec<String> {
        vec![
            "--task".into(),
            format!("similar={},{}", self.similar_train.display(), self.similar_dev.display()),
            "--task".into(),
            format!("match={},{}", self.match_train.display(), self.match_dev.display()),
        ]
    }
}

const TOPICS: &[(&str, &[&str])] = &[
    ("sport", &["football", "goal", "match", "team", "tennis", "coach"]),
    ("food", &["pizza", "bread", "cheese", "soup", "salad", "cake"]),
    ("weather", &["rain", "snow", "storm", "cloud", "wind", "fog"]),
];
const MOODS: &[(&str, &[&str])] = &[
    ("positive", &["happy", "great", "wonderful", "lovely", "excellent", "good"]),
    ("negative", &["sad", "awful", "terrible", "horrible", "bad", "miserable"]),
];
const TRAIN_TEMPLATES: &[&str] = &[
    "we talked about the {} all day",
    "the {} was in the news",
    "{} again today",
    "my friend likes the {}",
    "there is {}",
    "{}",
    "everyone mentioned {} at lunch",
    "she wrote about {} yesterday",
];
const DEV_TEMPLATES: &[&str] = &["nothing but {} here", "they said {} twice"];

fn write(path: &Path, classes: &[(&str, &[&str])], templates: &[&str]) {
    let mut text = String::from("text,label\n");
    for template in templates {
        for (label, words) in classes {
            for word in *words {
                text.push_str(&format!("{},{label}\n", template.replace("{}", word)));
            }
        }
    }
    std::fs::write(path, text).unwrap();
}

/// Pairs of sentences from `templates` scored by their keywords: 5 for the same keyword, 2 for
/// keywords of the same topic, 0 otherwise.
fn write_similarity(path: &Path, templates: &[&str]) {
    let words: Vec<(usize, &str)> =
        TOPICS.iter().enumerate().flat_map(|(t, (_, words))| words.iter().map(move |w| (t, *w))).collect();
    let mut text = String::from("sentence1,sentence2,score\n");
    for (i, (topic, word)) in words.iter().enumerate() {
        for (j, (other_topic, other)) in words.iter().enumerate().filter(|(j, _)| (j + i) % 3 == 0) {
            let first = templates[i % templates.len()].replace("{}", word);
            let second = templates[(j + 1) % templates.len()].replace("{}", other);
            let score = if i == j {
                5
            } else if topic == other_topic {
                2
            } else {
                0
            };
            text.push_str(&format!("{first},{second},{score}\n"));
        }
    }
    std::fs::write(path, text).unwrap();
}

/// Per keyword, one anchor (`question` with the keyword) paired with each template's sentence:
/// an anchor's positives are every sentence that mentions its keyword.
fn write_pairs(path: &Path, question: &str, templates: &[&str]) {
    let mut text = String::from("anchor,positive\n");
    for (_, words) in TOPICS.iter().chain(MOODS) {
        for word in *words {
            for template in templates {
                text.push_str(&format!("{},{}\n", question.replace("{}", word), template.replace("{}", word)));
            }
        }
    }
    std::fs::write(path, text).unwrap();
}

/// A retrieval-shaped pairs file (`anchor,positive`): each keyword alone as the query, and as
/// its passage one to all of the training templates about it in a row, so a batch mixes
/// queries of a few tokens with passages of up to fifty.
pub fn write_passages(path: &Path) {
    let mut text = String::from("anchor,positive\n");
    for (_, words) in TOPICS.iter().chain(MOODS) {
        for (i, word) in words.iter().enumerate() {
            for sentences in [1 + i % 3, 4 + i % 5, TRAIN_TEMPLATES.len()] {
                let passage: Vec<String> = TRAIN_TEMPLATES[..sentences].iter().map(|t| t.replace("{}", word)).collect();
                text.push_str(&format!("{word},{}\n", passage.join(" and ")));
            }
        }
    }
    std::fs::write(path, text).unwrap();
}

pub fn write_toy_data(dir: &Path) -> ToyData {
    let data = ToyData {
        topic_train: dir.join("topic_train.csv"),
        topic_dev: dir.join("topic_dev.csv"),
        mood_train: dir.join("mood_train.csv"),
        mood_dev: dir.join("mood_dev.csv"),
        similar_train: dir.join("similar_train.csv"),
        similar_dev: dir.join("similar_dev.csv"),
        match_train: dir.join("match_train.csv"),
        match_dev: dir.join("match_dev.csv"),
    };
    write(&data.topic_train, TOPICS, TRAIN_TEMPLATES);
    write(&data.topic_dev, TOPICS, DEV_TEMPLATES);
    write(&data.mood_train, MOODS, TRAIN_TEMPLATES);
    write(&data.mood_dev, MOODS, DEV_TEMPLATES);
    write_similarity(&data.similar_train, TRAIN_TEMPLATES);
    write_similarity(&data.similar_dev, DEV_TEMPLATES);
    write_pairs(&data.match_train, "a question about {}", TRAIN_TEMPLATES);
    write_pairs(&data.match_dev, "any news on {}", DEV_TEMPLATES);
    data
}

/// Trains `model` on the toy tasks written into `dir` for `steps` steps (one CPU thread,
/// batch 8) into `dir/<run>`; `extra` adds or overrides flags. Returns the data and the run
/// directory.
pub fn train_toy_run(model: &Path, dir: &Path, run: &str, steps: usize, extra: &[&str]) -> (ToyData, PathBuf) {
    let data = write_toy_data(dir);
    let out = dir.join(run);
    let mut args: Vec<String> = vec!["train".into(), "-m".into(), model.to_string_lossy().into()];
    args.extend(data.task_args());
    args.extend(["--out".into(), out.to_string_lossy().into(), "--max-steps".into(), steps.to_string()]);
    // The plain path, not small-data mode (48 rows per class would turn it on).
    args.extend(
        ["--device", "cpu", "--threads", "1", "--batch-size", "8", "--small-data", "off", "-q"].map(String::from),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    crate::common::assert_ok(&crate::common::bin().args(&args).output().unwrap());
    (data, out)
}
