//! Reading named columns from a CSV file, with errors that name the file, line and column.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// One data row: its 1-based line number in the file and the requested fields, in the
/// order the columns were asked for.
#[derive(Debug, Clone)]
pub struct CsvRow {
    pub line: u64,
    pub fields: Vec<String>,
}

/// Reads `columns` from a CSV with a header row (RFC 4180 quoting, `,` delimiter; a UTF-8
/// BOM and CRLF line ends are accepted).
pub fn read_columns(path: &Path, columns: &[&str]) -> Result<Vec<CsvRow>> {
    read_columns_from(open(path)?, &path.display().to_string(), columns)
}

/// Opens a CSV file, refusing what is not one: a folder, and a pipe or device, whose rows
/// could be read only once where a data file is read several times (its header to tell its
/// kind, its rows, its fingerprint for `--resume`).
fn open(path: &Path) -> Result<std::fs::File> {
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
    if metadata.is_dir() {
        bail!("{} is a folder, not a CSV file", path.display());
    }
    if !metadata.is_file() {
        bail!(
            "{} is a pipe or device, not a file: a data file is read more than once, so write its rows to a file first (e.g. head -200 big.csv > small.csv)",
            path.display()
        );
    }
    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// Refuses text in UTF-16 (what spreadsheets save as "Unicode text") and files of NUL
/// bytes, which would read as one column of garbled names. `head`: the file's first bytes.
pub fn refuse_utf16_or_binary(head: &[u8], name: &str) -> Result<()> {
    let head = &head[..head.len().min(512)];
    let bom = head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]);
    // UTF-16 without a byte-order mark: the high byte of every Latin-1 character is NUL (of
    // the spaces, commas and digits in Chinese or Cyrillic text too), so many NULs at one
    // parity and none at the other (a binary file has them anywhere).
    let nul_share = |skip: usize| {
        let bytes = head.iter().skip(skip).step_by(2);
        let (nuls, all) = bytes.fold((0, 0), |(nuls, all), &b| (nuls + usize::from(b == 0), all + 1));
        nuls as f64 / all.max(1) as f64
    };
    let one_parity_nul = |high: usize| nul_share(high) >= 0.25 && nul_share(1 - high) <= 0.01;
    if bom || (head.len() >= 4 && (one_parity_nul(0) || one_parity_nul(1))) {
        bail!("{name}: the file is UTF-16 text (a spreadsheet's \"Unicode text\"); save it as UTF-8 (\"CSV UTF-8\"), or convert it: iconv -f UTF-16 -t UTF-8 FILE > NEW");
    }
    if let Some((_, what)) = COMPRESSED.iter().find(|(magic, _)| head.starts_with(magic)) {
        bail!("{name}: the file is {what}; sentence-mtl reads UTF-8 text");
    }
    if head.contains(&0) {
        bail!("{name}: the file holds NUL bytes, so it is not a text file (sentence-mtl reads UTF-8 text)");
    }
    Ok(())
}

/// A header's column names for a message: at most 10 of them, each cut to 40 columns (a file
/// without a header has a sentence of 100,000 characters there).
pub fn describe_header(header: &[String]) -> String {
    let names: Vec<String> = header.iter().map(|name| crate::report::table::ellipsize(name, 40)).collect();
    crate::report::table::first_and_more(&names, 10)
}

/// The compressed formats a data file may come in by mistake (pandas reads them as they are),
/// by their first bytes.
const COMPRESSED: [(&[u8], &str); 5] = [
    (&[0x1F, 0x8B], "gzip-compressed (gunzip -k FILE)"),
    (b"PK\x03\x04", "a zip archive (or a spreadsheet: export it as CSV UTF-8)"),
    (b"BZh", "bzip2-compressed (bunzip2 -k FILE)"),
    (&[0xFD, b'7', b'z', b'X', b'Z', 0x00], "xz-compressed (unxz -k FILE)"),
    (b"PAR1", "a Parquet file (write it as CSV first)"),
];

/// What to do with a file in another encoding than UTF-8.
pub const CONVERT_HINT: &str = "save the file as UTF-8; from Latin-1: iconv -f latin1 -t utf-8 FILE > NEW";

