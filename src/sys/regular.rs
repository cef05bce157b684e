//! Files named by settings (certificates, token files, the Wings and agent config files, the NVML
//! library), opened carefully: only a regular file of a sane size is accepted.
//!
//! Why: a setting pointing at `/dev/zero` made `std::fs::read` grow the agent to gigabytes in
//! seconds, and a FIFO makes a plain `open` block until a writer appears. So the file is opened
//! with `O_NONBLOCK` (a FIFO open returns at once), checked with `fstat` on that same descriptor
//! (no race with a rename between check and read), and read through a byte budget, so a file that
//! grows while it is read, or a kernel file that reports size 0, still cannot exceed it.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a named file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegularFileError {
    #[error("cannot open `{path}`: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("`{path}` is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RegularFileError {
    /// The file does not exist (callers for which a missing file is normal check this).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, RegularFileError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

/// Opens `path` (following symlinks) and checks that it is a regular file of at most `max` bytes.
pub(crate) fn open_regular(path: &Path, max: u64) -> Result<File, RegularFileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| RegularFileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| RegularFileError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(RegularFileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind(meta.file_type()),
        });
    }
    if meta.len() > max {
        return Err(RegularFileError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(file)
}

/// Reads a regular file of at most `max` bytes whole.
pub(crate) fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, RegularFileError> {
    let file = open_regular(path, max)?;
    let mut out = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|source| RegularFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > max {
        return Err(RegularFileError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_of_bounded_size() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"hello");
        assert!(matches!(
            read_regular(&f, 4),
            Err(RegularFileError::TooLarge { .. })
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 1 << 20),
            Err(RegularFileError::NotRegular {
                kind: "a character device",
                ..
            })
        ));
        assert!(matches!(
            read_regular(dir.path(), 1 << 20),
            Err(RegularFileError::NotRegular { .. })
        ));
        assert!(
            read_regular(&dir.path().join("missing"), 1)
                .unwrap_err()
                .is_not_found()
        );
        // A FIFO without a writer: refused at once instead of blocking in open(2).
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_regular(&fifo, 10),
            Err(RegularFileError::NotRegular { kind: "a FIFO", .. })
        ));
        // A kernel file that says size 0 but has content is still cut at the budget.
        assert!(matches!(
            read_regular(Path::new("/proc/self/maps"), 16),
            Err(RegularFileError::TooLarge { .. })
        ));
    }
}
