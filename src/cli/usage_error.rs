//! clap's errors as one `error:` line and exit code 1, like every other bad input: a missing
//! flag, an unknown one, or a value its type refused, each naming the flag.

use std::num::{IntErrorKind, ParseFloatError, ParseIntError};

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// The line to print after `error: `, or `None` for what is not an error (`--help`,
/// `--version`, the help a bare command shows), which clap prints itself.
pub fn one_line(error: &clap::Error) -> Option<String> {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            None
        }
        ErrorKind::ValueValidation => Some(match std::error::Error::source(error) {
            Some(source) => refused_value(error, source),
            None => rendered(error),
        }),
        ErrorKind::UnknownArgument => {
            let invalid = context(error, ContextKind::InvalidArg).unwrap_or_default();
            let args = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned());
            if let Some(sentence) = sentence_read_as_flags(&invalid, args) {
                return Some(format!(
                    "unexpected argument '{sentence}' found; a sentence that starts with '-' goes after `--`, which ends the flags: -- '{sentence}'"
                ));
            }
            Some(match familiar_flag(&invalid) {
                Some(tip) => format!("unexpected argument '{invalid}' found; tip: {tip} (see --help)"),
                // clap's tip for a flag like no other, "to pass '--x' as a value, use '-- --x'",
                // takes a mistyped flag for a sentence.
                None if invalid.starts_with("--") => {
                    rendered(error).replace(&format!("; tip: to pass '{invalid}' as a value, use '-- {invalid}'"), "")
                }
                None => rendered(error),
            })
        }
        _ => Some(rendered(error)),
    }
}

/// The argument clap took for flags when it reported `invalid`: a sentence with spaces that
/// starts with '-', reported whole (`"--- news ---"`), by its start (`"-5 degrees"` as `-5`),
/// or by the short flag it could not read (`"-q is quiet"` as `'- '`), for which clap's own
/// tip (`-- -5`) would encode another text.
fn sentence_read_as_flags(invalid: &str, args: impl Iterator<Item = String>) -> Option<String> {
    if !invalid.starts_with('-') {
        return None;
    }
    if invalid.starts_with("--") && invalid.contains(char::is_whitespace) {
        return Some(invalid.to_string());
    }
    let short_flag = invalid.strip_prefix('-').filter(|flag| flag.chars().count() == 1);
    let mut args = args.take_while(|arg| arg != "--");
    args.find(|arg| {
        let read_as_flags = arg.starts_with('-') && !arg.starts_with("--") && arg.contains(char::is_whitespace);
        read_as_flags && (arg.starts_with(invalid) || short_flag.is_some_and(|flag| arg[1..].contains(flag)))
    })
}

/// This tool's flag for one users bring from Hugging Face's Trainer and sentence-transformers
/// scripts, where clap's nearest spelling would mislead (`--lr` is closest to `--lr-heads`).
fn familiar_flag(flag: &str) -> Option<&'static str> {
    let name = flag.split('=').next().unwrap_or(flag).trim_start_matches('-').replace('_', "-");
    Some(match name.as_str() {
        "lr" | "learning-rate" => {
            "learning rates are per group: --lr-backbone is the encoder's (HF Trainer's --learning_rate), --lr-projection and --lr-heads the new layers'"
        }
        "fp16" | "bf16" | "half" | "amp" => "--precision bf16 (or auto: bf16 where the device runs it fast); fp16 is not offered",
        "num-train-epochs" | "num-epochs" => "--epochs",
        "per-device-train-batch-size" | "train-batch-size" => "--batch-size (the global batch, all processes together)",
        "output-dir" | "output-path" => "--out (train, eval, export) or --output FILE (encode, predict)",
        "model-name-or-path" | "model-name" => "--model",
        "gradient-accumulation-steps" => "--grad-accum",
        "max-seq-length" | "max-seq-len" => "--max-length",
        "save-steps" => "--save-every",
        "eval-steps" => "--eval-every",
        "logging-steps" => "--log-every",
        "resume-from-checkpoint" => "train --resume RUN_DIR",
        "early-stopping-patience" => "--patience",
        _ => return None,
    })
}

