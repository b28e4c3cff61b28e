//! Which failures may pass. A job attempt that fails on a full disk, a
//! database or Hub out of reach, or a device out of memory is worth trying
//! again later; one that fails on bad data or bad settings never is. The
//! classification is read off typed errors (`std::io::ErrorKind`, the OS
//! error number, sqlx's variants), never off their text, so a message that
//! changes wording cannot turn a passing fault into a failed job.

use std::path::Path;

/// What retrying a failed attempt can achieve (named in lower case in the
/// job's events: `permanent`, `transient`, `unknown`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// Retrying cannot help: the data, the settings or the base model are at
    /// fault. The job fails at once.
    Permanent,
    /// The cause is outside the job and may pass (a full disk, the database or
    /// the network away): retried with backoff, without using up an attempt.
    Transient,
    /// Neither is known (a tensor operation failed, the training thread
    /// died): retried with backoff, each retry counted against
    /// `max_attempts`.
    Unknown,
}

/// The cause of an I/O failure: transient unless the bytes themselves are at
/// fault (the OS said they are invalid or unsupported).
pub fn io_cause(e: &std::io::Error) -> Cause {
    use std::io::ErrorKind::*;
    match e.kind() {
        InvalidData | InvalidInput | Unsupported => Cause::Permanent,
        _ => Cause::Transient,
    }
}

/// Whether `e` says the disk (or the user's quota on it) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Bytes free to unprivileged writers on the filesystem holding `path` (or
/// its nearest existing ancestor); `None` when the OS cannot say.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let existing = path.ancestors().find(|p| p.exists())?;
    let c_path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `stat` is written by the call
    // before it is read (only when the call succeeds).
    let stat = unsafe {
        if libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// `bytes` for people: `3.1 MB`, `0 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What to say after an I/O error at `path`: ` (3.1 MB free)` when the disk
/// is full, nothing otherwise. Measured when the error happens, since the
/// space may be freed before anyone reads the message.
pub fn disk_full_note(path: &Path, e: &std::io::Error) -> String {
    match is_disk_full(e).then(|| free_bytes(path)).flatten() {
        Some(free) => format!(" ({} free)", human_bytes(free)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disks_are_transient_and_named() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(is_disk_full(&full));
        assert_eq!(io_cause(&full), Cause::Transient);
        let bad = std::io::Error::new(std::io::ErrorKind::InvalidData, "x");
        assert!(!is_disk_full(&bad));
        assert_eq!(io_cause(&bad), Cause::Permanent);
        let note = disk_full_note(Path::new("/definitely/not/here"), &full);
        assert!(note.ends_with(" free)"), "{note}");
        assert_eq!(disk_full_note(Path::new("/"), &bad), "");
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(3_100_000), "3.1 MB");
        assert_eq!(human_bytes(41_000_000_000), "41.0 GB");
    }
}
