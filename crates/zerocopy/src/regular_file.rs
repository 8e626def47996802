//! Opening a path as a regular file, with typed errors for everything else.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Result, ZeroCopyError};

/// Opens `path` read-only and checks that it is a regular file.
///
/// The file is opened with `O_NONBLOCK`, so a FIFO without a writer is
/// reported as [`ZeroCopyError::NotRegularFile`] instead of hanging the
/// caller; `O_NONBLOCK` has no effect on regular files.
///
/// ```
/// # let dir = std::env::temp_dir();
/// let err = kuai_zerocopy::open_regular(&dir).unwrap_err();
/// assert!(matches!(err, kuai_zerocopy::ZeroCopyError::IsDirectory { .. }));
/// ```
pub fn open_regular(path: impl AsRef<Path>) -> Result<File> {
    let path = path.as_ref();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ZeroCopyError::open(path, "open", e))?;
    check_regular(&file, path)?;
    Ok(file)
}

/// Checks that an open file is a regular file.
pub(crate) fn check_regular(file: &File, path: &Path) -> Result<u64> {
    let meta = file
        .metadata()
        .map_err(|e| ZeroCopyError::open(path, "fstat", e))?;
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(meta.len());
    }
    let path = path.to_path_buf();
    if ft.is_dir() {
        return Err(ZeroCopyError::IsDirectory { path });
    }
    let kind = if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "unknown"
    };
    Err(ZeroCopyError::NotRegularFile { path, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_dirs_are_refused() {
        assert!(matches!(
            open_regular("/dev/null"),
            Err(ZeroCopyError::NotRegularFile {
                kind: "character device",
                ..
            })
        ));
        assert!(matches!(
            open_regular("/"),
            Err(ZeroCopyError::IsDirectory { .. })
        ));
        assert!(matches!(
            open_regular("/definitely/not/here"),
            Err(ZeroCopyError::NotFound { .. })
        ));
    }
}