pub fn read_columns_from<R: std::io::Read>(mut reader: R, name: &str, columns: &[&str]) -> Result<Vec<CsvRow>> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).with_context(|| format!("cannot read {name}"))?;
    refuse_utf16_or_binary(&bytes, name)?;
    let mut lines = LineCounter::new(&bytes);
    if let Some(opened) = unclosed_quote(&bytes) {
        let line = count_line_ends(&bytes[..opened]) + 1;
        bail!("{name}:{line}: a quoted field opens here and is never closed, so it would run to the end of the file (unbalanced quote?)");
    }
    // Flexible, so that a line of spaces (an editor's trailing line) is skipped as a blank one
    // is, not refused as a row of one field; other rows of the wrong length are refused below.
    let mut csv = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(&bytes[..]);
    let header = header_of(&mut csv, name, header_line(&bytes)).map_err(|e| match e {
        HeaderError::Empty => {
            anyhow::anyhow!("{name}: the file is empty (expected a header row with columns {})", columns.join(", "))
        }
        HeaderError::Unreadable(message) => anyhow::anyhow!(message),
    })?;
    let mut indices = Vec::with_capacity(columns.len());
    for column in columns {
        if header.iter().filter(|h| h == column).count() > 1 {
            bail!(
                "{name}:{}: the header names column '{column}' more than once (columns: {})",
                header_line(&bytes),
                describe_header(&header)
            );
        }
        match header.iter().position(|h| h == column) {
            Some(i) => indices.push(i),
            None => bail!(
                "{name}:{}: no column '{column}' in the header (columns: {}); {}",
                header_line(&bytes),
                describe_header(&header),
                missing_column_hint(&header)
            ),
        }
    }
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => match error_position(&e) {
                Some(position) => bail!("{name}:{}: {}", lines.line_of(position), describe_csv_error(&e)),
                None => bail!("{name}: {}", describe_csv_error(&e)),
            },
        }
        let line = record.position().map_or(0, |p| lines.line_of(p));
        if record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace) && !starts_quoted(&bytes, &record) {
            continue;
        }
        if record.len() != header.len() {
            // A spreadsheet's trailing comma leaves the header a last column without a name.
            let cause = match header.last().is_some_and(String::is_empty) && record.len() + 1 == header.len() {
                true => "the header ends in a column without a name: a trailing comma?",
                false => "unquoted comma or unbalanced quote?",
            };
            bail!("{name}:{line}: row has {} field(s), the header has {} ({cause})", record.len(), header.len());
        }
        // `cat a.csv b.csv` repeats the header as a row, which would read as data.
        if header.len() > 1 && record.iter().zip(&header).all(|(field, name)| field.trim_ascii() == name.as_bytes()) {
            bail!("{name}:{line}: this row repeats the header; were files joined with their headers (cat a.csv b.csv)? remove it");
        }
        let mut fields = Vec::with_capacity(indices.len());
        for (&i, column) in indices.iter().zip(columns) {
            let bytes = record.get(i).unwrap_or_default();
            match std::str::from_utf8(bytes) {
                Ok(s) => fields.push(s.to_string()),
                Err(_) => bail!("{name}:{line}: column '{column}' is not valid UTF-8 ({CONVERT_HINT})"),
            }
        }
        rows.push(CsvRow { line, fields });
    }
    Ok(rows)
}

/// Whether `record`'s line starts with a quote: `""` is an empty field (as Python's csv and
/// pandas write an empty string in a one-column file), not a blank line to skip.
fn starts_quoted(bytes: &[u8], record: &csv::ByteRecord) -> bool {
    let start = record.position().map_or(0, |p| p.byte() as usize);
    bytes.get(start..).unwrap_or_default().iter().find(|&&b| b != b'\n' && b != b'\r') == Some(&b'"')
}

/// The first of `candidates` that `header` names (a task's trained column, then the default).
pub fn first_column_present<'a>(header: &[String], candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().copied().find(|c| header.iter().any(|h| h == c))
}

/// Why a header may lack the column asked for.
pub fn missing_column_hint(header: &[String]) -> &'static str {
    delimiter_hint(header).unwrap_or("the first line must name the columns")
}

/// What a header of one column holding `;` or a tab says: the file has another delimiter.
pub fn delimiter_hint(header: &[String]) -> Option<&'static str> {
    match header {
        [only] if only.contains('\t') => Some("the header looks tab-separated; sentence-mtl reads comma-separated CSV"),
        [only] if only.contains(';') => Some("the header looks ';'-separated; sentence-mtl reads comma-separated CSV"),
        _ => None,
    }
}

