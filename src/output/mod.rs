//! Writing results: to stdout, or atomically to `--output FILE`.

pub mod embeddings;
pub mod npy;
pub mod predictions;

use std::io::{ErrorKind, IsTerminal, Write};
use std::path::Path;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};

use crate::atomic_write;

/// Extensions that name an output format of some command (`.json` is read as JSONL).
const OUTPUT_EXTENSIONS: &[&str] = &["jsonl", "json", "csv", "npy"];

/// `--format` if given, else the format the `--output` file's extension names (`expected`
/// lists them), else JSONL. An extension that names no format is refused, not written as
/// JSONL under a name that says otherwise.
fn format_for<F: FromStr + PartialEq>(flag: Option<F>, output: Option<&Path>, jsonl: F, expected: &str) -> Result<F> {
    let extension = output.and_then(|path| Some((path, path.extension()?.to_string_lossy())));
    if let Some(flag) = flag {
        // `--format csv -o x.npy` would write CSV text into a file every reader takes for .npy.
        let claims_another = |e: &str| {
            let e = e.to_ascii_lowercase();
            OUTPUT_EXTENSIONS.contains(&e.as_str()) && !e.parse::<F>().is_ok_and(|f| f == flag)
        };
        if let Some((path, extension)) = extension.filter(|(_, e)| claims_another(e)) {
            bail!(
                "--format names another format than --output {}'s .{extension}; give one of them, or make them agree",
                path.display()
            );
        }
        return Ok(flag);
    }
    let Some((path, extension)) = extension else {
        return Ok(jsonl);
    };
    extension.to_ascii_lowercase().parse().map_err(|_| {
        anyhow!(
            "--output {}: .{extension} is not an output format (expected {expected}); end the name with one, or pass --format",
            path.display()
        )
    })
}

/// Refuses an `--output` that cannot be written as a file before any work is done (a folder),
/// or whose writing would replace the input it reads (`--input`, or the file on stdin when
/// `reads_stdin`: `-o FILE < FILE`), a file of the `--model` folder it reads (`--format npy
/// -o MODEL/model.safetensors` after a tab-completion), or anything in a checkpoint, which
/// training also replaces whole when it saves.
pub fn check_output_path(path: Option<&Path>, input: Option<&Path>, reads_stdin: bool, model: &str) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    if path.is_dir() {
        bail!("--output {} is a folder; name a file", path.display());
    }
    if std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).ends_with(b"/") {
        bail!("--output {} ends in '/', which names a folder; name a file", path.display());
    }
    if input.is_some_and(|input| same_file(path, input)) {
        bail!("--output {} is the --input file, which writing would replace; name another file", path.display());
    }
    // /dev/stdin leads to the file a shell redirected there; only a regular file can be
    // replaced (stdin and stdout may be one socket, or one terminal, which `-o /dev/stdout`
    // names rightly).
    let stdin = Path::new("/dev/stdin");
    if reads_stdin && stdin.is_file() && same_file(path, stdin) {
        bail!("--output {} is the file on stdin, which writing would replace; name another file", path.display());
    }
    crate::checkpoint::refuse_output_inside(path, "--output")?;
    crate::train::run_dir::RunDir::refuse_output_over_own_file(path, "--output")?;
    // As a shell redirection or numpy.save: a mistyped folder is an error, not a new folder.
    if let Some(folder) = atomic_write::missing_folder(path) {
        let what = if folder.exists() { "is not a folder" } else { "does not exist" };
        bail!("--output {}: {} {what}; name a file in an existing folder", path.display(), folder.display());
    }
    // Found now, not after encoding a large input.
    atomic_write::check_writable(path).map_err(|e| anyhow!("--output {} cannot be written: {e}", path.display()))?;
    let written = crate::checkpoint::resolved(path);
    // An earlier output there is the user's to replace; any other file is the model's.
    let model = Path::new(model);
    if path.is_file()
        && !holds_an_earlier_output(path)
        && model.is_dir()
        && written.starts_with(crate::checkpoint::resolved(model))
    {
        bail!(
            "--output {} would replace a file of the --model folder {}; write it elsewhere",
            path.display(),
            model.display()
        );
    }
    Ok(())
}

/// Whether the file at `path` is empty or starts as `encode` and `predict` write their
/// outputs (a model's `config.json` is JSON too, so the extension alone cannot tell).
fn holds_an_earlier_output(path: &Path) -> bool {
    let mut start = [0u8; 24];
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    let Ok(read) = std::io::Read::read(&mut file, &mut start) else { return false };
    let start = &start[..read];
    let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    start.is_empty()
        || match extension.as_str() {
            "npy" => start.starts_with(b"\x93NUMPY"),
            // encode's header, and predict's (a data file may begin `text,label` too).
            "csv" => start.starts_with(b"text,dim_0") || start.starts_with(b"text,label,probability"),
            "jsonl" | "json" => start.starts_with(b"{\"text\":"),
            _ => false,
        }
}

