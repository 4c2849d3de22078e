//! Writing files and folders so that a crash at any moment leaves either the old complete
//! version or the new complete version, never a half-written one.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A sibling path for temporary content: same folder, so the final rename stays on one
/// filesystem and is atomic.
fn sibling_temp(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Checks, before the work that produces it, that a file can be written at `path`: a file
/// is made and removed where its temporary file will go (in the nearest folder that exists;
/// the write makes the rest). Streams (`/dev/stdout`) and existing files' folders included;
/// an existing file must be writable itself too.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() && !meta.is_dir() => return Ok(()),
        // As a shell redirection: a file its owner made read-only is not replaced.
        Ok(meta) if meta.is_file() => drop(std::fs::OpenOptions::new().write(true).open(path)?),
        _ => {}
    }
    let resolved = follow_symlinks(path);
    let folder = resolved.ancestors().skip(1).find(|dir| dir.is_dir()).unwrap_or(Path::new("."));
    let probe = folder.join(format!(".sentence-mtl-probe-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Writes a whole file atomically: temp file in the same folder, fsync, rename.
pub fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    write_file_with(path, |file| file.write_all(contents).map_err(Into::into))
}

/// Like [`write_file`], with the content produced by a writer callback.
///
/// A symlink is followed, so its target gets the new content and the link stays. A path
/// that is neither a file nor a folder (`/dev/stdout`, `/dev/null`, a named pipe) is written
/// in place: such a stream cannot be replaced, only written to.
pub fn write_file_with(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    let resolved = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => bail!("cannot write {}: it is a folder", path.display()),
        Ok(meta) if !meta.is_file() => return write_in_place(path, fill),
        Ok(_) => std::fs::canonicalize(path).with_context(|| format!("cannot write {}", path.display()))?,
        // Not there yet, or a symlink to a file not there yet.
        Err(_) => follow_symlinks(path),
    };
    let path = resolved.as_path();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create folder {}", parent.display()))?;
    }
    let temp = sibling_temp(path, "tmp");
    // A file replaced keeps its permissions (one the user made private stays private).
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        if let Some(permissions) = permissions {
            file.set_permissions(permissions)?;
        }
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

/// The folder a file written at `path` (through its symlinks) would go into, when that is not
/// an existing folder: writing would create it.
pub fn missing_folder(path: &Path) -> Option<PathBuf> {
    let folder = follow_symlinks(path).parent()?.to_path_buf();
    (!folder.as_os_str().is_empty() && !folder.is_dir()).then_some(folder)
}

/// The end of `path`'s symlink chain (a path not there yet), else `path` itself.
fn follow_symlinks(path: &Path) -> PathBuf {
    let mut current = path.to_path_buf();
    // Bounded, as the kernel bounds it, so that a symlink loop ends (and then fails to open).
    for _ in 0..40 {
        match std::fs::read_link(&current) {
            Ok(target) => current = current.parent().map_or(target.clone(), |parent| parent.join(&target)),
            Err(_) => break,
        }
    }
    current
}

fn write_in_place(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    let result = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(anyhow::Error::from)
        .and_then(|mut file| fill(&mut file));
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Replaces folder `target` with a complete new version built by `fill` in a temporary
/// sibling folder. The switch is one `renameat2(RENAME_EXCHANGE)` where the filesystem
/// supports it, so `target` is never missing; elsewhere the old folder is moved aside
/// first and only deleted once the new one is in place.
pub fn replace_dir(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    clear_dead_staging(target);
    let staging = sibling_temp(target, "new");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).ok();
    }
    // Named by the folder asked for: the staging sibling is an implementation detail.
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", target.display()))?;
    if let Err(e) = fill(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    sync_staged(&staging);
    // A folder the user made private stays private, as a replaced file does.
    if let Ok(meta) = std::fs::metadata(target) {
        let _ = std::fs::set_permissions(&staging, meta.permissions());
    }
    if target.exists() {
        if exchange(&staging, target).is_ok() {
            // `staging` now holds the previous version.
            std::fs::remove_dir_all(&staging).ok();
        } else {
            let old = sibling_temp(target, "old");
            if let Err(e) = std::fs::rename(target, &old) {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e).with_context(|| format!("cannot move aside {}", target.display()));
            }
            if let Err(e) = install(&staging, target) {
                // Put the previous version back rather than leave `target` missing.
                let _ = std::fs::rename(&old, target);
                return Err(e);
            }
            std::fs::remove_dir_all(&old).ok();
        }
    } else {
        install(&staging, target)?;
    }
    if let Some(parent) = target.parent() {
        sync_folder(parent);
    }
    Ok(())
}

/// Renames the complete `staging` folder to `target`; on failure removes it, so that no copy
/// of the model is left behind as a hidden folder.
fn install(staging: &Path, target: &Path) -> Result<()> {
    std::fs::rename(staging, target).map_err(|e| {
        let _ = std::fs::remove_dir_all(staging);
        anyhow::Error::from(e).context(format!("cannot install {}", target.display()))
    })
}

/// Deletes the staging folders of `replace_dir`s of `target` that a kill interrupted: exactly
/// the `.NAME.new-PID` it makes, of a PID no process has now, and the `.NAME.old-PID` it
/// moved aside once `target` is there again (while it is not, the old one may be all there
/// is of `target`). Any other folder, however named, is left alone.
pub fn clear_dead_staging(target: &Path) {
    clear_staging(target, |pid| !process_is_alive(pid));
}

