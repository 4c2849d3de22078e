//! Unlabelled sentences for `encode` and `predict`: from arguments, stdin, or `--input`
//! (`.csv` with a text column, anything else one sentence per line).

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::csv_file::{
    delimiter_hint, first_column_present, header_at, missing_column_hint, read_columns, read_header,
};
use crate::report::table::count;

/// The sentences to encode or label, one output row each. A blank line or cell is an empty
/// sentence, so that output rows stay aligned with input rows; unless `quiet`, a note says
/// where the first one is. A CSV's sentences are in `text_column`, or else in the first of
/// `default_columns` its header has.
pub fn read_sentences(
    arguments: &[String],
    input: Option<&Path>,
    text_column: Option<&str>,
    default_columns: &[&str],
    quiet: bool,
) -> Result<Vec<String>> {
    let is_csv = check_input_flags(input, text_column)?;
    let sentences = match (arguments.is_empty(), input) {
        (false, Some(_)) => bail!("give sentences either as arguments or with --input, not both"),
        (false, None) => arguments.to_vec(),
        (true, Some(path)) if is_csv => read_columns(path, &[csv_text_column(path, text_column, default_columns)?])?
            .into_iter()
            .map(|mut row| row.fields.remove(0))
            .collect(),
        (true, Some(path)) => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot open --input {}", path.display()))?;
            read_lines(std::io::BufReader::new(file), &path.display().to_string())?
        }
        (true, None) => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("no sentences: give them as arguments, on stdin (one per line), or with --input FILE");
            }
            read_lines(stdin.lock(), "stdin")?
        }
    };
    let from = input.map(|p| p.display().to_string()).unwrap_or_else(|| "stdin".into());
    if arguments.is_empty() && sentences.is_empty() && is_csv {
        bail!("no sentences to process: {from} has a header but no rows");
    }
    // Blank lines and cells are sentences (one output row per input row), even where they are
    // all there is, as in a chunk of a longer file.
    if arguments.is_empty() && sentences.is_empty() {
        bail!("no sentences to process: {from} is empty");
    }
    if !quiet {
        let read_as_lines = arguments.is_empty() && !is_csv;
        note_what_may_surprise(&sentences, &from, arguments.is_empty(), read_as_lines, default_columns);
    }
    Ok(sentences)
}

/// Refuses `--input` files of a structured kind read line by line, and `--text-column` where
/// there are no columns; says whether `--input` is a CSV file.
fn check_input_flags(input: Option<&Path>, text_column: Option<&str>) -> Result<bool> {
    let extension = input.and_then(|p| p.extension()).map(|e| e.to_string_lossy().to_ascii_lowercase());
    let is_csv = extension.as_deref() == Some("csv");
    if let Some(path) = input.filter(|p| p.is_dir()) {
        bail!("--input {} is a folder; give a file of sentences", path.display());
    }
    if let (Some(path), Some(ext)) = (input, extension.as_deref().filter(|e| STRUCTURED.contains(e))) {
        // Read line by line, their syntax would become sentences.
        bail!(
            "--input {}: .{ext} files are not read; give a .csv (column --text-column) or a text file of one sentence per line",
            path.display()
        );
    }
    if let (Some(column), false) = (text_column, is_csv) {
        let read_as = match input {
            Some(path) => format!(
                "--input {} is read one sentence per line (a CSV file needs the .csv extension)",
                path.display()
            ),
            None => "sentences from arguments or stdin have no columns".into(),
        };
        bail!("--text-column {column} names a column of a .csv --input; {read_as}");
    }
    Ok(is_csv)
}

/// Notes on a first line that looks like a CSV header (when read as lines) and on blank
/// sentences, which are encoded as empty ones.
fn note_what_may_surprise(
    sentences: &[String],
    from: &str,
    from_input: bool,
    read_as_lines: bool,
    default_columns: &[&str],
) {
    if let (Some(first), true) = (sentences.first(), read_as_lines) {
        if looks_like_a_header(first, default_columns) {
            crate::stderrln!(
                "note: {from}'s first line ('{first}') looks like a CSV header, but it is read as one sentence per line, commas and all; a file named .csv is read as CSV"
            );
        }
    }
    let blank: Vec<usize> = (0..sentences.len()).filter(|&i| sentences[i].trim().is_empty()).collect();
    if let Some(first) = blank.first() {
        let (from, which) = match (from_input, read_as_lines) {
            (true, true) => (format!("{from} has"), format!("line {}", first + 1)),
            (true, false) => (format!("{from} has"), format!("row {} after the header", first + 1)),
            (false, _) => ("the arguments have".to_string(), format!("argument {}", first + 1)),
        };
        crate::stderrln!(
            "note: {from} {}, the first is {which}; each is encoded as an empty one, so that output rows match input rows",
            count(blank.len(), "blank sentence"),
        );
    }
}

