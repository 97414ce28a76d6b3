//! The filesystem's boundary error: every failure that reaches a syscall is one of these, mapped to an errno
//! here and nowhere else, and logged with what happened and what the user can do.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("already exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("OneDrive does not accept this name: {rule}")]
    InvalidName { rule: String },
    #[error("name longer than 255 bytes")]
    NameTooLong,
    #[error("OneDrive cannot store {what}")]
    NotPermitted { what: &'static str },
    #[error("no such attribute")]
    NoAttribute,
    #[error("attribute value buffer too small")]
    Range,
    #[error("read-only mount")]
    ReadOnly,
    #[error("bad file handle")]
    BadHandle,
    #[error("operation not supported: {0}")]
    Unsupported(&'static str),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Over quota: writes refused until space is freed on OneDrive.
    #[error("OneDrive is full ({reason}); free space on OneDrive or buy more storage")]
    NoSpace { reason: String },
    /// The content could not be fetched or verified; `reason` says why (offline, hash mismatch, …).
    #[error("I/O error: {reason}")]
    Io { reason: String },
    #[error("interrupted")]
    Interrupted,
}

impl FsError {
    pub fn io(reason: impl Into<String>) -> Self {
        FsError::Io { reason: reason.into() }
    }

    /// The errno a syscall returns for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::InvalidName { .. } => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::NotPermitted { .. } => libc::EPERM,
            FsError::NoAttribute => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::ReadOnly => libc::EROFS,
            FsError::BadHandle => libc::EBADF,
            FsError::Unsupported(_) => libc::ENOTSUP,
            FsError::InvalidArgument(_) => libc::EINVAL,
            FsError::NoSpace { .. } => libc::ENOSPC,
            FsError::Io { .. } => libc::EIO,
            FsError::Interrupted => libc::EINTR,
        }
    }

    /// Expected outcomes (a missing name, a missing xattr) are not worth a log line; failures the user must know
    /// about are.
    pub fn log(&self, op: &str, ino: u64) {
        match self {
            FsError::NotFound | FsError::NoAttribute | FsError::Range | FsError::Exists | FsError::Interrupted => {
                tracing::trace!(op, ino, error = %self, "fs op answered");
            }
            FsError::Io { .. } | FsError::NoSpace { .. } => tracing::warn!(op, ino, error = %self, "fs op failed"),
            _ => tracing::info!(op, ino, error = %self, "fs op refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_errnos() {
        assert_eq!(FsError::InvalidName { rule: "x".into() }.errno(), libc::EINVAL);
        assert_eq!(FsError::NameTooLong.errno(), libc::ENAMETOOLONG);
        assert_eq!(FsError::NotPermitted { what: "symlinks" }.errno(), libc::EPERM);
        assert_eq!(FsError::io("offline").errno(), libc::EIO);
        assert_eq!(FsError::NoSpace { reason: "quota".into() }.errno(), libc::ENOSPC);
    }
}
