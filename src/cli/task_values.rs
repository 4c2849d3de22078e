//! The values of the flags that name tasks, parsed once for `train` and `eval`:
//! `--task NAME=FILES` and the per-task `[NAME=]VALUE` flags (`--text-column`,
//! `--label-column`, `--task-weight`, ...).

use std::str::FromStr;

use anyhow::{bail, Context, Result};

/// The longest task name: it names report files, with room left for their suffixes.
const MAX_TASK_NAME: usize = 100;

/// A task name becomes part of tensor names (`heads.<name>.weight`) and file names.
pub fn check_task_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        bail!("task name '{name}' must be non-empty ASCII letters, digits, '_' or '-'");
    }
    // Report files are named after it, and a file name has at most 255 bytes.
    if name.len() > MAX_TASK_NAME {
        bail!("task name '{}...' is {} characters long; at most {MAX_TASK_NAME}", &name[..20], name.len());
    }
    Ok(())
}

/// `--task NAME=VALUE`: a valid task name and what follows `=` (the command reads its files
/// from it: `TRAIN.csv[,DEV.csv]` for `train`, `FILE.csv` for `eval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskArg {
    pub name: String,
    pub value: String,
    /// The flag's text as given, for messages.
    pub text: String,
}

impl FromStr for TaskArg {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Self> {
        let (name, value) =
            text.split_once('=').with_context(|| format!("--task {}: expected NAME=FILE.csv", cut(text)))?;
        check_task_name(name).with_context(|| format!("--task {}", cut(text)))?;
        Ok(Self { name: name.to_string(), value: value.to_string(), text: text.to_string() })
    }
}

/// A flag's value for a message: cut after 60 characters.
fn cut(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

impl TaskArg {
    /// Refuses a task name given twice.
    pub fn check_unique(tasks: &[TaskArg]) -> Result<()> {
        for (i, task) in tasks.iter().enumerate() {
            if tasks[..i].iter().any(|t| t.name == task.name) {
                bail!("--task {}: task '{}' is given twice", task.text, task.name);
            }
        }
        Ok(())
    }
}

/// Two task names that differ only in case: files named after tasks (`eval`'s reports) would
/// be one file on the case-insensitive file systems of macOS and Windows.
pub fn names_equal_but_for_case<'a>(names: &[&'a str]) -> Option<(&'a str, &'a str)> {
    names
        .iter()
        .enumerate()
        .find_map(|(i, a)| names[i + 1..].iter().find(|b| b.eq_ignore_ascii_case(a)).map(|b| (*a, *b)))
}

/// One `[NAME=]VALUE`: a value for one task, or (without `NAME=`) for every task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerTaskValue {
    pub task: Option<String>,
    pub value: String,
}

impl FromStr for PerTaskValue {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Self> {
        Ok(match text.split_once('=') {
            Some((task, value)) => Self { task: Some(task.to_string()), value: value.to_string() },
            None => Self { task: None, value: text.to_string() },
        })
    }
}

impl std::fmt::Display for PerTaskValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.task {
            Some(task) => write!(f, "{task}={}", self.value),
            None => f.write_str(&self.value),
        }
    }
}

/// The values of one repeatable `[NAME=]VALUE` flag, checked against the run's tasks.
/// A task's own value wins over the value for all; of several, the last one given counts.
pub struct PerTask<'a> {
    all: Option<&'a str>,
    own: Vec<(&'a str, &'a str)>,
}

impl<'a> PerTask<'a> {
    /// `flag` names the flag in messages; every `NAME=` must be one of `task_names`.
    pub fn resolve(flag: &str, values: &'a [PerTaskValue], task_names: &[&str]) -> Result<Self> {
        let mut per_task = Self { all: None, own: Vec::new() };
        for value in values {
            match &value.task {
                Some(name) if !task_names.contains(&name.as_str()) => {
                    bail!("{flag} {value}: no task named '{name}' (tasks: {})", task_names.join(", "))
                }
                Some(name) => per_task.own.push((name, &value.value)),
                None => per_task.all = Some(&value.value),
            }
        }
        Ok(per_task)
    }

    /// Like [`PerTask::resolve`] for flags that only make sense per task (`NAME=VALUE`).
    pub fn resolve_named(flag: &str, example: &str, values: &'a [PerTaskValue], task_names: &[&str]) -> Result<Self> {
        if let Some(bad) = values.iter().find(|v| v.task.is_none()) {
            bail!("{flag} {bad}: expected {example}");
        }
        Self::resolve(flag, values, task_names)
    }

    /// Whether `task` was named (`NAME=VALUE`), rather than covered by a value for all.
    pub fn is_own(&self, task: &str) -> bool {
        self.own.iter().any(|(name, _)| *name == task)
    }

    /// The value for `task`, if any was given.
    pub fn get(&self, task: &str) -> Option<&'a str> {
        self.own.iter().rev().find(|(name, _)| *name == task).map(|(_, v)| *v).or(self.all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(texts: &[&str]) -> Vec<PerTaskValue> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn per_task_values_override_the_value_for_all() {
        let v = values(&["sentence", "a=q", "a=r"]);
        let resolved = PerTask::resolve("--text-column", &v, &["a", "b"]).unwrap();
        assert_eq!(resolved.get("a"), Some("r"));
        assert_eq!(resolved.get("b"), Some("sentence"));
        let none = PerTask::resolve("--text-column", &[], &["a"]).unwrap();
        assert_eq!(none.get("a"), None);
    }

    #[test]
    fn unknown_task_names_and_missing_names_are_errors() {
        let v = values(&["c=q"]);
        let err = PerTask::resolve("--label-column", &v, &["a", "b"]).err().unwrap().to_string();
        assert_eq!(err, "--label-column c=q: no task named 'c' (tasks: a, b)");
        let v = values(&["2"]);
        let err = PerTask::resolve_named("--task-weight", "NAME=W", &v, &["a"]).err().unwrap().to_string();
        assert_eq!(err, "--task-weight 2: expected NAME=W");
    }

    #[test]
    fn task_args_check_names_and_duplicates() {
        let long = format!("{}=x.csv", "t".repeat(101));
        let err = format!("{:#}", long.parse::<TaskArg>().unwrap_err());
        let t = |n| "t".repeat(n);
        assert_eq!(err, format!("--task {}...: task name '{}...' is 101 characters long; at most 100", t(60), t(20)));
        assert!(format!("{}=x.csv", "t".repeat(100)).parse::<TaskArg>().is_ok());
        let err = "bad.name=x.csv".parse::<TaskArg>().unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "--task bad.name=x.csv: task name 'bad.name' must be non-empty ASCII letters, digits, '_' or '-'"
        );
        assert!("x.csv".parse::<TaskArg>().unwrap_err().to_string().contains("expected NAME=FILE.csv"));
        let tasks: Vec<TaskArg> = ["a=1.csv", "a=2.csv"].iter().map(|t| t.parse().unwrap()).collect();
        assert_eq!(TaskArg::check_unique(&tasks).unwrap_err().to_string(), "--task a=2.csv: task 'a' is given twice");
    }
}
