//! The last lines of an export's card: an HTML comment (hidden where the card is shown) that
//! lists every entry the export wrote, each file with its size and hash, and hashes the card
//! above it. By it `export --force` tells the folder it wrote from one the user has worked in
//! since (a module added by sentence-transformers' `save`, weights saved over it by
//! `save_pretrained`, a card edited as docs/usage.md suggests), which replacing would lose.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

use crate::hash::{fnv1a, fnv1a_continue, FNV1A_START};

const SEAL: &str = "<!-- sentence-mtl export card ";
const CARD: &str = "README.md";

/// `card` with its seal, listing what the export wrote into `folder` (all but the card).
pub fn sealed(card: String, folder: &Path) -> Result<String> {
    Ok(seal_with(card, &listing(folder, None)?))
}

fn seal_with(card: String, listing: &str) -> String {
    let hash = fnv1a(format!("{card}{listing}").as_bytes());
    format!(
        "{card}\n{SEAL}{hash:016x}: export --force replaces this folder only while this card is unedited and the folder holds just these files, unchanged\n{listing}-->\n"
    )
}

/// What replacing the export in `folder` would lose: the card if edited, and each entry added
/// or changed since (an added folder by its own name). Empty when the folder is as written.
pub fn changes(folder: &Path) -> Result<Vec<String>> {
    let card = std::fs::read_to_string(folder.join(CARD))
        .with_context(|| format!("cannot read {}", folder.join(CARD).display()))?;
    let Some(at) = card.rfind(&format!("\n{SEAL}")) else {
        return Ok(vec![format!(
            "{CARD}, edited since it was exported (its last lines, which list the exported files, are gone)"
        )]);
    };
    let seal = &card[at + 1..];
    let Some(recorded) = seal.split_once('\n').and_then(|(_, rest)| rest.strip_suffix("-->\n")) else {
        // An earlier sentence-mtl's seal was one line, `... -->`, with nothing after it.
        let why = match seal.strip_suffix('\n').is_some_and(|line| !line.contains('\n') && line.ends_with("-->")) {
            true => "whose seal lists no exported files (an earlier sentence-mtl wrote it)",
            false => "edited since it was exported",
        };
        return Ok(vec![format!("{CARD}, {why}")]);
    };
    let mut changes = Vec::new();
    if seal_with(card[..at].to_string(), recorded) != card {
        changes.push(format!("{CARD}, edited since it was exported"));
    }
    let sizes: HashMap<&str, u64> = recorded
        .lines()
        .filter_map(|line| {
            let mut fields = line.rsplitn(3, ' ');
            let (_hash, size, path) = (fields.next()?, fields.next()?, fields.next()?);
            Some((path, size.parse().ok()?))
        })
        .collect();
    let recorded: std::collections::HashSet<&str> = recorded.lines().collect();
    let current = listing(folder, Some(&sizes))?;
    let new: Vec<&str> = current.lines().filter(|line| !recorded.contains(line)).collect();
    let is_new_folder = |path: &str| new.contains(&format!("{path}/").as_str());
    let mut named: Vec<String> = new
        .iter()
        .map(|line| path_of(line))
        .filter(|path| !Path::new(path).ancestors().skip(1).any(|a| is_new_folder(&a.to_string_lossy())))
        .map(String::from)
        .collect();
    named.dedup();
    changes.extend(named);
    Ok(changes)
}

/// The path a listing line is about.
fn path_of(line: &str) -> &str {
    match line.strip_suffix('/') {
        Some(folder) => folder,
        None => line.rsplitn(3, ' ').last().unwrap_or(line),
    }
}

/// One line per entry under `folder` but the card, sorted: `path/` for a folder, `path SIZE
/// HASH` for a file, `path@` for anything else (a link). Given the `recorded` size of each file,
/// a file that is not of its recorded size is listed as `path SIZE changed`, unread (an added
/// or rewritten model file can be gigabytes).
fn listing(folder: &Path, recorded: Option<&HashMap<&str, u64>>) -> Result<String> {
    let mut lines = Vec::new();
    list_into(folder, Path::new(""), recorded, &mut lines)?;
    lines.sort();
    Ok(lines.into_iter().map(|line| line + "\n").collect())
}