/// `FILE:LINE` of a CSV file's header row, for messages about it: the first line that is not
/// blank, as the csv crate skips blank lines before it.
pub fn header_at(path: &Path) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(1 << 16).read_to_end(&mut head);
    }
    format!("{}:{}", path.display(), header_line(&head))
}

/// The line of the header row in a file starting with `bytes`.
fn header_line(bytes: &[u8]) -> u64 {
    let start = if bytes.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let blank = bytes[start..].iter().take_while(|&&b| matches!(b, b'\r' | b'\n')).count();
    count_line_ends(&bytes[start..start + blank]) + 1
}

/// The column names of a CSV file's header row (a UTF-8 byte-order mark and surrounding
/// spaces removed), for telling what kind of data a file holds.
pub fn read_header(path: &Path) -> Result<Vec<String>> {
    use std::io::{Read, Seek};
    let mut file = open(path)?;
    let name = path.display().to_string();
    let mut head = Vec::with_capacity(512);
    (&mut file).take(512).read_to_end(&mut head).with_context(|| format!("cannot read {name}"))?;
    refuse_utf16_or_binary(&head, &name)?;
    file.rewind().with_context(|| format!("cannot read {name}"))?;
    let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(file);
    header_of(&mut csv, &name, header_line(&head)).map_err(|e| match e {
        HeaderError::Empty => anyhow::anyhow!("{name}: the file is empty (expected a header row naming the columns)"),
        HeaderError::Unreadable(message) => anyhow::anyhow!(message),
    })
}

enum HeaderError {
    Empty,
    Unreadable(String),
}

/// The header row's names; `line` is the row's line, for the message about a quote left open.
fn header_of<R: std::io::Read>(csv: &mut csv::Reader<R>, name: &str, line: u64) -> Result<Vec<String>, HeaderError> {
    let header = match csv.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(HeaderError::Unreadable(format!(
                "{name}: cannot read the header row: {}",
                describe_csv_error(&e)
            )))
        }
    };
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(HeaderError::Empty);
    }
    // A column name holding a line end is a quote left open: the crate reads on to the next
    // quote, or to the end of the file, as one field.
    if let Some(field) = header.iter().find(|h| h.contains(&b'\n') || h.contains(&b'\r')) {
        let first_line = String::from_utf8_lossy(field).split(['\n', '\r']).next().unwrap_or_default().to_string();
        return Err(HeaderError::Unreadable(format!(
            "{name}:{line}: the header's quoted field \"{}\" runs past the end of its line (unbalanced quote?)",
            crate::report::table::ellipsize(&first_line, 40)
        )));
    }
    Ok(header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = String::from_utf8_lossy(h);
            // The csv crate keeps a UTF-8 byte-order mark on the first header; drop it.
            let h = if i == 0 { h.trim_start_matches('\u{feff}').to_string() } else { h.into_owned() };
            h.trim().to_string()
        })
        .collect())
}

/// The offset of the quote that opens a field still open at the end of `bytes`, as the csv
/// crate reads them: a quote opens a field only at its start, `""` inside is a quote, and
/// any other quote closes it. The crate ends such a field at the end of the file without an
/// error, which would swallow every row after a stray quote into one text.
fn unclosed_quote(bytes: &[u8]) -> Option<usize> {
    let mut open: Option<usize> = None;
    let mut at_field_start = true;
    // The crate skips a UTF-8 byte-order mark, after which a quote opens the first field.
    let mut i = if bytes.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    while i < bytes.len() {
        let b = bytes[i];
        match open {
            Some(_) if b == b'"' && bytes.get(i + 1) == Some(&b'"') => i += 1,
            Some(_) if b == b'"' => open = None,
            Some(_) => {}
            None if b == b'"' && at_field_start => open = Some(i),
            None => {}
        }
        at_field_start = open.is_none() && matches!(b, b',' | b'\n' | b'\r');
        i += 1;
    }
    open
}

/// Line ends in `bytes` as the csv crate reads them: `\n`, `\r\n`, or a lone `\r` (old Mac files).
fn count_line_ends(bytes: &[u8]) -> u64 {
    let lone_cr = |i: usize| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
    (0..bytes.len()).filter(|&i| bytes[i] == b'\n' || lone_cr(i)).count() as u64
}

