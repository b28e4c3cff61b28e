//! SQLite serves one node: an exclusive `flock` on a file next to the
//! database (`tuneserve.db.lock`) keeps a second node off it, in this process
//! or another, with an error that says who holds it and what to do instead.
//!
//! Why not let two nodes share the file: SQLite's locks do not hold on most
//! network filesystems, and nothing would tell one node's idle workers about
//! another's jobs. The lock goes with the process (a killed node frees it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;

/// The held lock; released on [`NodeLock::release`] or when dropped.
#[derive(Debug)]
pub(super) struct NodeLock {
    file: Mutex<Option<File>>,
}

impl NodeLock {
    /// Takes the lock of the SQLite database at `database`, or says who holds it.
    pub(super) fn acquire(database: &Path) -> Result<Self, StoreError> {
        let path = lock_path(database);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(&path, e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(StoreError::Open(format!(
                "{} is in use by another tuneserve node ({}); SQLite serves one node. \
                 Stop that node, or run several nodes on PostgreSQL \
                 (--database-url postgres://…; README: Beyond one machine)",
                database.display(),
                holder.trim()
            )));
        }
        let holder = format!("pid {} on {}", std::process::id(), crate::host::host_name());
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()));
        Ok(Self {
            file: Mutex::new(Some(file)),
        })
    }

    /// Lets another node open the database (closing the file drops the lock).
    pub(super) fn release(&self) {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.take();
    }
}

/// `tuneserve.db` → `tuneserve.db.lock`.
fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Open(format!("{}: {e}", path.display()))
}