/// A value the flag's type refused: the type's own message, or for plain numbers what the
/// number had to be, with the flag named either way.
fn refused_value(error: &clap::Error, source: &(dyn std::error::Error + 'static)) -> String {
    let flag =
        context(error, ContextKind::InvalidArg).map(|arg| arg.split_whitespace().next().unwrap_or("").to_string());
    let value = context(error, ContextKind::InvalidValue).unwrap_or_default();
    let number = if let Some(e) = source.downcast_ref::<ParseIntError>() {
        Some(match e.kind() {
            IntErrorKind::PosOverflow => "is too large",
            _ if value.starts_with('-') => "must not be negative",
            _ => "is not a whole number",
        })
    } else if source.is::<ParseFloatError>() {
        Some("is not a number")
    } else {
        None
    };
    let message = chain(source);
    match (flag, number) {
        (Some(flag), Some(number)) => format!("{flag} '{value}' {number}"),
        (Some(flag), None) if !message.contains(&flag) && message.contains(&format!("'{value}'")) => {
            format!("{flag}: {message}")
        }
        (Some(flag), None) if !message.contains(&flag) => format!("{flag} '{value}': {message}"),
        _ => message,
    }
}

fn context(error: &clap::Error, kind: ContextKind) -> Option<String> {
    match error.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(e) = cause {
        parts.push(e.to_string());
        cause = e.source();
    }
    parts.join(": ")
}

/// clap's own text on one line: its message, the flags it lists and its tip, without the
/// usage block (the `--help` it points to shows that).
fn rendered(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let mut line = String::new();
    let lines = text.lines().map(str::trim).take_while(|l| !l.starts_with("Usage:"));
    for part in lines.filter(|l| !l.is_empty() && !l.starts_with("For more information")) {
        let part = part.strip_prefix("error: ").unwrap_or(part);
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') { " " } else { "; " });
        }
        line.push_str(part);
    }
    format!("{line} (see --help)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;

    fn line(args: &[&str]) -> Option<String> {
        let error = Cli::definition().try_get_matches_from(args).unwrap_err();
        one_line(&error)
    }

    /// clap reports `"-5 degrees"` as `-5`; a flag typed wrong, or a sentence already after
    /// `--`, is not such a sentence.
    #[test]
    fn a_sentence_starting_with_a_dash_is_found_whole() {
        let args = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>().into_iter();
        let found = sentence_read_as_flags("-5", args(&["encode", "-m", "x", "-5 degrees"]));
        assert_eq!(found.as_deref(), Some("-5 degrees"));
        assert_eq!(sentence_read_as_flags("--forse", args(&["encode", "--forse"])), None);
        assert_eq!(sentence_read_as_flags("-5", args(&["encode", "-5", "--", "-5 degrees"])), None);
        let whole = sentence_read_as_flags("--- news ---", args(&["encode", "--- news ---"]));
        assert_eq!(whole.as_deref(), Some("--- news ---"));
        let short = sentence_read_as_flags("- ", args(&["encode", "-m", "x", "-q is quiet"]));
        assert_eq!(short.as_deref(), Some("-q is quiet"));
    }

    #[test]
    fn numbers_name_their_flag() {
        let bad = line(&["sentence-mtl", "encode", "--batch-size", "ten", "hi"]).unwrap();
        assert_eq!(bad, "--batch-size 'ten' is not a whole number");
        let huge = line(&["sentence-mtl", "encode", "--batch-size", "99999999999999999999999", "hi"]).unwrap();
        assert_eq!(huge, "--batch-size '99999999999999999999999' is too large");
        let negative = line(&["sentence-mtl", "encode", "--batch-size", "-1", "hi"]).unwrap();
        assert_eq!(negative, "--batch-size '-1' must not be negative");
        let float = line(&["sentence-mtl", "train", "--lr-heads", "fast"]).unwrap();
        assert_eq!(float, "--lr-heads 'fast' is not a number");
    }

    #[test]
    fn own_messages_are_kept_and_usage_errors_fit_one_line() {
        let device = line(&["sentence-mtl", "encode", "--device", "tpu", "hi"]).unwrap();
        assert!(device.starts_with("unknown --device 'tpu'"), "{device}");
        let pooling = line(&["sentence-mtl", "encode", "--pooling", "sum", "hi"]).unwrap();
        assert!(pooling.starts_with("--pooling: unknown pooling 'sum'"), "{pooling}");
        let missing = line(&["sentence-mtl", "export", "--format", "hf"]).unwrap();
        assert!(
            missing.contains("--model <DIR>") && missing.contains("--out <DIR>") && !missing.contains('\n'),
            "{missing}"
        );
        let lr = line(&["sentence-mtl", "train", "--learning_rate", "1e-4"]).unwrap();
        assert!(
            lr.starts_with(
                "unexpected argument '--learning_rate' found; tip: learning rates are per group: --lr-backbone"
            ),
            "{lr}"
        );
        let fp16 = line(&["sentence-mtl", "encode", "--fp16", "hi"]).unwrap();
        assert!(fp16.contains("tip: --precision bf16"), "{fp16}");
        let unknown = line(&["sentence-mtl", "encode", "--forse"]).unwrap();
        assert!(unknown.contains("'--forse'") && !unknown.contains('\n'), "{unknown}");
        let unlike = line(&["sentence-mtl", "encode", "--bogus"]).unwrap();
        assert_eq!(unlike, "unexpected argument '--bogus' found (see --help)");
        assert_eq!(line(&["sentence-mtl", "--help"]), None);
    }
}