fn error_position(e: &csv::Error) -> Option<&csv::Position> {
    match e.kind() {
        csv::ErrorKind::Utf8 { pos: Some(pos), .. } => Some(pos),
        csv::ErrorKind::Deserialize { pos: Some(pos), .. } => Some(pos),
        _ => e.position(),
    }
}

/// The 1-based line on which a record starts, from its byte offset. The csv crate's own line
/// count is one short after a CRLF line end, and a record's position is taken where the line
/// end before it starts (at the `\n` of a `\r\n`, or before the blank lines in between).
struct LineCounter<'a> {
    bytes: &'a [u8],
    /// Line ends in `bytes[..offset]`; records come in order, so the count only moves on.
    offset: usize,
    line_feeds: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0, line_feeds: 0 }
    }

    fn line_of(&mut self, position: &csv::Position) -> u64 {
        let mut at = (position.byte() as usize).min(self.bytes.len());
        // No record starts with a line end: those before it are blank lines, which the
        // position counts as part of the record.
        while matches!(self.bytes.get(at), Some(b'\n' | b'\r')) {
            at += 1;
        }
        if at < self.offset {
            (self.offset, self.line_feeds) = (0, 0);
        }
        self.line_feeds += count_line_ends(&self.bytes[self.offset..at]);
        self.offset = at;
        self.line_feeds + 1
    }
}