/// `--text-column`, else the first of `defaults` in `path`'s header.
fn csv_text_column<'a>(path: &Path, given: Option<&'a str>, defaults: &[&'a str]) -> Result<&'a str> {
    if let Some(column) = given {
        return Ok(column);
    }
    let header = read_header(path)?;
    match first_column_present(&header, defaults) {
        Some(column) => Ok(column),
        None => bail!(
            "{}: no column {} in the header (columns: {}); {}",
            header_at(path),
            defaults.iter().map(|d| format!("'{d}'")).collect::<Vec<_>>().join(" or "),
            super::csv_file::describe_header(&header),
            // Another delimiter is the cause, which no column name fixes.
            delimiter_hint(&header).map_or_else(
                || format!("{}, or name the sentences' column with --text-column", missing_column_hint(&header)),
                str::to_string
            )
        ),
    }
}

/// A line of comma-separated names, one of them a column the sentences would be read from.
fn looks_like_a_header(line: &str, columns: &[&str]) -> bool {
    let fields: Vec<&str> = line.split(',').map(|f| f.trim().trim_matches('"')).collect();
    fields.len() > 1 && fields.iter().any(|f| columns.contains(f))
}

/// Extensions of structured files that are neither CSV nor text.
const STRUCTURED: &[&str] = &["json", "jsonl", "tsv", "parquet", "npy", "xlsx"];

/// One sentence per line, blank lines included (a file's final line end ends the last line).
/// A line ends at `\n`, `\r\n` or a lone `\r` (old Mac files), as Python's universal
/// newlines read them; a byte-order mark at the file's start is dropped.
fn read_lines<R: BufRead>(mut reader: R, name: &str) -> Result<Vec<String>> {
    // The first bytes are looked at before any line is read: a binary stream without a
    // newline (`--input /dev/zero`) would otherwise be read into memory as one line, forever.
    let head = reader.fill_buf().with_context(|| format!("cannot read {name}"))?;
    crate::data::csv_file::refuse_utf16_or_binary(head, name)?;
    let mut out = Vec::new();
    for segment in reader.split(b'\n') {
        let segment = segment.with_context(|| format!("cannot read {name}"))?;
        // The `\r` of a `\r\n`, or one ending a lone-`\r` file's last line, ends no extra line.
        let segment = segment.strip_suffix(b"\r").unwrap_or(&segment);
        for bytes in segment.split(|&b| b == b'\r') {
            let line = out.len() + 1;
            let text = std::str::from_utf8(bytes).map_err(|_| {
                anyhow::anyhow!("{name}:{line}: not valid UTF-8 ({})", crate::data::csv_file::CONVERT_HINT)
            })?;
            let text = if line == 1 { text.strip_prefix('\u{feff}').unwrap_or(text) } else { text };
            out.push(text.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_header_read_as_a_sentence_is_recognised() {
        assert!(looks_like_a_header("text,label", &["text"]));
        assert!(looks_like_a_header("\"question\", label", &["question", "text"]));
        assert!(!looks_like_a_header("text", &["text"]), "one word is a sentence");
        assert!(!looks_like_a_header("I read the text, then slept", &["text"]));
    }

    #[test]
    fn lines_keep_blanks_and_end_at_any_line_end() {
        let lines = read_lines(&b"one\r\n\ntwo\n"[..], "x").unwrap();
        assert_eq!(lines, vec!["one", "", "two"]);
        // Old Mac files end lines with a lone CR, as Python's universal newlines read them.
        assert_eq!(read_lines(&b"one\rtwo\r\rthree\r"[..], "x").unwrap(), vec!["one", "two", "", "three"]);
        assert_eq!(read_lines(&b"a\rb\r\nc"[..], "x").unwrap(), vec!["a", "b", "c"]);
    }

    #[test]
    fn bad_utf8_names_the_line() {
        let err = read_lines(&b"ok\n\xff\n"[..], "in.txt").unwrap_err().to_string();
        assert!(err.starts_with("in.txt:2: not valid UTF-8 (save the file as UTF-8"), "{err}");
        let err = read_lines(&b"ok\rfine\r\xff\r"[..], "in.txt").unwrap_err().to_string();
        assert!(err.starts_with("in.txt:3: not valid UTF-8"), "{err}");
    }

    #[test]
    fn an_empty_argument_is_a_sentence() {
        assert_eq!(read_sentences(&["".into()], None, None, &["text"], true).unwrap(), vec![""]);
    }

    #[test]
    fn arguments_and_input_are_exclusive() {
        let err = read_sentences(&["a".into()], Some(Path::new("x.txt")), None, &["text"], true).unwrap_err();
        assert!(err.to_string().contains("not both"));
    }
}