/// As [`clear_dead_staging`], whatever process the PID names now (this one included): for a
/// folder this process holds a lock on, where no other process can be saving, and where a
/// PID from before a restart (PID 1 in a container) may well be alive again.
pub fn clear_staging_under_lock(target: &Path) {
    clear_staging(target, |_| true);
}

/// The staging folders of `target` whose PID `stale` says are left over: every `.new-PID`,
/// and `.old-PID` once `target` is there again.
fn clear_staging(target: &Path, stale: impl Fn(i32) -> bool) {
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let (new, old) = (format!(".{name}.new-"), format!(".{name}.old-"));
    let target_is_there = target.is_dir();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let pid = match (file.strip_prefix(&new), file.strip_prefix(&old)) {
            (Some(pid), _) => pid,
            (None, Some(pid)) if target_is_there => pid,
            _ => continue,
        };
        if staging_pid(pid).is_some_and(&stale) && entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The PID in a staging folder's name, when it is written as `std::process::id` writes one
/// and lies in the range Linux gives PIDs (so `.out.new-20240101`, a dated copy, is no PID).
fn staging_pid(text: &str) -> Option<i32> {
    let pid = text.parse::<i32>().ok().filter(|pid| *pid > 0 && pid.to_string() == text)?;
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|max| max.trim().parse::<i32>().ok())
        .unwrap_or(1 << 22);
    (pid <= pid_max).then_some(pid)
}

fn process_is_alive(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let answered = unsafe { libc::kill(pid, 0) } == 0;
    answered || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
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

/// Flushes the files a staging folder holds, its subfolders' (a sentence-transformers
/// export's `1_Pooling/`), and their entries, to disk; best effort. The staging folder is
/// ours, so every file in it is one we wrote.
fn sync_staged(staging: &Path) {
    if let Ok(entries) = std::fs::read_dir(staging) {
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_file() => {
                    if let Ok(file) = std::fs::File::open(entry.path()) {
                        let _ = file.sync_all();
                    }
                }
                Ok(kind) if kind.is_dir() => sync_staged(&entry.path()),
                _ => {}
            }
        }
    }
    sync_folder(staging);
}

/// Flushes a folder's entries (not its files: in a user's folder they are not ours, and a
/// named pipe among them would block the open) to disk; best effort.
fn sync_folder(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    /// The pid of a process that has ended.
    fn a_dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    }

    #[test]
    fn only_the_staging_folders_of_ended_processes_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let dead = a_dead_pid();
        let names = [
            format!(".out.new-{dead}"),
            format!(".out.new-{}", std::process::id()),
            format!(".out.old-{dead}"),
            format!(".outer.new-{dead}"),
            ".out.new-20240101".to_string(),
            format!(".out.new-0{dead}"),
            ".out.new-0".to_string(),
        ];
        for name in &names {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        clear_dead_staging(&target);
        let left: Vec<bool> = names.iter().map(|name| dir.path().join(name).exists()).collect();
        assert_eq!(left, [false, true, true, true, true, true, true], "{names:?}");
        assert!(!target.exists());
        // Once the target is back, the copy a killed swap moved aside is stale too.
        std::fs::create_dir(&target).unwrap();
        std::fs::create_dir(dir.path().join(format!(".out.old-{}", std::process::id()))).unwrap();
        clear_dead_staging(&target);
        assert!(!dir.path().join(format!(".out.old-{dead}")).exists());
        assert!(dir.path().join(format!(".out.old-{}", std::process::id())).exists(), "a live process's");
        assert!(dir.path().join(".outer.new-".to_string() + &dead.to_string()).exists());
        // Under a lock, a live PID's are stale too (it is no saver: the lock says so).
        clear_staging_under_lock(&target);
        assert!(!dir.path().join(format!(".out.old-{}", std::process::id())).exists());
        assert!(!dir.path().join(format!(".out.new-{}", std::process::id())).exists());
        let kept = [".outer.new-".to_string() + &dead.to_string(), ".out.new-20240101".into(), ".out.new-0".into()];
        assert!(kept.iter().all(|name| dir.path().join(name).exists()), "not staging names");
    }

    #[test]
    fn write_file_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_file(&path, b"one").unwrap();
        write_file(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A replaced file keeps its permissions.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_file(&path, b"three").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn write_file_writes_through_symlinks_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink("real.txt", &link).unwrap();
        write_file(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        let dangling = dir.path().join("dangling.txt");
        std::os::unix::fs::symlink("made.txt", &dangling).unwrap();
        write_file(&dangling, b"made").unwrap();
        assert_eq!(std::fs::read(dir.path().join("made.txt")).unwrap(), b"made");
        // A named pipe stands for /dev/stdout: written to, never replaced.
        let pipe = dir.path().join("pipe");
        let c_pipe = CString::new(pipe.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_pipe.as_ptr(), 0o600) }, 0);
        let reader = std::thread::spawn({
            let pipe = pipe.clone();
            move || std::fs::read(pipe).unwrap()
        });
        write_file(&pipe, b"streamed").unwrap();
        assert!(std::fs::metadata(&pipe).unwrap().file_type().is_fifo(), "the pipe stays a pipe");
        assert_eq!(reader.join().unwrap(), b"streamed");
        let err = write_file(dir.path(), b"x").unwrap_err().to_string();
        assert!(err.contains("it is a folder"), "{err}");
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