/// The csv crate's error in words. Rows of the wrong length are not among them: records are
/// read flexibly, and `read_columns_from` says which row and why.
fn describe_csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => format!("read error: {io}"),
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8: {err}"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8], columns: &[&str]) -> Result<Vec<CsvRow>> {
        read_columns_from(text, "t.csv", columns)
    }

    #[test]
    fn blank_crlf_lines_keep_the_count() {
        let rows = read(b"label,text\r\na,first\r\n\r\n\r\nb,second\r\n", &["text"]).unwrap();
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 5]);
        let rows = read(b"label,text\na,first\n\n\nb,second\n", &["text"]).unwrap();
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 5]);
    }

    #[test]
    fn a_line_of_spaces_is_skipped_as_a_blank_one_is() {
        let rows = read(b"label,text\r\na,first\r\n \r\n\r\nb,second\r\n  \r\n", &["text"]).unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.line, r.fields[0].as_str())).collect::<Vec<_>>(),
            [(2, "first"), (5, "second")]
        );
        let one_column = read(b"text\nfirst\n   \nsecond\n", &["text"]).unwrap();
        assert_eq!(one_column.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4]);
        // A quoted empty or blank field is a row: pandas writes an empty string so.
        let quoted = read(b"text\nfirst\n\"\"\n\n\" \"\nsecond\n", &["text"]).unwrap();
        assert_eq!(
            quoted.iter().map(|r| (r.line, r.fields[0].as_str())).collect::<Vec<_>>(),
            [(2, "first"), (3, ""), (5, " "), (6, "second")]
        );
        let err = read(b"label,text\na,first\n\"\"\n", &["text"]).unwrap_err();
        assert!(err.to_string().starts_with("t.csv:3: row has 1 field(s), the header has 2"), "{err}");
        let err = read(b"label,text\na,first\nb\n", &["text"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:3: row has 1 field(s), the header has 2 (unquoted comma or unbalanced quote?)"
        );
        let err = read(b"label,text\na,first,extra\n", &["text"]).unwrap_err();
        assert!(err.to_string().starts_with("t.csv:2: row has 3 field(s), the header has 2"), "{err}");
    }

    #[test]
    fn a_quote_never_closed_is_refused_at_its_line() {
        let err = read(b"label,text\na,first\nb,\"second has a stray quote\na,third\n", &["text"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:3: a quoted field opens here and is never closed, so it would run to the end of the file (unbalanced quote?)"
        );
        let err = read(b"\xEF\xBB\xBFtext\r\nfirst\r\n\"second\r\nthird\r\n", &["text"]).unwrap_err();
        assert!(err.to_string().starts_with("t.csv:3: a quoted field opens here"), "{err}");
        // After a byte-order mark, a quote opens the first field as anywhere else.
        let rows = read(b"\xEF\xBB\xBF\"a,\"\"\",text\n1,hello\n", &["text"]).unwrap();
        assert_eq!(rows[0].fields[0], "hello");
        // Closed quotes, doubled quotes, quotes inside unquoted fields and quoted newlines are fine.
        let fine = b"text,label\n\"a \"\"quoted\"\" word\",x\nsay \"hi\",y\n\"two\nlines\",z\n\"\",w\n";
        let rows = read(fine, &["text"]).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.fields[0].as_str()).collect::<Vec<_>>(),
            ["a \"quoted\" word", "say \"hi\"", "two\nlines", ""]
        );
    }

    #[test]
    fn header_errors_name_the_header_line_after_blank_lines() {
        let err = read(b"\n\r\n\rtext,lable\nhello,pos\n", &["text", "label"]).unwrap_err().to_string();
        assert!(err.starts_with("t.csv:4: no column 'label' in the header (columns: text, lable)"), "{err}");
        assert_eq!(header_line(b"\xEF\xBB\xBFtext\n"), 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.csv");
        std::fs::write(&path, "\n\ntext,label\n").unwrap();
        assert_eq!(header_at(&path), format!("{}:3", path.display()));
    }

    #[test]
    fn joined_files_trailing_commas_and_compressed_files_are_named() {
        let err = read(
            b"text,label
a,b
text,label
c,d
",
            &["text", "label"],
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("t.csv:3: this row repeats the header"), "{err}");
        let err = read(
            b"text,label,
a,b
",
            &["text", "label"],
        )
        .unwrap_err()
        .to_string();
        assert!(err.ends_with("(the header ends in a column without a name: a trailing comma?)"), "{err}");
        let err = read(&[0x1F, 0x8B, 8, 0, 0, 0], &["text"]).unwrap_err().to_string();
        assert!(err.starts_with("t.csv: the file is gzip-compressed (gunzip -k FILE)"), "{err}");
        // A header of 100,000 characters (a file without one) is shown cut.
        let long = format!("{},label\na,b\n", "word ".repeat(20_000));
        let err = read(long.as_bytes(), &["text", "label"]).unwrap_err().to_string();
        assert!(err.len() < 400, "{} bytes: {}", err.len(), &err[..200]);
    }

    #[test]
    fn a_column_named_twice_is_refused() {
        let err = read(b"text,label,text\na,b,c\n", &["text", "label"]).unwrap_err().to_string();
        assert_eq!(err, "t.csv:1: the header names column 'text' more than once (columns: text, label, text)");
        assert!(read(b"text,label,note,note\na,b,c,d\n", &["text", "label"]).is_ok(), "other columns may repeat");
    }

    #[test]
    fn reads_columns_in_asked_order_with_line_numbers() {
        let rows = read(b"label,text\npos,\"good, fine\"\nneg,bad\n", &["text", "label"]).unwrap();
        assert_eq!(rows[0].fields, vec!["good, fine", "pos"]);
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn crlf_and_cr_files_get_the_line_numbers_of_lf_files() {
        let lf = "text,label\n\"two\nlines\",a\nb,c\nd,e,f\n";
        let lines = |text: &str| read(text.as_bytes(), &["text", "label"]);
        for end in ["\n", "\r\n", "\r"] {
            let text = lf.replace('\n', end);
            let rows = lines(&text[..text.rfind("d,e").unwrap()]).unwrap();
            assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 4], "{text:?}");
            assert_eq!(rows[0].fields[0], format!("two{end}lines"));
            assert!(lines(&text).unwrap_err().to_string().starts_with("t.csv:5: row has 3 field(s)"), "{text:?}");
            let stray = format!("text{end}a{end}\"b{end}c{end}");
            let err = read(stray.as_bytes(), &["text"]).unwrap_err().to_string();
            assert!(err.starts_with("t.csv:3: a quoted field opens here"), "{err}");
        }
    }

    #[test]
    fn a_header_with_a_quote_left_open_is_one_line_of_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.csv");
        let rows: String = (0..100).map(|i| format!("sentence {i},pos\n")).collect();
        for end in ["\n", "\r"] {
            std::fs::write(&path, format!("text,\"label{end}{}", rows.replace('\n', end))).unwrap();
            let err = read_header(&path).unwrap_err().to_string();
            let expected =
                "h.csv:1: the header's quoted field \"label\" runs past the end of its line (unbalanced quote?)";
            assert!(err.ends_with(expected), "{err:?}");
        }
        std::fs::write(&path, format!("\n\ntext,\"label\n{rows}")).unwrap();
        let err = read_header(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "h.csv:3: the header's quoted field \"label\" runs past the end of its line (unbalanced quote?)"
            ),
            "{err}"
        );
        std::fs::write(&path, "\"text\",\"label\"\nhello,pos\n").unwrap();
        assert_eq!(read_header(&path).unwrap(), ["text", "label"]);
    }

    #[test]
    fn accepts_bom_and_crlf() {
        let rows = read(b"\xef\xbb\xbftext,label\r\nhello,a\r\n", &["text", "label"]).unwrap();
        assert_eq!(rows[0].fields, vec!["hello", "a"]);
    }

    #[test]
    fn missing_column_lists_the_header() {
        let err = read(b"sentence,label\nx,y\n", &["text"]).unwrap_err().to_string();
        assert_eq!(
            err,
            "t.csv:1: no column 'text' in the header (columns: sentence, label); the first line must name the columns"
        );
    }

    #[test]
    fn semicolons_get_a_delimiter_hint() {
        let err = read(b"text;label\nx;y\n", &["text"]).unwrap_err().to_string();
        assert!(err.contains("the header looks ';'-separated"), "{err}");
    }

    #[test]
    fn ragged_row_names_its_line() {
        let err = read(b"text,label\nok,a\ntoo,many,fields\n", &["text"]).unwrap_err().to_string();
        assert!(err.starts_with("t.csv:3: row has 3 field(s), the header has 2"), "{err}");
    }

    #[test]
    fn non_utf8_names_line_and_column() {
        let err = read(b"text,label\nok,a\nbad\xff,b\n", &["text"]).unwrap_err().to_string();
        assert!(err.starts_with("t.csv:3: column 'text' is not valid UTF-8 (save the file as UTF-8"), "{err}");
    }

    #[test]
    fn utf16_and_binary_files_are_named_as_such() {
        let utf16 = |bom: &[u8]| -> Vec<u8> {
            bom.iter().copied().chain("text,label\nhi,a\n".encode_utf16().flat_map(u16::to_le_bytes)).collect()
        };
        // Without a mark, and with characters beyond Latin-1 (curly quotes) among the ASCII.
        let curly: Vec<u8> = "text,label\n\u{201c}hi\u{201d},a\n".encode_utf16().flat_map(u16::to_be_bytes).collect();
        // Mostly Chinese, and Cyrillic (whose high bytes are 0x04): NULs only in the ASCII.
        let chinese: Vec<u8> =
            "text,label\n今天天气很好我们去公园散步吧,正面\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let cyrillic: Vec<u8> =
            "text,label\nПривет мир как дела,да\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
        for bytes in [utf16(&[0xFF, 0xFE]), utf16(&[]), curly, chinese, cyrillic] {
            let err = read_columns_from(&bytes[..], "u.csv", &["text"]).unwrap_err().to_string();
            assert!(err.starts_with("u.csv: the file is UTF-16 text"), "{err}");
        }
        let err = read_columns_from(&b"PK\x03\x04\x00\x00ab"[..], "z.csv", &["text"]).unwrap_err().to_string();
        assert!(err.contains("is a zip archive"), "{err}");
        let err = read_columns_from(&b"ab\x00\x00\x00cd"[..], "n.csv", &["text"]).unwrap_err().to_string();
        assert!(err.contains("holds NUL bytes"), "{err}");
        assert!(refuse_utf16_or_binary(b"text,label\n", "t.csv").is_ok());
        assert!(refuse_utf16_or_binary(b"", "t.csv").is_ok());
    }

    #[test]
    fn empty_file_is_named() {
        let err = read(b"", &["text"]).unwrap_err().to_string();
        assert!(err.contains("t.csv: the file is empty"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = read_columns_from(&bytes[..], "f.csv", &["text", "label"]);
        }

        #[test]
        fn rows_that_parse_have_every_asked_field(body in "[a-z,\"\n\r;\t \u{e9}]{0,200}") {
            let mut input = b"text,label\n".to_vec();
            input.extend(body.as_bytes());
            if let Ok(rows) = read_columns_from(&input[..], "f.csv", &["label", "text"]) {
                for row in rows {
                    proptest::prop_assert_eq!(row.fields.len(), 2);
                    proptest::prop_assert!(row.line >= 2);
                }
            }
        }
    }
}
