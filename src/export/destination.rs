//! Where an export may be written: a new or empty folder, or with `--force` an earlier export
//! holding nothing else; never the checkpoint being exported, nor the folder the user works in.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::model_card::is_export;
use super::seal;
use crate::model::loaded::LoadedModel;

/// The folder to write for `--out`, canonical where it exists so that replacing it swaps that
/// folder. A non-empty `out` is refused unless `force`, and even then unless it is an earlier
/// export (not a run or the user's files).
pub(super) fn checked(out: &Path, loaded: &LoadedModel, force: bool) -> Result<PathBuf> {
    crate::checkpoint::refuse_output_inside(out, "--out")?;
    crate::output::refuse_dangling_link(out, "--out")?;
    if !out.exists() {
        return Ok(out.to_path_buf());
    }
    if !out.is_dir() {
        bail!("--out {} exists and is not a folder", out.display());
    }
    let target = out.canonicalize().with_context(|| format!("cannot read --out {}", out.display()))?;
    refuse_replacing_what_is_in_use(out, &target, loaded)?;
    if is_mount_point(&target) {
        bail!(
            "--out {} is a mount point, which cannot be swapped for the new export; export into a folder inside it",
            out.display()
        );
    }
    let non_empty = std::fs::read_dir(out)?.next().is_some();
    if !non_empty {
        return Ok(target);
    }
    if !force {
        bail!("--out {} exists and is not empty; pass --force to replace it", out.display());
    }
    if !is_export(out) {
        bail!(
            "--out {} holds files that are not a sentence-mtl export; --force replaces only an earlier export, so choose an empty or new folder",
            out.display()
        );
    }
    let foreign = seal::changes(out)?;
    if !foreign.is_empty() {
        bail!(
            "--out {} is an earlier export with files added or changed ({}), which replacing it would lose; export into another folder, or delete this one once they are safe",
            out.display(),
            foreign.join(", ")
        );
    }
    Ok(target)
}

/// Whether the folder `target` (canonical) is a mount point (a container's volume, a bind
/// mount): the export, written beside it and swapped in, could not replace it. Another file
/// system than its parent's says so; a bind mount of the same one is found in the mount table.
fn is_mount_point(target: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let device = |path: &Path| std::fs::metadata(path).map(|m| m.dev()).ok();
    if target.parent().is_some_and(|parent| device(parent) != device(target)) {
        return true;
    }
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table.lines().filter_map(|line| line.split(' ').nth(4)).any(|point| Path::new(&unescape(point)) == target)
}

/// A mount table's path with its `\040`-style escapes (space, tab, newline, backslash) undone.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).and_then(|octal| u8::from_str_radix(octal, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out + rest
}

/// Replacing `out` (canonical: `target`) must not delete the checkpoint being exported, nor
/// the folder the user works in.
fn refuse_replacing_what_is_in_use(out: &Path, target: &Path, loaded: &LoadedModel) -> Result<()> {
    if loaded.dir.canonicalize().is_ok_and(|model| model.starts_with(target)) {
        bail!(
            "--out {} holds the model being exported ({}); export into another folder",
            out.display(),
            loaded.dir.display()
        );
    }
    if std::env::current_dir().is_ok_and(|cwd| cwd.starts_with(target)) {
        bail!("--out {} is the current folder or holds it; export into a folder of its own", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn mount_table_escapes_are_undone() {
        assert_eq!(super::unescape(r"/mnt/my\040volume"), "/mnt/my volume");
        assert_eq!(super::unescape(r"/plain"), "/plain");
        assert_eq!(super::unescape(r"/odd\x"), r"/odd\x");
    }
}
