//! Files and folders written all-or-nothing: built under a temporary name
//! beside the target (a dot name with `.tmp-` in it), fsynced, renamed into
//! place, and the parent folder fsynced so the rename itself survives a crash.
//! A crash leaves the old version or the new one, never half of one; the
//! temporaries it can leave behind are what [`sweep_temporaries`] removes.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The marker in every temporary name made here.
const TMP: &str = ".tmp-";

/// A failed file operation, naming the file or folder (and, when the disk
/// is full, how much space was left when it failed).
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}{note}", path.display())]
pub struct IoError {
    /// The path it failed on, which the message begins with.
    pub path: PathBuf,
    /// The OS error: its kind tells whether a retry may help ([`crate::fault::io_cause`]).
    pub source: std::io::Error,
    /// ` (3.1 MB free)` after a full disk's error; empty otherwise.
    note: String,
}

impl IoError {
    /// `source`, met at `path`.
    pub(crate) fn new(path: &Path, source: std::io::Error) -> Self {
        Self {
            note: crate::fault::disk_full_note(path, &source),
            path: path.to_path_buf(),
            source,
        }
    }

    /// ` (3.1 MB free)` when the disk was full, measured as it failed;
    /// empty otherwise.
    pub(crate) fn note(&self) -> &str {
        &self.note
    }
}

/// Attaches `path` to an I/O result.
fn at<T>(path: &Path, result: std::io::Result<T>) -> Result<T, IoError> {
    result.map_err(|source| IoError::new(path, source))
}

/// Writes the file `path` from what `fill` writes into a fresh temporary file
/// beside it, then syncs and renames it into place (replacing any old `path`).
pub(crate) fn write_file<E: From<IoError>>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), E> {
    let (parent, name) = parent_and_name(path);
    at(&parent, std::fs::create_dir_all(&parent))?;
    let prefix = format!(".{name}{TMP}");
    let mut tmp = at(
        &parent,
        tempfile::Builder::new()
            .prefix(&prefix)
            .permissions(Permissions::from_mode(0o644))
            .tempfile_in(&parent),
    )?;
    fill(tmp.as_file_mut())?;
    at(path, tmp.as_file_mut().flush())?;
    at(path, tmp.as_file().sync_all())?;
    at(path, tmp.persist(path).map_err(|e| e.error))?;
    at(&parent, sync_dir(&parent))?;
    Ok(())
}

/// Builds the folder `out` by calling `fill` on a fresh temporary folder beside
/// it, fsyncs everything, then swaps it into place (replacing any old `out`).
pub(crate) fn write_dir<E: From<IoError>>(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let (parent, name) = parent_and_name(out);
    at(&parent, std::fs::create_dir_all(&parent))?;
    let prefix = format!(".{name}{TMP}");
    let tmp = at(
        &parent,
        tempfile::Builder::new()
            .prefix(&prefix)
            .permissions(Permissions::from_mode(0o755))
            .tempdir_in(&parent),
    )?;
    fill(tmp.path())?;
    sync_tree(tmp.path())?;
    let old = parent.join(format!(".{name}{TMP}old-{}", std::process::id()));
    let replaced = out.exists();
    if replaced {
        at(out, std::fs::rename(out, &old))?;
    }
    let tmp = tmp.keep();
    at(out, std::fs::rename(&tmp, out))?;
    at(&parent, sync_dir(&parent))?;
    if replaced {
        at(&old, std::fs::remove_dir_all(&old))?;
    }
    Ok(())
}

/// Removes the temporaries a crash left in `dir` (not recursively) that have
/// not been touched for `min_age` (younger ones may belong to a write in
/// progress, of this process or another one sharing the folder); returns how
/// many.
pub(crate) fn sweep_temporaries(dir: &Path, min_age: Duration) -> std::io::Result<usize> {
    let mut removed = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.contains(TMP)) {
            continue;
        }
        let path = entry.path();
        let age = entry.metadata()?.modified()?.elapsed().unwrap_or_default();
        if age < min_age {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
        removed += 1;
    }
    Ok(removed)
}

fn parent_and_name(path: &Path) -> (PathBuf, String) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    (parent, name)
}

fn sync_tree(dir: &Path) -> Result<(), IoError> {
    for entry in at(dir, std::fs::read_dir(dir))? {
        let path = at(dir, entry)?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            at(&path, File::open(&path).and_then(|f| f.sync_all()))?;
        }
    }
    at(dir, sync_dir(dir))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders_replace_whole_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.jsonl");
        let put = |bytes: &'static [u8]| move |f: &mut File| at(Path::new("a"), f.write_all(bytes));
        write_file(&file, put(b"one")).unwrap();
        write_file(&file, put(b"two")).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        let failed = write_file(&file, |_| {
            at(&file, Err(std::io::Error::other("disk full")))
        });
        assert!(failed.is_err());
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"two",
            "a failed write changes nothing"
        );
        let out = dir.path().join("model");
        write_dir(&out, |tmp| at(tmp, std::fs::write(tmp.join("x"), "1"))).unwrap();
        write_dir(&out, |tmp| at(tmp, std::fs::write(tmp.join("y"), "2"))).unwrap();
        assert!(out.join("y").is_file() && !out.join("x").exists());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            (mode(&file), mode(&out)),
            (0o644, 0o755),
            "readable like their siblings"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        std::fs::write(dir.path().join(".ds-1.jsonl.tmp-abc"), "x").unwrap();
        std::fs::create_dir(dir.path().join(".model.tmp-def")).unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(sweep_temporaries(dir.path(), hour).unwrap(), 0, "too young");
        assert_eq!(sweep_temporaries(dir.path(), Duration::ZERO).unwrap(), 2);
        assert_eq!(sweep_temporaries(dir.path(), Duration::ZERO).unwrap(), 0);
    }
}