/// Whether two paths name one existing file: by device and inode, so through links, `..`,
/// hard links, and names that differ only in case on a case-insensitive disk (macOS).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Refuses a folder flag's `path` that is a symbolic link to nothing, before any work: writing
/// there would fail only at the end ("File exists", "Not a directory").
pub fn refuse_dangling_link(path: &Path, flag: &str) -> Result<()> {
    if let Some(target) = crate::model::source::dangling_link(path) {
        bail!(
            "{flag} {} is a link to {}, which does not exist; create that folder, or name another",
            path.display(),
            target.display()
        );
    }
    Ok(())
}

/// Prints `text` on stdout: a failed write (a full disk) is an error naming stdout, not a
/// panic as `print!` makes it.
pub fn print_stdout(text: &str) -> Result<()> {
    write_output(None, false, |out| Ok(out.write_all(text.as_bytes())?))
}

/// Refuses binary output to stdout (`path` None) when it is a terminal; commands call it
/// before their work too, so that the refusal does not come after it.
pub fn refuse_binary_on_terminal(path: Option<&Path>, binary: bool) -> Result<()> {
    let terminal = match path {
        None => std::io::stdout().is_terminal(),
        // `-o /dev/stdout` or `-o /dev/tty`: a character device that is a terminal.
        Some(path) => {
            use std::os::unix::fs::FileTypeExt;
            std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
                && std::fs::OpenOptions::new().write(true).open(path).is_ok_and(|f| f.is_terminal())
        }
    };
    if binary && terminal {
        bail!("refusing to write binary output to a terminal; use --output FILE or redirect stdout");
    }
    Ok(())
}

/// Sends bytes produced by `fill` to `path` (atomically) or to stdout when `path` is None.
/// Binary output is refused on a terminal.
pub fn write_output(path: Option<&Path>, binary: bool, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    match path {
        Some(path) => atomic_write::write_file_with(path, |file| {
            let mut writer = std::io::BufWriter::new(file);
            fill(&mut writer)?;
            writer.flush()?;
            Ok(())
        }),
        None => {
            refuse_binary_on_terminal(path, binary)?;
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            let written = fill(&mut lock).and_then(|()| Ok(lock.flush()?));
            match written {
                // A closed pipe (`| head`) is the reader's choice, not an error.
                Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == ErrorKind::BrokenPipe) => {
                    Ok(())
                }
                other => other.context("cannot write to stdout"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-o /dev/stdout` on a terminal is refused as stdout itself is; `/dev/null` is a
    /// character device that is no terminal.
    #[test]
    fn binary_output_to_a_terminal_named_as_a_file_is_refused() {
        let (mut leader, mut follower) = (0, 0);
        // SAFETY: openpty writes two descriptors into the given integers; the name and
        // settings pointers may be null.
        let opened = unsafe {
            libc::openpty(&mut leader, &mut follower, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
        };
        assert_eq!(opened, 0, "openpty failed");
        let terminal = std::fs::read_link(format!("/proc/self/fd/{follower}")).unwrap();
        let err = refuse_binary_on_terminal(Some(&terminal), true).unwrap_err().to_string();
        assert!(err.starts_with("refusing to write binary output to a terminal"), "{err}");
        assert!(refuse_binary_on_terminal(Some(&terminal), false).is_ok(), "text may go to a terminal");
        assert!(refuse_binary_on_terminal(Some(Path::new("/dev/null")), true).is_ok());
        // SAFETY: both descriptors were opened above and are closed once.
        unsafe {
            libc::close(follower);
            libc::close(leader);
        }
    }

    #[test]
    fn only_files_that_start_as_an_output_count_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], bool); 9] = [
            ("config.json", b"{\"architectures\": [\"BertModel\"]}", false),
            ("tokenizer.json", b"{\"version\":\"1.0\"}", false),
            ("earlier.json", b"{\"text\":\"hi\",\"embedding\":[0.1]}\n", true),
            ("earlier.jsonl", b"{\"text\":\"hi\",\"label\":\"a\"}\n", true),
            ("earlier.csv", b"text,dim_0\nhi,0.1\n", true),
            ("train.csv", b"text,label\nhi,a\n", false),
            ("labels.csv", b"label,text\na,hi\n", false),
            ("earlier.npy", b"\x93NUMPY\x01\x00v\x00", true),
            ("empty.json", b"", true),
        ];
        for (name, content, expected) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            assert_eq!(holds_an_earlier_output(&path), expected, "{name}");
        }
    }
}