fn list_into(
    root: &Path,
    relative: &Path,
    recorded: Option<&HashMap<&str, u64>>,
    lines: &mut Vec<String>,
) -> Result<()> {
    let dir = root.join(relative);
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        if path == Path::new(CARD) {
            continue;
        }
        let name = path.to_string_lossy();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            lines.push(format!("{name}/"));
            list_into(root, &path, recorded, lines)?;
        } else if kind.is_file() {
            let size = entry.metadata()?.len();
            if recorded.is_some_and(|sizes| sizes.get(name.as_ref()) != Some(&size)) {
                lines.push(format!("{name} {size} changed"));
                continue;
            }
            let (size, hash) = size_and_hash(&root.join(&path))?;
            lines.push(format!("{name} {size} {hash:016x}"));
        } else {
            lines.push(format!("{name}@"));
        }
    }
    Ok(())
}

fn size_and_hash(path: &Path) -> Result<(u64, u64)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut size, mut hash) = (0u64, FNV1A_START);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            return Ok((size, hash));
        }
        size += read as u64;
        hash = fnv1a_continue(hash, &buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export_into(dir: &Path) -> String {
        std::fs::create_dir(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), "{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), "weights").unwrap();
        let card = sealed("# sentence-mtl export (hf)\n\nbody\n".into(), dir).unwrap();
        std::fs::write(dir.join(CARD), &card).unwrap();
        card
    }

    #[test]
    fn an_export_as_written_has_no_changes() {
        let dir = tempfile::tempdir().unwrap();
        export_into(dir.path());
        assert_eq!(changes(dir.path()).unwrap(), Vec::<String>::new());
        // A file the export wrote and the user removed loses nothing.
        std::fs::remove_file(dir.path().join("1_Pooling/config.json")).unwrap();
        assert_eq!(changes(dir.path()).unwrap(), Vec::<String>::new());
    }

    /// What sentence-transformers' `save` and transformers' `save_pretrained` do to a folder,
    /// and edits of the card, are each named.
    #[test]
    fn added_changed_and_edited_entries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let card = export_into(dir.path());
        std::fs::create_dir_all(dir.path().join("2_Dense/sub")).unwrap();
        std::fs::write(dir.path().join("2_Dense/model.safetensors"), "mine").unwrap();
        std::fs::write(dir.path().join("1_Pooling/notes.txt"), "mine").unwrap();
        std::fs::write(dir.path().join("model.safetensors"), "fine-tuned").unwrap();
        assert_eq!(changes(dir.path()).unwrap(), ["1_Pooling/notes.txt", "2_Dense", "model.safetensors"]);
        // Of the recorded size but other bytes (a size that differs is not even read).
        std::fs::write(dir.path().join("model.safetensors"), "weightz").unwrap();
        assert_eq!(changes(dir.path()).unwrap(), ["1_Pooling/notes.txt", "2_Dense", "model.safetensors"]);
        std::fs::write(dir.path().join("model.safetensors"), "weights").unwrap();
        std::fs::write(dir.path().join(CARD), card.replacen("body", "body\n\n## My notes", 1)).unwrap();
        assert_eq!(changes(dir.path()).unwrap()[0], "README.md, edited since it was exported");
        let unsealed = &card[..card.rfind(&format!("\n{SEAL}")).unwrap()];
        std::fs::write(dir.path().join(CARD), unsealed).unwrap();
        assert!(changes(dir.path()).unwrap()[0].contains("its last lines, which list the exported files, are gone"));
        std::fs::write(dir.path().join(CARD), format!("{card}\n## Notes after the seal\n")).unwrap();
        assert_eq!(changes(dir.path()).unwrap()[0], "README.md, edited since it was exported");
        std::fs::write(dir.path().join(CARD), card.trim_end()).unwrap();
        assert_eq!(changes(dir.path()).unwrap()[0], "README.md, edited since it was exported", "no last newline");
        std::fs::write(dir.path().join(CARD), format!("{unsealed}\n{SEAL}0123: old -->\n")).unwrap();
        assert!(changes(dir.path()).unwrap()[0].contains("an earlier sentence-mtl wrote it"));
        std::fs::write(dir.path().join(CARD), card.replace('\n', "\r\n")).unwrap();
        assert_eq!(
            changes(dir.path()).unwrap()[0],
            "README.md, edited since it was exported",
            "saved with CRLF line ends"
        );
    }
}
