//! Writing files and folders so that a crash at any moment leaves either the old complete
//! version or the new complete version, never a half-written one.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A sibling path for temporary content: same folder, so the final rename stays on one
/// filesystem and is atomic.
fn sibling_temp(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Writes a whole file atomically: temp file in the same folder, fsync, rename.
pub fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    write_file_with(path, |file| file.write_all(contents).map_err(Into::into))
}

/// Like [`write_file`], with the content produced by a writer callback.
pub fn write_file_with(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create folder {}", parent.display()))?;
    }
    let temp = sibling_temp(path, "tmp");
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        fill(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        Ok::<(), anyhow::Error>(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Replaces folder `target` with a complete new version built by `fill` in a temporary
/// sibling folder. The switch is one `renameat2(RENAME_EXCHANGE)` where the filesystem
/// supports it, so `target` is never missing; elsewhere the old folder is moved aside
/// first and only deleted once the new one is in place.
pub fn replace_dir(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let staging = sibling_temp(target, "new");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).ok();
    }
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    if let Err(e) = fill(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    sync_dir(&staging);
    if target.exists() {
        if exchange(&staging, target).is_ok() {
            // `staging` now holds the previous version.
            std::fs::remove_dir_all(&staging).ok();
        } else {
            let old = sibling_temp(target, "old");
            std::fs::rename(target, &old).with_context(|| format!("cannot move aside {}", target.display()))?;
            std::fs::rename(&staging, target).with_context(|| format!("cannot install {}", target.display()))?;
            std::fs::remove_dir_all(&old).ok();
        }
    } else {
        std::fs::rename(&staging, target).with_context(|| format!("cannot install {}", target.display()))?;
    }
    if let Some(parent) = target.parent() {
        sync_dir(parent);
    }
    Ok(())
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both paths are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Flushes a folder's entries (and the files in it) to disk; best effort.
fn sync_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Ok(file) = std::fs::File::open(entry.path()) {
                let _ = file.sync_all();
            }
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_file(&path, b"one").unwrap();
        write_file(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_fill_keeps_the_previous_folder() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("best");
        replace_dir(&target, |d| Ok(std::fs::write(d.join("a"), "v1")?)).unwrap();
        let err = replace_dir(&target, |d| {
            std::fs::write(d.join("a"), "half")?;
            anyhow::bail!("disk full")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "v1");
        replace_dir(&target, |d| Ok(std::fs::write(d.join("a"), "v2")?)).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "v2");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no staging folders left");
    }
}
