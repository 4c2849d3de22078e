//! The bad-input corpus: every input a user can get wrong, each expected to give one clear
//! `error:` line (naming the file, line, field or flag), exit code 1, and no panic; plus
//! the awkward inputs that must simply work (BOM, CRLF, one row per class, a 100k-character text).
//!
//! With SENTENCE_MTL_ERROR_TABLE=FILE the test also writes a markdown table of every case
//! and the message a user sees: that is the README's "What happens when things go wrong"
//! (scripts/error-table.sh regenerates it).

use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::common::*;
use crate::toy_data::train_toy_run;

enum Expect {
    /// One error line containing this text.
    Error(String),
    /// Success.
    Works,
}

/// What a case's stdin holds.
enum Stdin {
    /// Nothing the command reads (the test harness's).
    Inherited,
    /// This text, through a pipe.
    Text(&'static str),
    /// This file, as a shell's `< FILE` gives it.
    File(String),
}

struct Case {
    group: &'static str,
    what: &'static str,
    args: Vec<String>,
    stdin: Stdin,
    /// Environment variables of the run (a data-parallel launch's).
    env: Vec<(&'static str, &'static str)>,
    expect: Expect,
}

struct Corpus {
    dir: tempfile::TempDir,
    model: PathBuf,
    distil: PathBuf,
    checkpoint: PathBuf,
    /// A port something listens on, for a launch whose MASTER_PORT is taken.
    busy: std::net::TcpListener,
    /// A port nothing listened on when the corpus was made, for a rank 0 left alone.
    free_port: u16,
    cases: Vec<Case>,
}

impl Corpus {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        self.path(name)
    }

    /// A copy of the tiny DistilBERT folder, damaged by `damage`.
    fn damaged_model(&self, name: &str, damage: impl FnOnce(&Path)) -> String {
        let target = self.dir.path().join(name);
        copy_dir(&self.distil, &target);
        damage(&target);
        target.to_string_lossy().into_owned()
    }

    /// An `export --format FORMAT` of the trained checkpoint, damaged by `damage`.
    fn damaged_export(&self, format: &str, name: &str, damage: impl FnOnce(&Path)) -> String {
        let target = self.dir.path().join(name);
        let checkpoint = self.checkpoint.to_str().unwrap();
        let args = ["export", "-m", checkpoint, "--format", format, "-q", "--out", &self.path(name)];
        assert_ok(&bin().args(args).output().unwrap());
        damage(&target);
        target.to_string_lossy().into_owned()
    }

    /// A copy of the trained checkpoint, damaged by `damage`.
    fn damaged_checkpoint(&self, name: &str, damage: impl FnOnce(&Path)) -> String {
        let target = self.dir.path().join(name);
        copy_dir(&self.checkpoint, &target);
        damage(&target);
        target.to_string_lossy().into_owned()
    }

    fn add(&mut self, group: &'static str, what: &'static str, args: &[&str], expect: Expect) {
        self.cases.push(Case {
            group,
            what,
            args: args.iter().map(|s| s.to_string()).collect(),
            stdin: Stdin::Inherited,
            env: Vec::new(),
            expect,
        });
    }

    /// `train` on the tiny model with one task from `train_csv` (and `dev_csv`).
    fn train_args(&self, run: &str, task: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["train", "-m", self.model.to_str().unwrap(), "--task", task, "--out"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.push(self.path(run));
        args.extend(
            ["--device", "cpu", "--threads", "1", "--max-steps", "2", "--batch-size", "4", "-q"].map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// `train` as rank of a data-parallel launch described by `env`.
    fn add_launch(
        &mut self,
        what: &'static str,
        task: String,
        env: &[(&'static str, &'static str)],
        extra: &[&str],
        expect: Expect,
    ) {
        self.add_train("data-parallel launches", what, task, extra, expect);
        self.cases.last_mut().unwrap().env = env.to_vec();
    }

    fn add_train(&mut self, group: &'static str, what: &'static str, task: String, extra: &[&str], expect: Expect) {
        let run = format!("run-{}", self.cases.len());
        let args = self.train_args(&run, &task, extra);
        self.cases.push(Case { group, what, args, stdin: Stdin::Inherited, env: Vec::new(), expect });
    }
}

/// Rewrites the first LayerNorm weight in the model folder `dir`'s weight file as `change` makes it.
fn replace_first_layer_norm(dir: &Path, change: impl FnOnce(&Tensor) -> Tensor) {
    let path = dir.join("model.safetensors");
    let mut tensors = Tensor::read_safetensors(&path).unwrap();
    let (_, first) = tensors.iter_mut().find(|(name, _)| name.ends_with("LayerNorm.weight")).unwrap();
    *first = change(first);
    Tensor::write_safetensors(&tensors, &path).unwrap();
}

/// Rewrites the JSON file at `path` as `edit` changes it.
fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, value.to_string()).unwrap();
}

/// Makes `d` a sentence-transformers folder running the modules `kinds` in order (the
/// Transformer at the folder itself, module `i` in `i_Kind/`), with `files` written in it.
fn st_pipeline(d: &Path, kinds: &[&str], files: &[(&str, &str)]) {
    let modules: Vec<serde_json::Value> = kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let path = if *kind == "Transformer" { String::new() } else { format!("{i}_{kind}") };
            serde_json::json!({"idx": i, "name": i.to_string(), "path": path, "type": format!("sentence_transformers.models.{kind}")})
        })
        .collect();
    std::fs::write(d.join("modules.json"), serde_json::Value::from(modules).to_string()).unwrap();
    for (name, text) in files {
        std::fs::create_dir_all(d.join(name).parent().unwrap()).unwrap();
        std::fs::write(d.join(name), text).unwrap();
    }
}

fn error(text: impl Into<String>) -> Expect {
    Expect::Error(text.into())
}

