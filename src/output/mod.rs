//! Writing results: to stdout, or atomically to `--output FILE`.

pub mod embeddings;
pub mod npy;
pub mod predictions;

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Result};

use crate::atomic_write;

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
            let stdout = std::io::stdout();
            if binary && stdout.is_terminal() {
                bail!("refusing to write binary output to a terminal; use --output FILE or redirect stdout");
            }
            let mut lock = std::io::BufWriter::new(stdout.lock());
            fill(&mut lock)?;
            match lock.flush() {
                // A closed pipe (`| head`) is the reader's choice, not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.map_err(Into::into),
            }
        }
    }
}