fn build_corpus(test: &str) -> Option<Corpus> {
    let models = tiny_models(test)?;
    let dir = tempfile::tempdir().unwrap();
    let model = models.join("tiny-bert");
    // A small trained checkpoint with tasks topic and mood.
    let (data, checkpoint_run) = train_toy_run(&model, dir.path(), "trained", 2, &[]);
    let mut c = Corpus {
        dir,
        model,
        distil: models.join("tiny-distilbert"),
        checkpoint: checkpoint_run.join("best"),
        busy: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        free_port: std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
        cases: Vec::new(),
    };
    let m = c.model.to_string_lossy().into_owned();
    let ck = c.checkpoint.to_string_lossy().into_owned();
    let topic_train = data.topic_train.to_string_lossy().into_owned();
    let mood_dev = data.mood_dev.to_string_lossy().into_owned();

    // ---- CSV files ---------------------------------------------------------------------
    let f = c.file("no_header.csv", b"what is this?,DESC\nwho is she?,HUM\n");
    c.add_train("CSV", "header row missing", format!("q={f}"), &[], error("no_header.csv:1: the header (what is this?, DESC) fits no task kind: classification needs text, label; similarity needs sentence1, sentence2, score; pairs needs anchor, positive (and optionally negative); the first line must name the columns; --text-column and --label-column [NAME=]COL name a classification file's columns"));
    c.add_train(
        "CSV",
        "--task with a comma and no dev file",
        format!("q={topic_train},"),
        &[],
        error("nothing after the comma; give TRAIN.csv,DEV.csv, or TRAIN.csv alone for no dev set"),
    );
    let folder = c.path("a_folder.csv");
    std::fs::create_dir_all(&folder).unwrap();
    c.add_train(
        "CSV",
        "a folder given as a CSV file",
        format!("q={folder}"),
        &[],
        error("a_folder.csv is a folder, not a CSV file"),
    );
    let fifo = c.path("a_pipe.csv");
    let fifo_c = std::ffi::CString::new(fifo.clone()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0);
    c.add_train(
        "CSV",
        "a named pipe given as a CSV file (as <(head f.csv) gives)",
        format!("q={topic_train},{fifo}"),
        &[],
        error("a_pipe.csv is a pipe or device, not a file: a data file is read more than once, so write its rows to a file first"),
    );
    let f = c.file("two_ways.csv", b"text,label\nhello,1\nbye,2\nhi,2.0\nyo,10\n");
    c.add_train(
        "CSV",
        "numeric labels with one number written two ways",
        format!("q={f}"),
        &[],
        error("two_ways.csv: labels '2' and '2.0' are one number written two ways, which would make two classes (column 'label'); write each label one way"),
    );
    c.add_train(
        "CSV",
        "task names that differ only in case",
        format!("q={topic_train}"),
        &["--task", &format!("Q={topic_train}")],
        error("tasks 'q' and 'Q' differ only in case"),
    );
    let f = c.file("capitals.csv", b"Text,Label\nhi,a\nbye,b\n");
    c.add_train(
        "CSV",
        "column names in other letter case",
        format!("q={f}"),
        &[],
        error("classification needs text, label (column names are case-sensitive: 'Text' for 'text', 'Label' for 'label'; rename them, or pass --text-column/--label-column)"),
    );
    c.add_train(
        "CSV",
        "text and label columns the same",
        format!("q={topic_train}"),
        &["--text-column", "text", "--label-column", "text"],
        error("--text-column and --label-column of task 'q' are both 'text': its texts and labels must be two columns"),
    );
    let f = c.file("no_label.csv", b"text,category\nhi,a\n");
    c.add_train(
        "CSV",
        "label column missing",
        format!("q={f}"),
        &[],
        error("no_label.csv:1: the header (text, category) fits no task kind: classification needs text, label (no 'label')"),
    );
    let f = c.file("one_class.csv", b"text,label\nhi,greeting\nhello,greeting\n");
    c.add_train(
        "CSV",
        "every row with the same label",
        format!("q={f}"),
        &[],
        error("one_class.csv: every row has label 'greeting' (column 'label'); a classification task needs at least 2 classes"),
    );
    let f = c.file("twice.csv", b"text,label,text\nhi,a,hello\nbye,b,goodbye\n");
    c.add_train(
        "CSV",
        "a column named twice",
        format!("q={f}"),
        &[],
        error("twice.csv:1: the header names column 'text' more than once (columns: text, label, text)"),
    );
    let f = c.file("semicolons.csv", b"text;label\nhi;a\n");
    c.add_train(
        "CSV",
        "wrong delimiter (;)",
        format!("q={f}"),
        &[],
        error("the header looks ';'-separated; sentence-mtl reads comma-separated CSV"),
    );
    let f = c.file("tabs.csv", b"text\tlabel\nhi\ta\n");
    c.add_train(
        "CSV",
        "wrong delimiter (tab)",
        format!("q={f}"),
        &[],
        error("the header looks tab-separated; sentence-mtl reads comma-separated CSV"),
    );
    let f = c.file("quote.csv", b"text,label\nfine,a\n\"never closed,b\nnext,a\n");
    c.add_train(
        "CSV",
        "unbalanced quote",
        format!("q={f}"),
        &[],
        error("quote.csv:3: a quoted field opens here and is never closed, so it would run to the end of the file (unbalanced quote?)"),
    );
    let f = c.file("quote_last.csv", b"label,text\na,first\nb,\"a stray quote\na,third\nb,fourth\n");
    c.add_train(
        "CSV",
        "unbalanced quote in the last column (the rows after it would become one text)",
        format!("q={f}"),
        &[],
        error("quote_last.csv:3: a quoted field opens here and is never closed"),
    );
    c.add(
        "CSV",
        "--input CSV with an unbalanced quote",
        &["encode", "-m", &m, "-i", &c.file("sentences_quote.csv", b"text\nfirst\n\"second\nthird\n")],
        error("sentences_quote.csv:3: a quoted field opens here and is never closed"),
    );
    let f = c.file("many.csv", b"text,label\nfine,a\ntoo,many,fields\n");
    c.add_train(
        "CSV",
        "row with too many fields",
        format!("q={f}"),
        &[],
        error("many.csv:3: row has 3 field(s), the header has 2"),
    );
    let f = c.file("few.csv", b"text,label\nfine,a\nlonely\n");
    c.add_train(
        "CSV",
        "row with too few fields",
        format!("q={f}"),
        &[],
        error("few.csv:3: row has 1 field(s), the header has 2"),
    );
    let f = c.file("empty_text.csv", b"text,label\nfine,a\n   ,b\n");
    c.add_train("CSV", "empty text", format!("q={f}"), &[], error("empty_text.csv:3: empty text in column 'text'"));
    let f = c.file("latin1.csv", b"text,label\nfine,a\ncaf\xe9 au lait,b\n");
    c.add_train(
        "CSV",
        "non-UTF-8 bytes",
        format!("q={f}"),
        &[],
        error("latin1.csv:3: column 'text' is not valid UTF-8 (save the file as UTF-8; from Latin-1: iconv -f latin1 -t utf-8 FILE > NEW)"),
    );
    // What a spreadsheet's "Unicode text" saves: UTF-16 with a byte-order mark.
    let utf16: Vec<u8> =
        [0xFF, 0xFE].into_iter().chain("text,label\nhi,a\n".encode_utf16().flat_map(u16::to_le_bytes)).collect();
    let f = c.file("utf16.csv", &utf16);
    c.add_train(
        "CSV",
        "UTF-16 file",
        format!("q={f}"),
        &[],
        error("utf16.csv: the file is UTF-16 text (a spreadsheet's \"Unicode text\"); save it as UTF-8"),
    );
    let f = c.file("utf16.txt", &utf16);
    c.add(
        "CSV",
        "UTF-16 text file of sentences",
        &["encode", "-m", &m, "-i", &f],
        error("utf16.txt: the file is UTF-16 text"),
    );
    let f = c.file("zipped.csv", b"PK\x03\x04\x14\x00\x00\x00\x08\x00text,label");
    c.add_train(
        "CSV",
        "a zip archive named .csv",
        format!("q={f}"),
        &[],
        error("zipped.csv: the file is a zip archive (or a spreadsheet: export it as CSV UTF-8); sentence-mtl reads UTF-8 text"),
    );
    let f = c.file("binary.csv", b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00text,label");
    c.add_train(
        "CSV",
        "a binary file named .csv",
        format!("q={f}"),
        &[],
        error("binary.csv: the file holds NUL bytes, so it is not a text file"),
    );
    let f = c.file("joined.csv", b"text,label\nfine day,pos\ntext,label\nbad day,neg\n");
    c.add_train(
        "CSV",
        "two files joined with their headers (cat a.csv b.csv)",
        format!("q={f}"),
        &[],
        error("joined.csv:3: this row repeats the header; were files joined with their headers (cat a.csv b.csv)? remove it"),
    );
    let f = c.file("negatives.csv", b"anchor,positive,negative_1,negative_2\nq,a,n,m\nr,b,o,p\n");
    c.add_train(
        "CSV",
        "a pairs file with several negative columns",
        format!("p={f}"),
        &[],
        error("negatives.csv: column 'negative_1' would not be read: a pairs file holds one hard negative per row, in a column named 'negative'"),
    );
    let f = c.file("empty.csv", b"");
    c.add_train(
        "CSV",
        "empty file",
        format!("q={f}"),
        &[],
        error("empty.csv: the file is empty (expected a header row naming the columns)"),
    );
    let f = c.file("header_only.csv", b"text,label\n");
    c.add_train(
        "CSV",
        "header but no rows",
        format!("q={f}"),
        &[],
        error("header_only.csv: no data rows, only a header"),
    );
    c.add_train(
        "CSV",
        "file does not exist",
        "q=/no/such/train.csv".into(),
        &[],
        error("cannot open /no/such/train.csv"),
    );
    let dev = c.file("dev_unknown.csv", b"text,label\nfootball,sport\ntrumpet,music\n");
    c.add_train(
        "CSV",
        "dev label not in the training data",
        format!("topic={topic_train},{dev}"),
        &[],
        error("1 dev row(s) have labels that the training file"),
    );
    let dev = c.file("dev_label_lines.csv", b"text,label\nfootball,\"spo\nrt\"\n");
    c.add_train(
        "CSV",
        "dev label with a line break inside its quotes",
        format!("topic={topic_train},{dev}"),
        &[],
        error("does not have: 'spo\\nrt' (1 row, first at line 2)"),
    );
    let numbers_train = c.file("numbers_train.csv", b"text,label\ngood film,1\nbad film,0\nnice one,1\nawful,0\n");
    let numbers_dev = c.file("numbers_dev.csv", b"text,label\ngreat,1.0\nterrible,0.0\n");
    c.add_train(
        "CSV",
        "dev labels that are the training labels' numbers written another way (1.0 for 1)",
        format!("q={numbers_train},{numbers_dev}"),
        &[],
        error("'1.0' is label '1' written another way, '0.0' is label '0' written another way (write the labels alike in both files)"),
    );
    c.add(
        "CSV",
        "eval label the model was not trained on",
        &[
            "eval",
            "-m",
            &ck,
            "--device",
            "cpu",
            "--task",
            &format!("mood={}", c.file("eval_unknown.csv", b"text,label\nhappy,positive\nhaha,amused\n")),
        ],
        error("labels the model was not trained on: 'amused' (1 row, first at line 3)"),
    );
    let swapped: String = (0..20).map(|i| format!("positive,sentence number {i}\n")).collect();
    c.add(
        "CSV",
        "eval file whose label column holds the texts",
        &[
            "eval",
            "-m",
            &ck,
            "--device",
            "cpu",
            "--task",
            &format!("mood={}", c.file("eval_swapped.csv", format!("text,label\n{swapped}").as_bytes())),
        ],
        error("none of its 20 distinct labels is a known one ('negative', 'positive'): is its label column the right one?"),
    );
    let topic_twice = format!("topic={topic_train}");
    let mut twice = c.train_args("run-twice", &topic_twice, &[]);
    twice.extend(["--task".to_string(), topic_twice.clone()]);
    c.cases.push(Case {
        group: "CSV",
        what: "duplicate task names",
        args: twice,
        stdin: Stdin::Inherited,
        env: Vec::new(),
        expect: error("task 'topic' is given twice"),
    });
    let f = c.file("bom_crlf.csv", b"\xef\xbb\xbftext,label\r\nfine day,a\r\nbad day,b\r\n");
    c.add_train("CSV", "UTF-8 byte-order mark and CRLF line ends", format!("q={f}"), &[], Expect::Works);
    let f = c.file("lead_blank.csv", b"\n\ntext,lable\nhello,pos\nbye,neg\n");
    c.add_train(
        "CSV",
        "blank lines before a header that lacks a column: the header's line",
        format!("q={f}"),
        &[],
        error("lead_blank.csv:3: the header (text, lable) fits no task kind"),
    );
    let f = c.file("cr_lines.csv", b"text,label\rgood film,pos\rbad film,neg\r,neg\rnice,pos\r");
    c.add_train(
        "CSV",
        "old Mac line ends (a lone CR): the line of an error",
        format!("q={f}"),
        &[],
        error("cr_lines.csv:4: empty text in column 'text'"),
    );
    let f = c.file("header_quote.csv", b"text,\"label\nhello there,pos\nbye now,neg\nfine day,pos\n");
    c.add_train(
        "CSV",
        "a quote left open in the header",
        format!("q={f}"),
        &[],
        error(
            "header_quote.csv:1: the header's quoted field \"label\" runs past the end of its line (unbalanced quote?)",
        ),
    );
    let f = c.file("one_row_per_class.csv", b"text,label\nthe first example,a\nthe second example,b\n");
    c.add_train("CSV", "one row per class", format!("q={f}"), &[], Expect::Works);
    let long = format!("text,label\n{},a\nshort,b\n", "word ".repeat(20_000));
    let f = c.file("long.csv", long.as_bytes());
    c.add_train("CSV", "a 100,000-character text (truncated to --max-length)", format!("q={f}"), &[], Expect::Works);
    c.add(
        "CSV",
        "empty input to encode",
        &["encode", "-m", &m, "-i", &c.file("empty.txt", b"")],
        error("empty.txt is empty"),
    );
    c.add(
        "CSV",
        "input of blank lines only (each an empty sentence)",
        &["encode", "-m", &m, "-i", &c.file("blank.txt", b"\n\n")],
        Expect::Works,
    );
    c.add(
        "CSV",
        "--input CSV whose sentences are all blank (each an empty sentence)",
        &["encode", "-m", &m, "-i", &c.file("blank_texts.csv", b"text,label\n,a\n ,b\n")],
        Expect::Works,
    );
    c.add(
        "CSV",
        "--input of an endless binary stream without a newline",
        &["encode", "-m", &m, "--input", "/dev/zero"],
        error("/dev/zero: the file holds NUL bytes, so it is not a text file"),
    );
    let f = c.file("sentences_header_only.csv", b"text\n");
    c.add(
        "CSV",
        "--input CSV with a header and no rows",
        &["encode", "-m", &m, "--input", &f],
        error("sentences_header_only.csv has a header but no rows"),
    );
    c.add(
        "CSV",
        "a tab-separated --input named .csv",
        &["encode", "-m", &m, "-i", &c.file("tabs.csv", b"text\tlabel\nhi\ta\n")],
        error("tabs.csv:1: no column 'text' in the header (columns: text\tlabel); the header looks tab-separated; sentence-mtl reads comma-separated CSV"),
    );
    c.add(
        "CSV",
        "--input a folder",
        &["encode", "-m", &m, "-i", &c.path("")],
        error(" is a folder; give a file of sentences"),
    );
    c.add(
        "CSV",
        "input file does not exist",
        &["encode", "-m", &m, "-i", "/no/such/file.txt"],
        error("cannot open --input /no/such/file.txt"),
    );
    c.add(
        "CSV",
        "--text-column with an input that is not .csv",
        &["encode", "-m", &m, "-i", &c.file("rows.txt", b"text\tlabel\nhi\ta\n"), "--text-column", "text"],
        error("--text-column text names a column of a .csv --input; --input "),
    );
    c.add(
        "CSV",
        "--input CSV without a text column",
        &["encode", "-m", &m, "-i", &c.file("no_text_column.csv", b"id,sentence\n1,hi\n")],
        error("no_text_column.csv:1: no column 'text' in the header (columns: id, sentence); the first line must name the columns, or name the sentences' column with --text-column"),
    );
    c.add(
        "CSV",
        "--input CSV to predict without the task's column",
        &["predict", "-m", &ck, "--task", "mood", "-i", &c.file("no_text_column.csv", b"id,sentence\n1,hi\n")],
        error("no_text_column.csv:1: no column 'text' in the header (columns: id, sentence); the first line must name the columns, or name the sentences' column with --text-column"),
    );
    c.add(
        "CSV",
        "a JSONL --input",
        &["encode", "-m", &m, "-i", &c.file("rows.jsonl", b"{\"text\": \"hi\"}\n")],
        error("rows.jsonl: .jsonl files are not read; give a .csv (column --text-column) or a text file of one sentence per line"),
    );
    c.cases.push(Case {
        group: "CSV",
        what: "nothing on stdin",
        args: vec!["encode".into(), "-m".into(), m.clone()],
        stdin: Stdin::Text(""),
        env: Vec::new(),
        expect: error("stdin is empty"),
    });
    c.cases.push(Case {
        group: "CSV",
        what: "`-i -` and `-o -` (stdin and stdout)",
        args: ["encode", "-m", &m, "-i", "-", "-o", "-", "-q"].map(String::from).to_vec(),
        stdin: Stdin::Text("a sentence\nanother\n"),
        env: Vec::new(),
        expect: Expect::Works,
    });
    c.cases.push(Case {
        group: "CSV",
        what: "sentences as arguments and `-i -` (stdin)",
        args: ["encode", "-m", &m, "-i", "-", "hello"].map(String::from).to_vec(),
        stdin: Stdin::Text("a sentence\n"),
        env: Vec::new(),
        expect: error("give sentences either as arguments or with --input, not both"),
    });
    c.add(
        "CSV",
        "a one-column --input CSV with a quoted empty cell (an empty sentence)",
        &["encode", "-m", &m, "-q", "-i", &c.file("quoted_empty.csv", b"text\nfirst\n\"\"\nthird\n")],
        Expect::Works,
    );
    let users = c.dir.path().join("users_folder");
    std::fs::create_dir_all(&users).unwrap();
    std::fs::write(users.join("metrics.json"), "mine\n").unwrap();
    c.add(
        "CSV",
        "eval --out a folder of the user's files",
        &["eval", "-m", &ck, "--task", &format!("mood={mood_dev}"), "--out", &users.to_string_lossy()],
        error("users_folder already holds files that are not an eval report; choose an empty or new folder, or one an earlier eval wrote"),
    );
    let report = c.path("report");
    for what in ["eval --out a new folder", "eval --out the same folder again (replaces its report)"] {
        c.add(
            "CSV",
            what,
            &["eval", "-m", &ck, "--task", &format!("mood={mood_dev}"), "--out", &report],
            Expect::Works,
        );
    }
    c.add(
        "CSV",
        "eval --out with task names that differ only in case",
        &["eval", "-m", &ck, "--task", &format!("mood={mood_dev}"), "--task", &format!("Mood={mood_dev}"), "--out", &c.path("cased")],
        error("tasks 'mood' and 'Mood' differ only in case: their report files in --out would be one file on macOS and Windows"),
    );
    c.add(
        "CSV",
        "eval task not in the checkpoint",
        &["eval", "-m", &ck, "--task", &format!("nope={mood_dev}")],
        error("unknown task 'nope' (this model has: topic, mood)"),
    );
    c.add(
        "CSV",
        "eval column flag for a task not evaluated",
        &["eval", "-m", &ck, "--task", &format!("mood={mood_dev}"), "--text-column", "topic=sentence"],
        error("--text-column topic=sentence: no task named 'topic' (tasks: mood)"),
    );
    c.add(
        "CSV",
        "predict task not in the checkpoint",
        &["predict", "-m", &ck, "--task", "nope", "hello"],
        error("unknown task 'nope' (this model has: topic, mood)"),
    );

    // ---- similarity and pairs tasks ----------------------------------------------------
    let sim =
        |c: &mut Corpus, name: &str, rows: &str| c.file(name, format!("sentence1,sentence2,score\n{rows}").as_bytes());
    let f = sim(&mut c, "sim_word.csv", "a cat sits,a cat sat,4.5\na dog runs,the sky is blue,high\n");
    c.add_train(
        "similarity and pairs",
        "similarity score not a number",
        format!("s={f}"),
        &[],
        error("sim_word.csv:3: score 'high' in column 'score' is not a finite number"),
    );
    let f = sim(&mut c, "sim_missing.csv", "a cat sits,a cat sat,4.5\na dog runs,the sky is blue,\n");
    c.add_train(
        "similarity and pairs",
        "similarity score missing",
        format!("s={f}"),
        &[],
        error("sim_missing.csv:3: empty score in column 'score'"),
    );
    let f = sim(&mut c, "sim_equal.csv", "a cat sits,a cat sat,3\na dog runs,the sky is blue,3\n");
    c.add_train(
        "similarity and pairs",
        "similarity scores all equal",
        format!("s={f}"),
        &[],
        error("sim_equal.csv: every score is 3; similarity needs scores that differ"),
    );
    let f = sim(&mut c, "sim_near_equal.csv", "a cat sits,a cat sat,10000.001\na dog runs,the sky is blue,10000.002\n");
    c.add_train(
        "similarity and pairs",
        "similarity scores that differ only past 32-bit precision",
        format!("s={f}"),
        &[],
        error("sim_near_equal.csv: the scores, from 10000.001 to 10000.002, differ only past 32-bit precision"),
    );
    let f = sim(&mut c, "sim_huge.csv", "a cat sits,a cat sat,3e38\na dog runs,the sky is blue,-3e38\n");
    c.add_train(
        "similarity and pairs",
        "similarity scores spanning more than a number holds",
        format!("s={f}"),
        &[],
        error("sim_huge.csv: scores from -3e38 to 3e38 span more than a number can hold; rescale them (STS-B's are 0 to 5)"),
    );
    let f = sim(&mut c, "sim_past_f32.csv", "a cat sits,a cat sat,1\na dog runs,the sky is blue,1e39\n");
    c.add_train(
        "similarity and pairs",
        "similarity score past 32-bit numbers",
        format!("s={f}"),
        &["--similarity-loss", "cosine-mse"],
        error("sim_past_f32.csv:3: score '1e39' in column 'score' is beyond what training's 32-bit numbers hold (about 3.4e38); rescale the scores (STS-B's are 0 to 5)"),
    );
    let f = sim(&mut c, "sim_empty.csv", "a cat sits, ,4\na dog runs,the sky is blue,0\n");
    c.add_train(
        "similarity and pairs",
        "similarity sentence empty",
        format!("s={f}"),
        &[],
        error("sim_empty.csv:2: empty text in column 'sentence2'"),
    );
    let good_sim = sim(
        &mut c,
        "sim_good.csv",
        "a cat sits,a cat sat,4.5\na dog runs,the sky is blue,0.2\nhe reads,he is reading,4\n",
    );
    c.add_train(
        "similarity and pairs",
        "--similarity-loss for a classification task",
        format!("topic={topic_train}"),
        &["--similarity-loss", "topic=cosent"],
        error("--similarity-loss topic=cosent: task 'topic' is a classification task, not a similarity task"),
    );
    c.add_train(
        "similarity and pairs",
        "--similarity-loss unknown",
        format!("s={good_sim}"),
        &["--similarity-loss", "mse"],
        error("unknown --similarity-loss 'mse' (expected cosent or cosine-mse)"),
    );
    c.add_train(
        "similarity and pairs",
        "--similarity-loss unknown, with no similarity task",
        format!("topic={topic_train}"),
        &["--similarity-loss", "mse"],
        error("unknown --similarity-loss 'mse' (expected cosent or cosine-mse)"),
    );
    c.add_train("similarity and pairs", "--task-kind contradicting the header", format!("s={good_sim}"), &["--task-kind", "s=pairs"], error("sim_good.csv:1: the header (sentence1, sentence2, score) is not a pairs file: pairs needs anchor, positive (and optionally negative)"));
    c.add_train(
        "similarity and pairs",
        "--task-kind unknown",
        format!("s={good_sim}"),
        &["--task-kind", "s=regression"],
        error(
            "--task-kind s=regression: unknown task kind 'regression' (expected classification, similarity or pairs)",
        ),
    );
    let f = c.file("pairs_empty.csv", b"anchor,positive\nwhat is a cat,a cat is an animal\n  ,an empty anchor\n");
    c.add_train(
        "similarity and pairs",
        "pairs anchor empty",
        format!("p={f}"),
        &[],
        error("pairs_empty.csv:3: empty text in column 'anchor'"),
    );
    let f = c.file("pairs_noneg.csv", b"anchor,positive,negative\nwhat is a cat,a cat is an animal,\n");
    c.add_train(
        "similarity and pairs",
        "pairs negative empty",
        format!("p={f}"),
        &[],
        error("pairs_noneg.csv:2: empty text in column 'negative'"),
    );
    let f = c.file("pairs_one_row.csv", b"anchor,positive\na,b\n");
    c.add_train(
        "similarity and pairs",
        "pairs file of one row",
        format!("p={f}"),
        &[],
        error("pairs_one_row.csv has only 1 row; in-batch negatives need several rows"),
    );
    let pairs_train =
        c.file("pairs_ok.csv", b"anchor,positive\nwhat is a cat,a cat is an animal\nwho wrote it,she wrote it\n");
    let one_candidate = c.file("pairs_one_candidate.csv", b"anchor,positive\nwhat is a cat,a cat is an animal\n");
    c.add_train(
        "similarity and pairs",
        "pairs dev file with one candidate text",
        format!("p={pairs_train},{one_candidate}"),
        &[],
        error("pairs_one_candidate.csv: one candidate text (positives and negatives, as the model reads them) to search, which every query finds first whatever the model"),
    );
    c.add(
        "similarity and pairs",
        "eval of a pairs file with one candidate text",
        &["eval", "-m", &m, "--task", &format!("p={one_candidate}"), "-q"],
        error("so its retrieval metrics would always be 1; give several rows with different positives"),
    );
    let f = sim(&mut c, "sim_one_row.csv", "a cat sits,a cat sat,3\n");
    c.add_train(
        "similarity and pairs",
        "similarity file of one row",
        format!("s={f}"),
        &[],
        error("sim_one_row.csv has only 1 row; similarity needs several, with scores that differ"),
    );
    let f = c.file("pairs_same.csv", b"anchor,positive\na,b\na,b\nc,b\n");
    c.add_train(
        "similarity and pairs",
        "pairs whose rows all share one positive",
        format!("p={f}"),
        &[],
        error("pairs_same.csv: every row has the same positive; no batch holds a text twice, so every batch would hold one row, and in-batch negatives need several"),
    );
    let f = c.file(
        "pairs_one_anchor.csv",
        b"anchor,positive
a,b
a,c
a,d
",
    );
    c.add_train(
        "similarity and pairs",
        "pairs whose rows all share one anchor",
        format!("p={f}"),
        &[],
        error("pairs_one_anchor.csv: every row has the same anchor; no batch holds a text twice"),
    );
    let f = c.file(
        "pairs_cycle.csv",
        b"anchor,positive
a,b
b,c
c,a
",
    );
    c.add_train(
        "similarity and pairs",
        "pairs of which every two rows share a text",
        format!("p={f}"),
        &[],
        error("pairs_cycle.csv: every two rows share a text, and no batch holds a text twice, so every batch would hold one row; in-batch negatives need rows with different texts"),
    );
    let f = c.file(
        "pairs_cased.csv",
        b"anchor,positive\nthe capital of France,Paris\nthe largest French city,paris\na city on the Seine,PARIS \n",
    );
    c.add_train(
        "similarity and pairs",
        "pairs whose positives differ only in case and spaces (one text to a lower-casing model)",
        format!("p={f}"),
        &[],
        error("pairs_cased.csv: every two rows share a text, and no batch holds a text twice"),
    );
    let good_pairs = c
        .file("pairs_good.csv", b"anchor,positive\nwhat is a cat,a cat is an animal\nwhere is Rome,Rome is in Italy\n");
    c.add_train(
        "similarity and pairs",
        "pairs task with batch size 1",
        format!("p={good_pairs}"),
        &["--batch-size", "1"],
        error(
            "--batch-size 1: task 'p' is a pairs task, whose loss (in-batch negatives) needs at least 2 rows per batch",
        ),
    );
    let mut args = c.train_args("run-tokens", &format!("p={good_pairs}"), &["--batch-tokens", "10"]);
    let batch_size = args.iter().position(|a| a == "--batch-size").unwrap();
    args.drain(batch_size..batch_size + 2);
    c.add(
        "similarity and pairs",
        "pairs task with a token budget of one row",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        error("--batch-tokens 10: task 'p' is a pairs task whose longest rows (2 texts of 7 tokens) must fit 2 to a batch for its loss (in-batch negatives); give --batch-tokens 28 or more"),
    );
    c.add_train(
        "similarity and pairs",
        "similarity task (CoSENT) with batch size 1",
        format!("s={good_sim}"),
        &["--batch-size", "1"],
        error("--batch-size 1: task 's' is a similarity task, whose loss (CoSENT) needs at least 2 rows per batch"),
    );
    c.add_train(
        "similarity and pairs",
        "similarity task (cosine-mse) with batch size 1",
        format!("s={good_sim}"),
        &["--batch-size", "1", "--similarity-loss", "cosine-mse"],
        Expect::Works,
    );
    let mut args = c.train_args("run-sim-tokens", &format!("s={good_sim}"), &["--batch-tokens", "10"]);
    let batch_size = args.iter().position(|a| a == "--batch-size").unwrap();
    args.drain(batch_size..batch_size + 2);
    c.add(
        "similarity and pairs",
        "similarity task (CoSENT) with a token budget of one row",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        error("task 's' is a similarity task whose longest rows"),
    );
    c.add(
        "similarity and pairs",
        "a dev file of another kind",
        &c.train_args("run-devkind", &format!("s={good_sim},{good_pairs}"), &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        error("pairs_good.csv:1: the header (anchor, positive) is not a similarity file"),
    );
    let sim_run = c.path("sim-run");
    assert_ok(&bin().args(c.train_args("sim-run", &format!("s={good_sim}"), &[])).output().unwrap());
    c.add(
        "similarity and pairs",
        "predict with a similarity task",
        &["predict", "-m", &format!("{sim_run}/best"), "--task", "s", "hi"],
        error("task 's' is a similarity task: it has no head (what it trains is the embeddings"),
    );
    c.add_train(
        "similarity and pairs",
        "--freeze head: of a similarity task",
        format!("s={good_sim}"),
        &["--freeze", "head:s"],
        error("--freeze head:s: task 's' is a similarity task: it has no head"),
    );
    c.add_train(
        "similarity and pairs",
        "--freeze backbone with a similarity task and no projection",
        format!("s={good_sim}"),
        &["--freeze", "backbone", "--projection-dim", "0"],
        error("--freeze backbone leaves task 's' nothing to train: it has no head and learns through the encoder alone; add --projection-dim N"),
    );
    c.add_train(
        "similarity and pairs",
        "--freeze backbone with a similarity task and a projection",
        format!("s={good_sim}"),
        &["--freeze", "backbone", "--projection-dim", "8"],
        Expect::Works,
    );
    c.add(
        "similarity and pairs",
        "eval of a similarity file on a model without that task",
        &["eval", "-m", &m, "--task", &format!("sts={good_sim}")],
        Expect::Works,
    );
    c.add(
        "similarity and pairs",
        "eval of a pairs file on a model without that task",
        &["eval", "-m", &m, "--task", &format!("qa={good_pairs}")],
        Expect::Works,
    );

    c.add_train(
        "similarity and pairs",
        "--pairs-scale too large",
        format!("qa={good_pairs}"),
        &["--pairs-scale", "5e4"],
        error("--pairs-scale must be at most 10000 (a softmax temperature of 1e-4), got 50000"),
    );

    // ---- frozen backbone ----------------------------------------------------------------
    c.add_train(
        "frozen backbone",
        "--dropout out of range",
        format!("topic={topic_train}"),
        &["--dropout", "1.5"],
        error("--dropout must be in [0, 1), got 1.5"),
    );
    c.add_train(
        "frozen backbone",
        "feature cache over its budget",
        format!("topic={topic_train}"),
        &["--freeze", "backbone", "--feature-cache-budget", "0"],
        error("more than --feature-cache-budget 0 MB; raise the budget, or pass --no-feature-cache"),
    );

    // ---- recipes ------------------------------------------------------------------------
    for (case, flags, message) in [
        ("unknown --recipe", ["--recipe", "fast"], "unknown --recipe 'fast' (expected default or seed)"),
        (
            "unknown --lr-schedule",
            ["--lr-schedule", "step"],
            "unknown --lr-schedule 'step' (expected linear, cosine or constant)",
        ),
        (
            "--label-smoothing out of range",
            ["--label-smoothing", "1.5"],
            "--label-smoothing must be in [0, 1), got 1.5",
        ),
        (
            "unknown --class-weights",
            ["--class-weights", "auto"],
            "unknown --class-weights 'auto' (expected none or balanced)",
        ),
        ("unknown --small-data", ["--small-data", "yes"], "unknown --small-data 'yes' (expected auto, on or off)"),
    ] {
        c.add_train("recipes", case, format!("topic={topic_train}"), &flags, error(message));
    }

    // ---- data-parallel launches ----------------------------------------------------------
    let t = || format!("topic={topic_train}");
    c.add_launch(
        "WORLD_SIZE not a number",
        t(),
        &[("WORLD_SIZE", "two")],
        &[],
        error("environment variable WORLD_SIZE=\"two\" is not a whole number"),
    );
    c.add_launch(
        "WORLD_SIZE without RANK",
        t(),
        &[("WORLD_SIZE", "2")],
        &[],
        error("WORLD_SIZE=2 is set but RANK is not"),
    );
    c.add_launch(
        "RANK other than 0 with WORLD_SIZE=1 and no MASTER_PORT",
        t(),
        &[("WORLD_SIZE", "1"), ("RANK", "1")],
        &[],
        error("environment variable RANK=1 is out of range for WORLD_SIZE=1 (0 to 0)"),
    );
    c.add_launch(
        "RANK other than 0 without WORLD_SIZE",
        t(),
        &[("RANK", "1")],
        &[],
        error("environment variable RANK=1 is set but WORLD_SIZE is not (torchrun sets both)"),
    );
    c.add_launch(
        "--device cuda:N in a launch",
        t(),
        &[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "29500")],
        &[],
        error("--device cuda:1 names one GPU, but in a data-parallel launch each rank runs on its own, cuda:LOCAL_RANK; give --device cuda (CUDA_VISIBLE_DEVICES chooses which GPUs the launch sees)"),
    );
    let device = c.cases.last_mut().unwrap().args.iter_mut().find(|a| *a == "cpu").unwrap();
    *device = "cuda:1".to_string();
    c.add_launch(
        "GLOO_SOCKET_IFNAME naming no interface of this machine",
        t(),
        &[("WORLD_SIZE", "2"), ("RANK", "0"), ("GLOO_SOCKET_IFNAME", "nosuch9")],
        &[],
        error("environment variable GLOO_SOCKET_IFNAME=nosuch9: this machine has no network interface nosuch9"),
    );
    c.add_launch(
        "RANK out of range",
        t(),
        &[("WORLD_SIZE", "2"), ("RANK", "2")],
        &[],
        error("RANK=2 is out of range for WORLD_SIZE=2 (0 to 1)"),
    );
    c.add_launch(
        "launch of one process, RANK out of range",
        t(),
        &[("WORLD_SIZE", "1"), ("RANK", "1"), ("MASTER_PORT", "29500")],
        &[],
        error("RANK=1 is out of range for WORLD_SIZE=1 (0 to 0)"),
    );
    c.add_launch(
        "MASTER_PORT not a port",
        t(),
        &[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "70000")],
        &[],
        error("MASTER_PORT=\"70000\" is not a port number"),
    );
    c.add_launch(
        "rendezvous host not reachable",
        t(),
        &[("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")],
        &["--dist-timeout", "2"],
        error("rank 1: cannot join the process group of 2 at 127.0.0.1:1 within 2s"),
    );
    let free_port: &'static str = String::leak(c.free_port.to_string());
    c.add_launch(
        "rank 0 started without the others",
        t(),
        &[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", free_port)],
        &["--dist-timeout", "2"],
        error("rank 0: rank 1 of 2 did not join the process group at 127.0.0.1:"),
    );
    let busy_port: &'static str = String::leak(c.busy.local_addr().unwrap().port().to_string());
    c.add_launch(
        "MASTER_PORT taken by another program",
        t(),
        &[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", busy_port)],
        &["--dist-timeout", "2"],
        error(format!("rank 0: MASTER_PORT {busy_port} is in use on 127.0.0.1 (by another launch or program)")),
    );
    c.add_launch(
        "MASTER_PORT taken by a program that is no store, seen by rank 1",
        t(),
        &[("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", busy_port)],
        &["--dist-timeout", "1"],
        error(format!("rank 1: cannot join the process group of 2 at 127.0.0.1:{busy_port} within 7s (twice --dist-timeout, and 5 s): no c10d store answers there")),
    );
    c.add_launch(
        "--dist-timeout 0",
        t(),
        &[("WORLD_SIZE", "2"), ("RANK", "0")],
        &["--dist-timeout", "0"],
        error("--dist-timeout must be 1 to 604800 seconds (a week), got 0"),
    );
    c.add_launch(
        "--dist-timeout beyond a week",
        t(),
        &[("WORLD_SIZE", "2"), ("RANK", "1")],
        &["--dist-timeout", "18446744073709551615"],
        error("--dist-timeout must be 1 to 604800 seconds (a week), got 18446744073709551615"),
    );

    // ---- models and checkpoints --------------------------------------------------------
    c.add(
        "model",
        "model folder does not exist",
        &["encode", "-m", "./no/such/model", "hi"],
        error("model folder ./no/such/model does not exist"),
    );
    c.add(
        "model",
        "a run directory instead of its checkpoint",
        &["encode", "-m", &checkpoint_run.to_string_lossy(), "hi"],
        error("is a run directory; pass one of its checkpoints, e.g. --model"),
    );
    let typo = format!("{}/bset", checkpoint_run.display());
    c.add(
        "model",
        "a mistyped checkpoint of a local run (not a hub id)",
        &["encode", "-m", &typo, "hi"],
        error("holds the folders: best, last)"),
    );
    let f = c.damaged_model("no_weights", |d| std::fs::remove_file(d.join("model.safetensors")).unwrap());
    c.add("model", "no weights file", &["encode", "-m", &f, "hi"], error("no model.safetensors or rust_model.ot in"));
    let f = c.damaged_model("truncated", |d| {
        let p = d.join("model.safetensors");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    });
    c.add("model", "truncated safetensors", &["encode", "-m", &f, "hi"], error("cannot read weights"));
    let f = c.damaged_model("corrupt", |d| {
        std::fs::write(d.join("model.safetensors"), b"\xff\xff\xff\xff garbage").unwrap()
    });
    c.add("model", "corrupt safetensors", &["encode", "-m", &f, "hi"], error("cannot read weights"));
    let f = c.damaged_model("pickle", |d| {
        std::fs::remove_file(d.join("model.safetensors")).unwrap();
        std::fs::write(d.join("pytorch_model.bin"), b"PK pickle").unwrap();
    });
    c.add(
        "model",
        "only a pickled pytorch_model.bin",
        &["encode", "-m", &f, "hi"],
        error("a pickle file, which sentence-mtl does not load"),
    );
    let f = c.damaged_model("tanh_dense", |d| {
        let tanh = r#"{"in_features": 32, "out_features": 8, "bias": true,
            "activation_function": "torch.nn.modules.activation.Tanh"}"#;
        st_pipeline(d, &["Transformer", "Dense"], &[("1_Dense/config.json", tanh)]);
    });
    c.add(
        "model",
        "a sentence-transformers Dense module with a non-linear activation",
        &["encode", "-m", &f, "hi"],
        error("1_Dense/config.json: a Dense module with activation torch.nn.modules.activation.Tanh is not supported"),
    );
    let f = c.damaged_model("pickled_dense", |d| {
        let config = r#"{"in_features": 32, "out_features": 8, "bias": true,
            "activation_function": "torch.nn.modules.linear.Identity"}"#;
        let files = [("1_Dense/config.json", config), ("1_Dense/pytorch_model.bin", "PK pickle")];
        st_pipeline(d, &["Transformer", "Dense"], &files);
    });
    c.add(
        "model",
        "a sentence-transformers Dense module saved only as a pickle",
        &["encode", "-m", &f, "hi"],
        error("1_Dense holds only pytorch_model.bin, a pickle file, which sentence-mtl does not load; convert it once with sentence-transformers: SentenceTransformer(MODEL).save(MODEL)"),
    );
    let f = c.damaged_model("transformer_in_subfolder", |d| {
        let module = d.join("0_Transformer");
        std::fs::create_dir(&module).unwrap();
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::rename(&path, module.join(path.file_name().unwrap())).unwrap();
            }
        }
        let modules =
            r#"[{"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}]"#;
        std::fs::write(d.join("modules.json"), modules).unwrap();
    });
    c.add(
        "model",
        "a sentence-transformers folder with its Transformer in a subfolder (the older layout)",
        &["encode", "-m", &f, "hi"],
        error("transformer_in_subfolder is a sentence-transformers folder of the older layout, its Transformer module in 0_Transformer/, which sentence-mtl does not read: move the files of 0_Transformer/ into"),
    );
    let f = c.damaged_model("transformer_path_missing", |d| {
        let modules =
            r#"[{"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}]"#;
        std::fs::write(d.join("modules.json"), modules).unwrap();
    });
    c.add(
        "model",
        "a sentence-transformers folder whose Transformer path names no model",
        &["encode", "-m", &f, "hi"],
        error("modules.json: the Transformer module's path is \"0_Transformer\", which holds no config.json; set it to \"\" where the model's files are in"),
    );
    let f = c.damaged_model("module_outside", |d| {
        let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "../elsewhere/1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#;
        std::fs::write(d.join("modules.json"), modules).unwrap();
    });
    c.add(
        "model",
        "a sentence-transformers module outside the model folder",
        &["encode", "-m", &f, "hi"],
        error("modules.json: the Pooling module's path \"../elsewhere/1_Pooling\" leaves the model folder; a model's modules are inside it"),
    );
    let f = c.damaged_model("config_link", |d| {
        std::fs::remove_file(d.join("config.json")).unwrap();
        std::os::unix::fs::symlink("../../blobs/0123", d.join("config.json")).unwrap();
    });
    c.add(
        "model",
        "config.json a link to nothing (a cache snapshot copied without its blobs)",
        &["encode", "-m", &f, "hi"],
        error("config_link/config.json is a symbolic link to ../../blobs/0123, which does not exist (a Hugging Face cache snapshot copied without its blobs? `cp -rL` copies the files the links point to)"),
    );
    let link = c.path("model_link");
    std::os::unix::fs::symlink(c.path("no_such_model"), &link).unwrap();
    c.add(
        "model",
        "--model a link to nothing",
        &["encode", "-m", &link, "hi"],
        error("model_link is a symbolic link to "),
    );
    let f = c.damaged_model("no_config", |d| std::fs::remove_file(d.join("config.json")).unwrap());
    c.add(
        "model",
        "config.json missing",
        &["encode", "-m", &f, "hi"],
        error("no_config is not a model folder: no config.json (it holds: "),
    );
    let f = c.damaged_model("big_vocab", |d| {
        let mut vocab = std::fs::read_to_string(d.join("vocab.txt")).unwrap();
        vocab.push_str("zzqqxx\n");
        std::fs::write(d.join("vocab.txt"), vocab).unwrap();
        // A vocab.txt grown alone disagrees with tokenizer.json first (its own case).
        std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    });
    c.add(
        "model",
        "vocab.txt with more tokens than the embedding table",
        &["encode", "-m", &f, "hello zzqqxx"],
        error("tokens, but config.json's vocab_size is "),
    );
    // config.json edited, as a text editor would (one value replaced).
    let edit_config = |d: &Path, from: &str, to: &str| {
        let config = std::fs::read_to_string(d.join("config.json")).unwrap();
        assert!(config.contains(from), "{config}");
        std::fs::write(d.join("config.json"), config.replace(from, to)).unwrap();
    };
    let f = c.damaged_model("fewer_layers", |d| edit_config(d, "\"n_layers\": 2", "\"n_layers\": 1"));
    c.add(
        "model",
        "config.json counting fewer blocks than the weights",
        &["encode", "-m", &f, "hi"],
        error("model.safetensors has 2 transformer blocks, but config.json's n_layers is 1; make them agree"),
    );
    c.add(
        "model",
        "training from config.json counting fewer blocks than the weights",
        &["train", "-m", &f, "--task", &format!("topic={topic_train}"), "--out", &c.path("run-fewer"), "-q"],
        error("has 2 transformer blocks, but config.json's n_layers is 1"),
    );
    let f = c.damaged_model("many_layers", |d| edit_config(d, "\"n_layers\": 2", "\"n_layers\": 1000"));
    c.add(
        "model",
        "training from config.json counting far more blocks than the weights (checked before building)",
        &["train", "-m", &f, "--task", &format!("topic={topic_train}"), "--out", &c.path("run-many-layers"), "-q"],
        error("tensor(s) this model needs, e.g. distilbert.transformer.layer.10."),
    );
    let f = c.damaged_model("billion_layers", |d| edit_config(d, "\"n_layers\": 2", "\"n_layers\": 1000000000"));
    c.add(
        "model",
        "config.json counting more blocks than any encoder has",
        &["encode", "-m", &f, "hi"],
        error("n_layers 1000000000 is more blocks than sentence-mtl reads (at most 1024); is config.json damaged?"),
    );
    let f = c.damaged_model("huge_vocab", |d| edit_config(d, "\"vocab_size\": 30522", "\"vocab_size\": 4000000000"));
    c.add(
        "model",
        "training from config.json with a vocab_size far past the weights' (checked before building)",
        &["train", "-m", &f, "--task", &format!("topic={topic_train}"), "--out", &c.path("run-huge-vocab"), "-q"],
        error("does not fit the model's configuration; mismatches: distilbert.embeddings.word_embeddings.weight: file [30522, 32], model [4000000000, 32]"),
    );
    let f = c.damaged_model("dropout_above_one", |d| edit_config(d, "\"dropout\": 0.1", "\"dropout\": 1.5"));
    c.add(
        "model",
        "config.json dropout above 1",
        &["encode", "-m", &f, "hi"],
        error("config.json: dropout must be in [0, 1), got 1.5"),
    );
    let f = c.damaged_model("added_tokens", |d| {
        std::fs::write(d.join("added_tokens.json"), r#"{"guitarzz": 99999}"#).unwrap()
    });
    c.add(
        "model",
        "tokens added to the tokenizer",
        &["encode", "-m", &f, "hi"],
        error("has tokens added to its tokenizer ('guitarzz'), which transformers keeps whole and sentence-mtl's WordPiece tokenizer would split"),
    );
    let f = c.damaged_model("japanese_tokenizer", |d| {
        edit_json(&d.join("tokenizer_config.json"), |config| {
            config["tokenizer_class"] = "BertJapaneseTokenizer".into();
        });
    });
    c.add(
        "model",
        "a tokenizer class other than BERT's",
        &["encode", "-m", &f, "hi"],
        error("tokenizer_config.json: tokenizer_class BertJapaneseTokenizer is not supported: sentence-mtl tokenizes as BERT's WordPiece tokenizer (BertTokenizer), which would give this model other tokens"),
    );
    let f = c.damaged_model("nfkc_tokenizer", |d| {
        edit_json(&d.join("tokenizer.json"), |json| {
            let bert = json["normalizer"].clone();
            json["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [{"type": "NFKC"}, bert]});
        });
    });
    c.add(
        "model",
        "a tokenizer.json normaliser other than BERT's",
        &["encode", "-m", &f, "hi"],
        error("tokenizer.json: its normalizer is Sequence, not BERT's BertNormalizer"),
    );
    let f = c.damaged_model("no_post_processor", |d| {
        edit_json(&d.join("tokenizer.json"), |json| json["post_processor"] = serde_json::Value::Null);
    });
    c.add(
        "model",
        "a tokenizer.json that adds no [CLS] and [SEP]",
        &["encode", "-m", &f, "hi"],
        error("tokenizer.json: a post_processor that does not put [CLS] before and [SEP] after a text (null) is not supported"),
    );
    let f = c.damaged_model("short_word_pieces", |d| {
        edit_json(&d.join("tokenizer.json"), |json| json["model"]["max_input_chars_per_word"] = 10.into());
    });
    c.add(
        "model",
        "a WordPiece model with another longest word",
        &["encode", "-m", &f, "hi"],
        error("tokenizer.json: WordPiece max_input_chars_per_word 10 (BERT's is 100) is not supported"),
    );
    let f = c.damaged_model("other_vocabulary", |d| {
        edit_json(&d.join("tokenizer.json"), |json| {
            let vocab = json["model"]["vocab"].as_object_mut().unwrap();
            let id = vocab.remove("hello").unwrap();
            vocab.insert("hallo".into(), id);
        });
    });
    c.add(
        "model",
        "a tokenizer.json whose vocabulary is not vocab.txt's",
        &["encode", "-m", &f, "hi"],
        error("tokenizer.json: its vocabulary is not "),
    );
    let f = c.damaged_model("lower_case_zero", |d| {
        edit_json(&d.join("tokenizer_config.json"), |config| config["do_lower_case"] = 0.into());
    });
    c.add(
        "model",
        "a tokenizer setting that is no boolean",
        &["encode", "-m", &f, "hi"],
        error("tokenizer_config.json: do_lower_case is 0, not true, false or null"),
    );
    let f = c.damaged_model("max_length_text", |d| {
        edit_json(&d.join("tokenizer_config.json"), |config| config["model_max_length"] = "512".into());
    });
    c.add(
        "model",
        "a tokenizer's model_max_length written as text",
        &["encode", "-m", &f, "hi"],
        error("tokenizer_config.json: model_max_length \"512\" is not a number of tokens"),
    );
    let f = c.damaged_model("nan_weight", |d| replace_first_layer_norm(d, |w| w.fill(f64::NAN)));
    c.add(
        "model",
        "weights that hold NaN",
        &["encode", "-m", &f, "hi"],
        error("LayerNorm.weight holds 32 NaN or infinite value(s) of 32; the weights are damaged"),
    );
    let f = c.damaged_model("other_cls_token", |d| {
        std::fs::remove_file(d.join("tokenizer.json")).unwrap();
        edit_json(&d.join("special_tokens_map.json"), |map| map["cls_token"] = "[unused1]".into());
    });
    c.add(
        "model",
        "another [CLS] token in a folder without tokenizer.json",
        &["encode", "-m", &f, "hi"],
        error("special_tokens_map.json: cls_token '[unused1]' is not supported: sentence-mtl's tokenizer uses BERT's [CLS]"),
    );
    let f = c.damaged_model("pruned_heads", |d| {
        edit_json(&d.join("config.json"), |config| config["pruned_heads"] = serde_json::json!({"0": [1]}));
    });
    c.add(
        "model",
        "a config.json with pruned attention heads",
        &["encode", "-m", &f, "hi"],
        error("pruned_heads is not supported: sentence-mtl runs every attention head of every layer"),
    );
    let f = c.damaged_model("tokenizer_args", |d| {
        let settings = r#"{"max_seq_length": 64, "tokenizer_args": {"truncation_side": "left"}}"#;
        st_pipeline(d, &["Transformer"], &[("sentence_bert_config.json", settings)])
    });
    c.add(
        "model",
        "a sentence-transformers folder with tokenizer_args",
        &["encode", "-m", &f, "hi"],
        error("sentence_bert_config.json: tokenizer_args (truncation_side) is not supported"),
    );
    let f = c.damaged_model("added_tokens_latin1", |d| {
        std::fs::write(d.join("added_tokens.json"), b"{\"caf\xe9\": 99999}").unwrap()
    });
    c.add(
        "model",
        "added_tokens.json not UTF-8",
        &["encode", "-m", &f, "hi"],
        error("added_tokens.json as UTF-8 text"),
    );
    let f = c.damaged_model("integer_weight", |d| replace_first_layer_norm(d, |w| w.to_kind(tch::Kind::Int64)));
    c.add(
        "model",
        "a weight stored as integers",
        &["encode", "-m", &f, "hi"],
        error("LayerNorm.weight: file Int64 numbers, model floating point"),
    );
    let mean = r#"{"word_embedding_dimension": 32, "pooling_mode_mean_tokens": true}"#;
    let identity =
        r#"{"in_features": 32, "out_features": 8, "activation_function": "torch.nn.modules.linear.Identity"}"#;
    let f = c.damaged_model("normalize_before_dense", |d| {
        st_pipeline(
            d,
            &["Transformer", "Pooling", "Normalize", "Dense"],
            &[("1_Pooling/config.json", mean), ("3_Dense/config.json", identity)],
        )
    });
    c.add(
        "model",
        "a sentence-transformers pipeline that normalises before its Dense module",
        &["encode", "-m", &f, "hi"],
        error("modules.json runs Transformer, Pooling, Normalize, Dense; sentence-mtl runs Transformer, Pooling, Dense, Normalize in that order, each at most once"),
    );
    let f = c.damaged_model("lasttoken", |d| {
        st_pipeline(
            d,
            &["Transformer", "Pooling"],
            &[("1_Pooling/config.json", r#"{"pooling_mode_mean_tokens": false, "pooling_mode_lasttoken": true}"#)],
        )
    });
    c.add(
        "model",
        "a sentence-transformers Pooling module of another mode",
        &["encode", "-m", &f, "hi"],
        error("1_Pooling/config.json: pooling by lasttoken is not supported (sentence-mtl pools by one of cls_token, mean_tokens and max_tokens)"),
    );
    let f = c.damaged_model("default_prompt", |d| {
        let prompts = r#"{"prompts": {"query": "query: "}, "default_prompt_name": "query"}"#;
        st_pipeline(
            d,
            &["Transformer", "Pooling"],
            &[("1_Pooling/config.json", mean), ("config_sentence_transformers.json", prompts)],
        )
    });
    c.add(
        "model",
        "a sentence-transformers folder with a default prompt",
        &["encode", "-m", &f, "hi"],
        error("config_sentence_transformers.json: default_prompt_name 'query' puts 'query: ' before every text, which sentence-mtl does not do"),
    );
    let f = c.damaged_model("lower_cased_text", |d| {
        let lower = r#"{"max_seq_length": 64, "do_lower_case": true}"#;
        let cased = r#"{"do_lower_case": false}"#;
        st_pipeline(
            d,
            &["Transformer", "Pooling"],
            &[("1_Pooling/config.json", mean), ("sentence_bert_config.json", lower), ("tokenizer_config.json", cased)],
        )
    });
    c.add(
        "model",
        "sentence_bert_config.json lower-cases text for a cased tokenizer",
        &["encode", "-m", &f, "hi"],
        error("sentence_bert_config.json: do_lower_case true (the text lower-cased before a tokenizer that keeps case) is not supported"),
    );
    let f = c.damaged_model("no_chinese_split", |d| {
        std::fs::write(d.join("tokenizer_config.json"), r#"{"tokenize_chinese_chars": false}"#).unwrap()
    });
    c.add(
        "model",
        "a tokenizer that keeps Chinese characters together",
        &["encode", "-m", &f, "hi"],
        error("tokenizer_config.json: tokenize_chinese_chars false is not supported"),
    );
    let f = c.damaged_model("max_seq_length_1", |d| {
        st_pipeline(d, &["Transformer"], &[("sentence_bert_config.json", r#"{"max_seq_length": 1}"#)])
    });
    c.add(
        "model",
        "sentence_bert_config.json's max_seq_length below 2",
        &["encode", "-m", &f, "hi"],
        error("sentence_bert_config.json's max_seq_length 1 is out of range: this model takes 2 to"),
    );
    let f = c.damaged_model("model_max_length_1", |d| {
        edit_json(&d.join("tokenizer_config.json"), |config| config["model_max_length"] = 1.into())
    });
    c.add(
        "model",
        "tokenizer_config.json's model_max_length below 2 (no sentence-transformers config)",
        &["encode", "-m", &f, "hi"],
        error("tokenizer_config.json's model_max_length 1 is out of range: this model takes 2 to"),
    );
    let f = c.damaged_model("no_vocab", |d| std::fs::remove_file(d.join("vocab.txt")).unwrap());
    c.add("model", "vocab.txt missing", &["encode", "-m", &f, "hi"], error("no vocab.txt in"));
    let f = c.damaged_model("gpt2", |d| {
        std::fs::write(d.join("config.json"), r#"{"model_type": "gpt2", "n_layer": 2}"#).unwrap()
    });
    c.add(
        "model",
        "unsupported model_type",
        &["encode", "-m", &f, "hi"],
        error("model_type 'gpt2' is not supported (supported: distilbert, bert)"),
    );
    let f = c.damaged_model("bad_types", |d| std::fs::write(d.join("config.json"), r#"{"model_type": "distilbert", "vocab_size": "many", "dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64}"#).unwrap());
    c.add(
        "model",
        "config.json with wrong types",
        &["encode", "-m", &f, "hi"],
        error("config.json: field \"vocab_size\": invalid type: string \"many\", expected i64"),
    );
    let bert_weights = c.model.join("model.safetensors");
    let f = c.damaged_model("other_arch", |d| {
        std::fs::copy(&bert_weights, d.join("model.safetensors")).unwrap();
    });
    c.add(
        "model",
        "weights of another architecture",
        &["encode", "-m", &f, "hi"],
        error("(wrong file for this config.json?)"),
    );
    let f = c.damaged_checkpoint("heads_vs_json", |d| {
        edit_json(&d.join("sentence_mtl.json"), |spec| {
            spec["tasks"].as_array_mut().unwrap().pop();
        });
    });
    c.add(
        "model",
        "checkpoint heads that its JSON does not list",
        &["encode", "-m", &f, "hi"],
        error("that sentence_mtl.json does not describe (checkpoint heads do not match its tasks)"),
    );
    let topic = format!("topic={topic_train}");
    c.add(
        "model",
        "checkpoint heads that its JSON does not list, trained further",
        &["train", "-m", &f, "--task", &topic, "--out", &c.path("run-heads-vs-json"), "-q"],
        error("that sentence_mtl.json does not describe (checkpoint heads do not match its tasks)"),
    );
    let f = c.damaged_checkpoint("no_spec", |d| std::fs::remove_file(d.join("sentence_mtl.json")).unwrap());
    c.add(
        "model",
        "checkpoint without its sentence_mtl.json, trained further",
        &["train", "-m", &f, "--task", &topic, "--out", &c.path("run-no-spec"), "-q"],
        error("of a checkpoint's projection or heads, but no sentence_mtl.json to describe them (a checkpoint that lost it?)"),
    );
    let f = c.damaged_checkpoint("no_projection", |d| {
        let p = d.join("model.safetensors");
        let tensors = Tensor::read_safetensors(&p).unwrap();
        let kept: Vec<_> = tensors.into_iter().filter(|(n, _)| !n.starts_with("projection.")).collect();
        Tensor::write_safetensors(&kept, &p).unwrap();
    });
    c.add(
        "model",
        "checkpoint whose weights lost its projection, trained further",
        &["train", "-m", &f, "--task", &topic, "--out", &c.path("run-no-projection"), "-q"],
        error("lacks 2 tensor(s) this model needs, e.g. projection.bias, projection.weight (wrong file for this config.json / sentence_mtl.json?)"),
    );
    let f = c.damaged_checkpoint("task_twice", |d| {
        edit_json(&d.join("sentence_mtl.json"), |spec| {
            let first = spec["tasks"][0].clone();
            spec["tasks"].as_array_mut().unwrap().insert(0, first);
        });
    });
    c.add(
        "model",
        "checkpoint JSON that describes a task twice",
        &["predict", "-m", &f, "--task", "topic", "hi"],
        error("sentence_mtl.json: task 'topic' is described twice"),
    );
    let f = c.damaged_checkpoint("label_twice", |d| {
        edit_json(&d.join("sentence_mtl.json"), |spec| {
            let labels = spec["tasks"][0]["labels"].as_array_mut().unwrap();
            labels[1] = labels[0].clone();
        });
    });
    c.add(
        "model",
        "checkpoint JSON whose task lists a label twice",
        &["predict", "-m", &f, "--task", "topic", "hi"],
        error("sentence_mtl.json: classification task 'topic' has repeated labels; it needs distinct labels, one per class of its head"),
    );
    let f = c.damaged_checkpoint("labels_vs_heads", |d| {
        edit_json(&d.join("sentence_mtl.json"), |spec| {
            spec["tasks"][0]["labels"].as_array_mut().unwrap().push("extra".into());
        });
    });
    c.add(
        "model",
        "checkpoint JSON with more labels than its head",
        &["predict", "-m", &f, "--task", "topic", "hi"],
        error("configuration; mismatches: heads.topic.bias: file [3], model [4]"),
    );
    let f = c.damaged_checkpoint("projection_zero", |d| {
        edit_json(&d.join("sentence_mtl.json"), |spec| spec["projection_dim"] = 0.into());
    });
    c.add(
        "model",
        "checkpoint JSON with a projection of no width",
        &["train", "-m", &f, "--task", &topic, "--out", &c.path("run-projection-zero"), "-q"],
        error("sentence_mtl.json: projection_dim 0 is no projection width (at least 1; null for none)"),
    );
    let f = c.damaged_export("hf", "export_max_length_one", |d| {
        edit_json(&d.join("tasks.json"), |spec| spec["max_length"] = 1.into());
    });
    c.add(
        "model",
        "hf export whose tasks.json has a max_length below 2",
        &["encode", "-m", &f, "hi"],
        error("tasks.json: max_length 1 leaves no room for [CLS] and [SEP] (at least 2)"),
    );
    let f = c.damaged_checkpoint("max_length_past_positions", |d| {
        edit_json(&d.join("sentence_mtl.json"), |spec| spec["max_length"] = 100_000.into());
    });
    c.add(
        "model",
        "checkpoint JSON with a max_length past the model's positions, trained further",
        &["train", "-m", &f, "--task", &topic, "--out", &c.path("run-max-length"), "-q"],
        error("sentence_mtl.json's max_length 100000 is out of range: this model takes 2 to "),
    );
    let f =
        c.damaged_export("hf", "export_without_heads", |d| std::fs::remove_file(d.join("heads.safetensors")).unwrap());
    c.add(
        "model",
        "hf export without heads.safetensors",
        &["encode", "-m", &f, "hi"],
        error("tasks.json describes an export whose projection and heads are in heads.safetensors, which is missing"),
    );
    let f = c.damaged_export("hf", "export_other_format", |d| {
        edit_json(&d.join("tasks.json"), |spec| spec["format"] = "sentence-mtl export 2".into());
    });
    c.add(
        "model",
        "hf export whose tasks.json names another format",
        &["encode", "-m", &f, "hi"],
        error("tasks.json beside heads.safetensors is an hf export's, but its \"format\" is \"sentence-mtl export 2\""),
    );
    let f = c.damaged_export("hf", "export_bad_pooling", |d| {
        let p = d.join("tasks.json");
        let text = std::fs::read_to_string(&p).unwrap().replace("\"pooling\": \"mean\"", "\"pooling\": \"median\"");
        std::fs::write(&p, text).unwrap();
    });
    c.add(
        "model",
        "hf export whose tasks.json has an unknown pooling",
        &["encode", "-m", &f, "hi"],
        error("tasks.json is not a valid sentence-mtl export description: unknown variant `median`"),
    );
    let f = c.damaged_export("hf", "export_extra_task", |d| {
        edit_json(&d.join("tasks.json"), |spec| {
            spec["tasks"].as_array_mut().unwrap().push(serde_json::json!({"name": "extra", "labels": ["a", "b"]}));
        });
    });
    c.add(
        "model",
        "hf export whose tasks.json lists a task without a head",
        &["predict", "-m", &f, "--task", "extra", "hi"],
        error("model.safetensors (with heads.safetensors) lacks 2 tensor(s) this model needs, e.g. heads.extra.bias, heads.extra.weight (wrong file for this config.json / tasks.json?)"),
    );

    let f = c.damaged_export("torchscript", "torchscript_export", |_| {});
    c.add(
        "model",
        "a TorchScript export as the model",
        &["encode", "-m", &f, "hi"],
        error("torchscript_export is a TorchScript export (model.pt), which sentence-mtl does not read back"),
    );

    // ---- settings ----------------------------------------------------------------------
    let task = format!("topic={topic_train}");
    c.add_train(
        "settings",
        "learning rate 0",
        task.clone(),
        &["--lr-heads", "0"],
        error("--lr-heads must be a positive number, got 0"),
    );
    c.add_train(
        "settings",
        "learning rate NaN",
        task.clone(),
        &["--lr-backbone", "NaN"],
        error("--lr-backbone must be a positive number, got NaN"),
    );
    c.add_train(
        "settings",
        "batch size 0",
        task.clone(),
        &["--batch-size", "0"],
        error("--batch-size must be at least 1"),
    );
    c.add_train(
        "settings",
        "batch size not a number",
        task.clone(),
        &["--batch-size", "ten"],
        error("--batch-size 'ten' is not a whole number"),
    );
    c.add_train(
        "settings",
        "batch size negative",
        task.clone(),
        &["--batch-size", "-4"],
        error("--batch-size '-4' must not be negative"),
    );
    c.add_train(
        "settings",
        "learning rate not a number",
        task.clone(),
        &["--lr-heads", "fast"],
        error("--lr-heads 'fast' is not a number"),
    );
    c.add_train(
        "settings",
        "learning rate negative",
        task.clone(),
        &["--lr-heads", "-0.001"],
        error("--lr-heads must be a positive number, got -0.001"),
    );
    c.add(
        "settings",
        "a required flag missing",
        &["export", "-m", &m, "--format", "hf"],
        error("the following required arguments were not provided: --out <DIR> (see --help)"),
    );
    c.add(
        "settings",
        "an unknown flag",
        &["encode", "-m", &m, "--fast", "hi"],
        error("unexpected argument '--fast' found"),
    );
    c.add_train(
        "settings",
        "--freeze of an unknown head",
        task.clone(),
        &["--freeze", "head:nope"],
        error("--freeze head:nope: no task named 'nope' (tasks: topic)"),
    );
    c.add_train(
        "settings",
        "--freeze layers:K with K > layers",
        task.clone(),
        &["--freeze", "layers:9"],
        error("--freeze layers:9: the backbone has only 3 layers"),
    );
    let second_task = format!("other={mood_dev}");
    c.add_train(
        "settings",
        "--freeze head:NAME on a frozen backbone without a projection, beside another task",
        task.clone(),
        &["--task", &second_task, "--freeze", "backbone", "--freeze", "head:topic", "--projection-dim", "0"],
        error("--freeze backbone --freeze head:topic leaves task 'topic' nothing to train: its head is frozen, so it learns through the encoder alone; let its head train (drop --freeze head:topic)"),
    );
    c.add_train(
        "settings",
        "--task-share so small that an epoch would never end",
        task.clone(),
        &["--task", &second_task, "--task-share", "other=1e-300"],
        error(
            "--task-share other=1e-300: a round-robin epoch lasts until every task has had its pass, which would take",
        ),
    );
    c.add_train(
        "settings",
        "unknown --freeze rule",
        task.clone(),
        &["--freeze", "heads"],
        error("unknown --freeze 'heads'"),
    );
    c.add_train(
        "settings",
        "unknown --sampling",
        task.clone(),
        &["--sampling", "random"],
        error("unknown --sampling 'random'"),
    );
    c.add_train(
        "settings",
        "unknown device",
        task.clone(),
        &["--device", "tpu"],
        error("unknown --device 'tpu' (expected auto, cpu, cuda or cuda:N)"),
    );
    // bf16 runs on CPUs with bf16 instructions; elsewhere it is refused naming what is missing.
    if sentence_mtl::precision::cpu_bf16_support().is_ok() {
        c.add_train(
            "settings",
            "bf16 on a CPU with AVX-512 BF16 or AMX",
            task.clone(),
            &["--precision", "bf16"],
            Expect::Works,
        );
    } else {
        c.add_train(
            "settings",
            "bf16 on a CPU without bf16 instructions",
            task.clone(),
            &["--precision", "bf16"],
            error("--precision bf16 on the CPU needs AVX-512 BF16 or AMX"),
        );
    }
    let run = c.path("run-tokens");
    c.add(
        "settings",
        "--batch-tokens 0",
        &["train", "-m", &m, "--task", &task, "--out", &run, "--batch-tokens", "0", "-q"],
        error("--batch-tokens must be at least 1"),
    );
    c.add(
        "settings",
        "--batch-tokens 0 for encode",
        &["encode", "-m", &m, "--batch-tokens", "0", "hi"],
        error("--batch-tokens must be at least 1"),
    );
    c.add(
        "settings",
        "unknown --precision",
        &["encode", "-m", &m, "--precision", "fp16", "hi"],
        error("unknown --precision 'fp16' (expected fp32, bf16 or auto)"),
    );
    c.add_train(
        "settings",
        "--task-weight for an unknown task",
        task.clone(),
        &["--task-weight", "nope=2"],
        error("--task-weight nope=2: no task named 'nope'"),
    );
    c.add_train(
        "settings",
        "--temperature below 0.001",
        task.clone(),
        &["--sampling", "temperature", "--temperature", "1e-308"],
        error("--temperature must be a number of at least 0.001, got 1e-308"),
    );
    c.add_train(
        "settings",
        "--task-share of zero",
        task.clone(),
        &["--task-share", "topic=0"],
        error("--task-share topic=0: must be a finite number above 0 and at most 1e6"),
    );
    c.add_train(
        "settings",
        "--task-share past a million (shares count relative to each other)",
        task.clone(),
        &["--task-share", "topic=1e308"],
        error("--task-share topic=1e308: must be a finite number above 0 and at most 1e6"),
    );
    c.add_train(
        "settings",
        "--task-share not a number",
        task.clone(),
        &["--task-share", "topic=half"],
        error("--task-share topic=half: not a number"),
    );
    c.add_train(
        "settings",
        "task name with a dot",
        "bad.name=x.csv".into(),
        &[],
        error("task name 'bad.name' must be non-empty ASCII letters, digits, '_' or '-'"),
    );
    c.add_train(
        "settings",
        "a task name too long to name report files",
        format!("{}=x.csv", "t".repeat(120)),
        &[],
        error("is 120 characters long; at most 100"),
    );
    if !Path::new("/dev/nvidia0").exists() {
        c.add(
            "settings",
            "CUDA asked for on a machine without GPU",
            &["encode", "-m", &m, "--device", "cuda", "hi"],
            error("--device cuda: no CUDA device is available on this machine"),
        );
    }
    c.add(
        "settings",
        "--pooling unknown",
        &["encode", "-m", &m, "--pooling", "sum", "hi"],
        error("unknown pooling 'sum' (expected mean, cls or max)"),
    );
    c.add(
        "settings",
        "--format unknown",
        &["encode", "-m", &m, "--format", "xml", "hi"],
        error("unknown --format 'xml' (expected jsonl, csv or npy)"),
    );
    c.add(
        "settings",
        "--output with an extension that names no format",
        &["encode", "-m", &m, "-o", &c.path("out.tsv"), "hi"],
        error("out.tsv: .tsv is not an output format (expected jsonl, csv or npy); end the name with one, or pass --format"),
    );
    c.add(
        "settings",
        "--output where no file can be made (found before encoding)",
        &["encode", "-m", &m, "-o", "/proc/no-such-output.jsonl", "hi"],
        error("--output /proc/no-such-output.jsonl cannot be written: "),
    );
    let mistyped = c.path("no-such-folder/embeddings.npy");
    c.add(
        "settings",
        "--output in a folder that does not exist",
        &["encode", "-m", &m, "-o", &mistyped, "hi"],
        error("no-such-folder does not exist; name a file in an existing folder"),
    );
    let under_a_file = format!("{}/embeddings.npy", c.file("notes.txt", b"mine"));
    c.add(
        "settings",
        "--output under a file, as if it were a folder",
        &["predict", "-m", &ck, "--task", "topic", "-o", &under_a_file, "hi"],
        error("notes.txt is not a folder; name a file in an existing folder"),
    );
    c.add(
        "settings",
        "--format npy with an --output named .json",
        &["encode", "-m", &m, "--format", "npy", "-o", &c.path("out.json"), "hi"],
        error("--format names another format than --output"),
    );
    c.add(
        "settings",
        "encode --similarity --format without --output",
        &["encode", "-m", &m, "--similarity", "--format", "npy", "hi", "there"],
        error("--format sets how embeddings are written, and with --similarity they are written only to --output FILE"),
    );
    c.add(
        "settings",
        "--batch-size too large for any number",
        &["encode", "-m", &m, "--batch-size", "99999999999999999999999", "hi"],
        error("--batch-size '99999999999999999999999' is too large"),
    );
    c.add(
        "settings",
        "--threads 0",
        &["encode", "-m", &m, "--threads", "0", "hi"],
        error("--threads must be at least 1"),
    );
    c.add(
        "settings",
        "--threads absurdly many",
        &["encode", "-m", &m, "--threads", "100000", "hi"],
        error("--threads 100000 is more threads than any machine runs usefully; give at most 1024"),
    );
    let input = c.file("input.csv", b"text\none\ntwo\n");
    c.add(
        "settings",
        "encode --output the --input file",
        &["encode", "-m", &m, "--input", &input, "--output", &input],
        error("input.csv is the --input file, which writing would replace; name another file"),
    );
    let redirected = c.file("redirected.txt", b"one\ntwo\n");
    c.cases.push(Case {
        group: "settings",
        what: "predict --output the file redirected to stdin (-o FILE < FILE)",
        args: ["predict", "-m", &c.checkpoint.to_string_lossy(), "--task", "topic", "-o", &redirected]
            .map(String::from)
            .to_vec(),
        stdin: Stdin::File(redirected.clone()),
        env: Vec::new(),
        expect: error("redirected.txt is the file on stdin, which writing would replace; name another file"),
    });
    let many: String = (0..1001).map(|i| format!("sentence {i}\n")).collect();
    let many = c.file("many.txt", many.as_bytes());
    c.add(
        "settings",
        "encode --similarity of more sentences than a table can show",
        &["encode", "-m", &m, "--similarity", "--input", &many],
        error("--similarity prints a table of every pair, and 1001 sentences make 1002001 cells; give at most 1000 sentences, or write the embeddings with --output and compare them there"),
    );
    let folder = c.dir.path().to_string_lossy().into_owned();
    c.add(
        "settings",
        "--output a folder",
        &["encode", "-m", &m, "-o", &folder, "hi"],
        error("is a folder; name a file"),
    );
    let dangling_report = c.path("dangling-report");
    std::os::unix::fs::symlink(c.path("no-report-yet"), &dangling_report).unwrap();
    c.add(
        "settings",
        "eval --out a link to a folder that does not exist",
        &["eval", "-m", &ck, "--task", &format!("mood={mood_dev}"), "--out", &dangling_report],
        error("dangling-report is a link to "),
    );
    c.add(
        "settings",
        "eval --out inside a checkpoint",
        &["eval", "-m", &ck, "--task", &format!("mood={mood_dev}"), "--out", &format!("{ck}/eval")],
        error("which training replaces whole when it saves"),
    );
    c.add(
        "settings",
        "eval --task-kind other than the kind the model trained the task as",
        &["eval", "-m", &ck, "--task", &format!("mood={mood_dev}"), "--task-kind", "mood=pairs"],
        error("--task-kind mood=pairs: the model trained task 'mood' as a classification task, which is how eval scores it"),
    );
    c.add(
        "settings",
        "eval --task NAME=TRAIN,DEV as train takes it",
        &["eval", "-m", &ck, "--task", &format!("mood={mood_dev},{mood_dev}")],
        error("eval reads one file per task (train's NAME=TRAIN,DEV names two); give the file to evaluate, e.g. --task mood="),
    );
    c.add(
        "settings",
        "encode --similarity --output - (stdout holds the table)",
        &["encode", "-m", &m, "--similarity", "-o", "-", "hi", "there"],
        error("--output - (stdout) with --similarity: the similarity table goes to stdout; give --output a file for the embeddings"),
    );
    c.add(
        "settings",
        "eval --out is a file",
        &["eval", "-m", &ck, "--task", &format!("mood={mood_dev}"), "--out", &mood_dev],
        error("exists and is not a folder"),
    );
    c.add(
        "settings",
        "eval --out under a file, as if it were a folder (refused before any task is scored)",
        &[
            "eval",
            "-m",
            &ck,
            "--task",
            &format!("mood={mood_dev}"),
            "--out",
            &format!("{}/report", c.path("notes.txt")),
        ],
        error("notes.txt is not a folder"),
    );
    c.add(
        "settings",
        "--output ending in '/'",
        &["encode", "-m", &m, "-o", &format!("{}/", c.path("new.jsonl")), "hi"],
        error("new.jsonl/ ends in '/', which names a folder; name a file"),
    );
    c.add(
        "settings",
        "encode --format that the --output extension contradicts",
        &["encode", "-m", &m, "-o", &c.path("embeddings.npy"), "--format", "csv", "hi"],
        error("embeddings.npy's .npy; give one of them, or make them agree"),
    );
    let model_copy = c.damaged_model("model-copy", |_| {});
    let into_model = format!("{model_copy}/model.safetensors");
    c.add(
        "settings",
        "encode --output over a file of the --model folder",
        &["encode", "-m", &model_copy, "--format", "npy", "-o", &into_model, "hi"],
        error("model.safetensors would replace a file of the --model folder "),
    );
    let model_config = format!("{model_copy}/config.json");
    c.add(
        "settings",
        "encode --output over the --model folder's config.json",
        &["encode", "-m", &model_copy, "-o", &model_config, "hi"],
        error("config.json would replace a file of the --model folder "),
    );
    c.add(
        "settings",
        "predict without --task on a model of several heads",
        &["predict", "-m", &ck, "hi"],
        error("this model has several classification heads; choose one with --task (topic, mood)"),
    );
    c.add(
        "settings",
        "predict on a model without a classification head",
        &["predict", "-m", &m, "hi"],
        error("this model has no classification head to label sentences with; encode gives its embeddings"),
    );
    let into_checkpoint_file = format!("{ck}/config.json");
    c.add(
        "settings",
        "predict --output over a file of the checkpoint it reads",
        &["predict", "-m", &ck, "--task", "topic", "--format", "csv", "-o", &into_checkpoint_file, "hi"],
        error("config.json is inside the checkpoint "),
    );
    let run_settings = c.checkpoint.parent().unwrap().join("settings.json").to_string_lossy().into_owned();
    c.add(
        "settings",
        "encode --output over a training run's settings.json",
        &["encode", "-m", &m, "-o", &run_settings, "hi"],
        error("settings.json would replace a file of the training run in "),
    );
    let into_checkpoint = format!("{ck}/new/embeddings.jsonl");
    c.add(
        "settings",
        "encode --output inside a checkpoint",
        &["encode", "-m", &m, "-o", &into_checkpoint, "hi"],
        error("embeddings.jsonl is inside the checkpoint "),
    );
    c.add(
        "settings",
        "predict --output .npy",
        &["predict", "-m", &ck, "--task", "topic", "-o", &c.path("labels.npy"), "hi"],
        error("labels.npy: .npy is not an output format (expected jsonl or csv)"),
    );
    c.add(
        "settings",
        "--max-length beyond the model",
        &["encode", "-m", &m, "--max-length", "100000", "hi"],
        error("--max-length 100000 is out of range: this model takes 2 to 128 tokens"),
    );
    c.add(
        "settings",
        "--resume with a setting",
        &["train", "--resume", &checkpoint_run.to_string_lossy(), "--lr-heads", "1"],
        error("--resume continues a run with its own settings; --lr-heads cannot be given with it"),
    );
    c.add(
        "settings",
        "--resume of a folder that does not exist",
        &["train", "--resume", &c.path("nowhere")],
        error("nowhere: no such run directory"),
    );
    let settings = std::fs::read(checkpoint_run.join("settings.json")).unwrap();
    c.file("set_aside/.replaced-4194306/settings.json", &settings);
    c.file("set_aside/settings.json", &settings);
    c.add(
        "settings",
        "--resume of a run whose --overwrite was killed before its first save",
        &["train", "--resume", &c.path("set_aside")],
        error("set_aside holds a run that an --overwrite set aside and did not finish replacing (its process ended first)"),
    );
    let plain = c.file("plain/notes.txt", b"mine");
    let plain = Path::new(&plain).parent().unwrap().to_string_lossy().into_owned();
    c.add(
        "settings",
        "--resume of a folder that is no run",
        &["train", "--resume", &plain],
        error("plain is not a sentence-mtl run directory (no settings.json)"),
    );
    let editor = c.file("editor-folder/settings.json", br#"{"editor.fontSize": 12}"#);
    let editor = Path::new(&editor).parent().unwrap().to_string_lossy().into_owned();
    c.add(
        "settings",
        "--resume of a folder whose settings.json is another tool's",
        &["train", "--resume", &editor],
        error("editor-folder is not a sentence-mtl run directory (its settings.json is not one a run wrote)"),
    );
    let cut_run = c.dir.path().join("cut-settings-run");
    copy_dir(&checkpoint_run, &cut_run);
    let cut = std::fs::read(cut_run.join("settings.json")).unwrap();
    std::fs::write(cut_run.join("settings.json"), &cut[..16]).unwrap();
    c.add(
        "settings",
        "--resume of a run whose settings.json was cut short",
        &["train", "--resume", &cut_run.to_string_lossy()],
        error("cut-settings-run/settings.json is damaged: EOF while parsing"),
    );
    c.add(
        "settings",
        "--resume of a checkpoint instead of its run",
        &["train", "--resume", &ck],
        error("best is a checkpoint; --resume takes its run directory, --resume"),
    );
    let unsaved = c.file("unsaved-run/settings.json", br#"{"settings": {}, "version": "0.1.0"}"#);
    let unsaved = Path::new(&unsaved).parent().unwrap().to_string_lossy().into_owned();
    c.add(
        "settings",
        "--resume of a run that saved no checkpoint",
        &["train", "--resume", &unsaved],
        error("the run stopped before its first save); start it again with --overwrite"),
    );
    c.add(
        "settings",
        "--model of a run that saved no checkpoint yet",
        &["encode", "-m", &unsaved, "hi"],
        error("unsaved-run is a run directory that has saved no checkpoint yet"),
    );
    c.add(
        "settings",
        "a new run into a run that saved no checkpoint",
        &c.train_args("unsaved-run", &format!("topic={topic_train}"), &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        error("already holds a run that saved no checkpoint to resume; pass --overwrite to start it again"),
    );
    let edited_run = c.dir.path().join("edited-run");
    copy_dir(&checkpoint_run, &edited_run);
    let settings_file = edited_run.join("settings.json");
    let edited = std::fs::read_to_string(&settings_file).unwrap().replace("\"batch_size\": 8,", "\"batch_size\": 0,");
    assert!(edited.contains("\"batch_size\": 0,"), "the toy run's settings.json has no batch size of 8 to edit");
    std::fs::write(&settings_file, edited).unwrap();
    c.add(
        "settings",
        "--resume of a run whose settings.json was edited out of range",
        &["train", "--resume", &edited_run.to_string_lossy()],
        error("settings.json holds a setting out of range: --batch-size must be at least 1"),
    );
    // An interrupted frozen run (its summary cut from the log, two more steps to go) whose
    // cache outgrows the budget in its settings: on resume the flags cannot change, the file can.
    let (_, frozen_run) = train_toy_run(&c.model, c.dir.path(), "frozen-run", 2, &["--freeze", "backbone"]);
    let log = frozen_run.join("train_log.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    assert!(lines.last().unwrap().contains("\"summary\""), "the frozen run's log ends without its summary");
    std::fs::write(&log, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let settings_file = frozen_run.join("settings.json");
    let mut settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_file).unwrap()).unwrap();
    for (field, value) in [("max_steps", 4), ("feature_cache_budget_mb", 0)] {
        assert!(settings["settings"].get(field).is_some(), "settings.json has no {field}");
        settings["settings"][field] = value.into();
    }
    std::fs::write(&settings_file, serde_json::to_string_pretty(&settings).unwrap()).unwrap();
    c.add(
        "settings",
        "--resume of a run whose feature cache outgrew its budget",
        &["train", "--resume", &frozen_run.to_string_lossy()],
        error("more than --feature-cache-budget 0 MB; resume where the run started (--device"),
    );
    // An interrupted run whose training file is gone from the path it recorded.
    let (_, moved_run) = train_toy_run(&c.model, c.dir.path(), "moved-data-run", 2, &[]);
    let log = moved_run.join("train_log.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    std::fs::write(&log, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let settings_file = moved_run.join("settings.json");
    let mut settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_file).unwrap()).unwrap();
    settings["settings"]["tasks"][0]["train"] = c.path("moved/topic_train.csv").into();
    std::fs::write(&settings_file, serde_json::to_string_pretty(&settings).unwrap()).unwrap();
    c.add(
        "settings",
        "--resume of a run whose data file moved",
        &["train", "--resume", &moved_run.to_string_lossy()],
        error("moved/topic_train.csv is not there; --resume reads the files the run started with, at the paths "),
    );
    c.add(
        "settings",
        "--resume of a run that finished",
        &["train", "--resume", &checkpoint_run.to_string_lossy()],
        error("trained finished at step"),
    );

    // ---- export ------------------------------------------------------------------------
    c.add(
        "export",
        "unknown export format",
        &["export", "-m", &ck, "--format", "onnx", "--out", &c.path("x")],
        error("unknown --format 'onnx' (expected sentence-transformers, hf or torchscript)"),
    );
    c.add(
        "export",
        "a model folder that is not a checkpoint",
        &["export", "-m", &m, "--format", "hf", "--out", &c.path("x")],
        error("is not a sentence-mtl checkpoint (no sentence_mtl.json)"),
    );
    let dangling = c.path("dangling");
    std::os::unix::fs::symlink(c.path("not-yet"), &dangling).unwrap();
    c.add(
        "export",
        "--out a link to a folder that does not exist",
        &["export", "-m", &ck, "--format", "hf", "--out", &dangling],
        error("dangling is a link to "),
    );
    c.file("an_export/README.md", b"---\nlibrary_name: transformers\n---\n# sentence-mtl export (hf)\n");
    c.add(
        "export",
        "an export given as the checkpoint to export",
        &["export", "-m", &c.path("an_export"), "--format", "torchscript", "--out", &c.path("x")],
        error("an_export is an export, not a checkpoint; export from the checkpoint it came from"),
    );
    c.add(
        "export",
        "a checkpoint folder that does not exist",
        &["export", "-m", &c.path("nowhere/best"), "--format", "hf", "--out", &c.path("x")],
        error("nowhere/best: no such checkpoint folder"),
    );
    let mistyped = format!("{}/bset", c.checkpoint.parent().unwrap().display());
    c.add(
        "export",
        "a mistyped checkpoint of a run",
        &["export", "-m", &mistyped, "--format", "hf", "--out", &c.path("x")],
        error("bset: no such checkpoint folder ("),
    );
    c.add(
        "export",
        "a run directory instead of its checkpoint",
        &["export", "-m", &checkpoint_run.to_string_lossy(), "--format", "hf", "--out", &c.path("x")],
        error("is a run directory; export one of its checkpoints, e.g. --model"),
    );
    let taken = c.file("taken/mine.txt", b"keep");
    let taken = Path::new(&taken).parent().unwrap().to_string_lossy().into_owned();
    c.add(
        "export",
        "--out folder exists and is not empty",
        &["export", "-m", &ck, "--format", "hf", "--out", &taken],
        error("exists and is not empty; pass --force to replace it"),
    );
    c.add(
        "export",
        "--out where no folder can be made",
        &["export", "-m", &ck, "--format", "hf", "--out", "/proc/no-such-export"],
        error("cannot create /proc/no-such-export: "),
    );
    let held = c.damaged_checkpoint("holder/best", |_| {});
    c.add(
        "export",
        "--out --force on the folder holding the model",
        &["export", "-m", &held, "--format", "hf", "--out", &c.path("holder"), "--force"],
        error("holds the model being exported"),
    );
    c.add(
        "export",
        "--out inside a checkpoint",
        &["export", "-m", &ck, "--format", "hf", "--out", &format!("{ck}/exported")],
        error("is inside the checkpoint"),
    );
    let other_run = Path::new(&ck).parent().unwrap().to_string_lossy().into_owned();
    c.add(
        "export",
        "--out --force on a training run",
        &["export", "-m", &held, "--format", "hf", "--out", &other_run, "--force"],
        error("holds files that are not a sentence-mtl export; --force replaces only an earlier export, so choose an empty or new folder"),
    );
    c.add(
        "export",
        "--threads 0",
        &["export", "-m", &ck, "--format", "hf", "--out", &c.path("threads0"), "--threads", "0"],
        error("--threads must be at least 1"),
    );
    c.add(
        "export",
        "--out --force on the user's own files",
        &["export", "-m", &ck, "--format", "hf", "--out", &taken, "--force"],
        error("taken holds files that are not a sentence-mtl export"),
    );

    // ---- training ----------------------------------------------------------------------
    let diverging = ["--lr-backbone", "1e12", "--lr-projection", "1e12", "--lr-heads", "1e12", "--warmup-steps", "0"];
    let diverging = [&diverging[..], &["--max-steps", "50"]].concat();
    c.add_train("training", "loss becomes NaN", task.clone(), &diverging, error("became NaN at step"));
    c.add_train(
        "training",
        "weights overflow before a save",
        task.clone(),
        &[&diverging[..], &["--save-every", "1"]].concat(),
        error("give outputs that are not finite for task 'topic'"),
    );
    let n = c.cases.len();
    c.file(&format!("run-{n}/.replaced-4194305/settings.json"), b"{}");
    c.add_train(
        "training",
        "--out holds a run an --overwrite set aside and never put back",
        task.clone(),
        &["--overwrite"],
        error("holds a run that an --overwrite set aside and did not finish replacing (its process ended first)"),
    );
    let n = c.cases.len();
    c.file(&format!("run-{n}/settings.json"), b"{\"editor.tabSize\": 4}");
    c.add_train(
        "training",
        "--out --overwrite a folder with a settings.json that is not a run's",
        task.clone(),
        &["--overwrite"],
        error("is not a run directory, and its settings.json would be replaced by the run's; choose another --out"),
    );
    let a_file = c.file("a_file.txt", b"mine\n");
    let mut args = c.train_args("unused", &task, &[]);
    let out = args.iter().position(|a| a == "--out").unwrap();
    args[out + 1] = a_file;
    c.add(
        "training",
        "train --out naming a file",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        error("a_file.txt exists and is not a folder"),
    );
    c.add_train(
        "training",
        "--save-batch-plan - (stdout)",
        task.clone(),
        &["--save-batch-plan", "-"],
        error("--save-batch-plan -: the plan is a file (JSON lines), not stdout; name one, such as plan.jsonl"),
    );
    c.add_train(
        "training",
        "--save-batch-plan naming the training file",
        task.clone(),
        &["--save-batch-plan", &topic_train],
        error("is a data file of task 'topic', which writing would replace; name another file"),
    );
    let log = c.file("a_log.jsonl", b"{\"type\":\"step\",\"step\":1,\"loss\":{}}\n");
    c.add_train(
        "training",
        "--save-batch-plan naming a run's log (.jsonl, not a plan)",
        task.clone(),
        &["--save-batch-plan", &log],
        error("a_log.jsonl exists and is not an earlier batch plan (.jsonl); name another file"),
    );
    let notes = c.file("notes.txt", b"my notes\n");
    c.add_train(
        "training",
        "--save-batch-plan naming an existing file that is no batch plan",
        task.clone(),
        &["--save-batch-plan", &notes],
        error("notes.txt exists and is not an earlier batch plan (.jsonl); name another file"),
    );
    // add_train names this case's --out `run-N`, N the case's index.
    let own_file = c.path(&format!("run-{}/settings.json", c.cases.len()));
    c.add_train(
        "training",
        "--save-batch-plan naming a file the new run writes in --out",
        task.clone(),
        &["--save-batch-plan", &own_file],
        error("settings.json is where the run writes its own files in --out; name another file"),
    );
    c.add_train(
        "training",
        "gradients overflow",
        task.clone(),
        &["--task-weight", "topic=1e30"],
        error("training stopped: the gradient norm became inf at step 1, on a batch of task 'topic'"),
    );
    let mut args = c.train_args("unused", &format!("topic={}", c.path("unused.csv")), &["--overwrite"]);
    let out = args.iter().position(|a| a == "--out").unwrap();
    args[out + 1] = format!("{ck}/nested");
    let task_at = args.iter().position(|a| a == "--task").unwrap();
    args[task_at + 1] = task.clone();
    c.add(
        "training",
        "train --out inside a checkpoint",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        error("nested is inside the checkpoint"),
    );
    c.add_train(
        "training",
        "a model larger than memory",
        task,
        &["--projection-dim", "100000000000"],
        error("(Cannot allocate memory); lower --batch-size, --batch-tokens, --max-length or --projection-dim, or free the device"),
    );
    Some(c)
}

#[test]
fn every_bad_input_gets_one_clear_line_and_awkward_input_works() {
    let test = "every_bad_input_gets_one_clear_line_and_awkward_input_works";
    let Some(corpus) = build_corpus(test) else { return };
    let mut table = String::from("| input | what the user sees |\n|---|---|\n");
    let mut group = "";
    for case in &corpus.cases {
        let output = match &case.stdin {
            Stdin::Text(stdin) => run_with_stdin(&case.args.iter().map(String::as_str).collect::<Vec<_>>(), stdin),
            Stdin::File(path) => {
                let file = std::fs::File::open(path).unwrap();
                bin().args(&case.args).stdin(file).output().unwrap()
            }
            Stdin::Inherited => bin().args(&case.args).envs(case.env.iter().copied()).output().unwrap(),
        };
        let seen = match &case.expect {
            Expect::Error(text) => {
                let err = stderr(&output);
                assert!(!output.status.success(), "{}: expected an error, got success", case.what);
                assert_eq!(output.status.code(), Some(1), "{}: exit code; stderr:\n{err}", case.what);
                assert!(
                    !err.contains("panicked") && !err.contains("internal error") && !err.contains("RUST_BACKTRACE"),
                    "{}: panic:\n{err}",
                    case.what
                );
                let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
                assert_eq!(lines.len(), 1, "{}: expected one error line, got:\n{err}", case.what);
                assert!(lines[0].contains(text.as_str()), "{}: error line lacks {text:?}:\n{err}", case.what);
                format!("`{}`", lines[0].replace('|', "\\|"))
            }
            Expect::Works => {
                assert!(output.status.success(), "{}: expected success:\n{}", case.what, stderr(&output));
                "accepted: works normally".to_string()
            }
        };
        if case.group != group {
            group = case.group;
            table.push_str(&format!("| **{group}** | |\n"));
        }
        table.push_str(&format!("| {} | {} |\n", case.what, seen));
    }
    // Paths of this test's temporary files are shown as placeholders.
    let table = table
        .replace(&corpus.dir.path().to_string_lossy().to_string(), "<dir>")
        .replace(&corpus.model.parent().unwrap().to_string_lossy().to_string(), "<models>")
        .replace(&format!("MASTER_PORT {}", corpus.busy.local_addr().unwrap().port()), "MASTER_PORT <busy port>")
        .replace(&format!("127.0.0.1:{}", corpus.busy.local_addr().unwrap().port()), "127.0.0.1:<busy port>")
        .replace(&format!("127.0.0.1:{} ", corpus.free_port), "127.0.0.1:<free port> ");
    eprintln!("{} bad-input cases checked", corpus.cases.len());
    if let Ok(path) = std::env::var("SENTENCE_MTL_ERROR_TABLE") {
        std::fs::write(path, table).unwrap();
    }
}
