//! The filesystem's boundary error: every failure that reaches a syscall is one of these, mapped to an errno
//! here and nowhere else ([`FsError::errno`]), and logged with what happened and what the user can do
//! ([`FsError::log`]).
//!
//! A read of an original that failed keeps its cause: [`FsError::Content`] holds the lower layer's error (the
//! content cache's, with the remote's below it) and the [`ContentFailure`] it amounts to, which chooses the errno:
//! `ESTALE` when the file changed on OneDrive under the open handle, `EIO` when the bytes are bad or cannot be had.

use thiserror::Error;

/// What a failed read of an original amounts to, for the errno and for what the user can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentFailure {
    /// The file changed on OneDrive since it was opened (its content version moved on): the open handle's
    /// version cannot be read any more; a new open reads the new one.
    Changed,
    /// The downloaded bytes were wrong (quickXorHash mismatch) or kept arriving short after retries: discarded,
    /// never served.
    Corrupt,
    /// OneDrive could not be reached (no connection, timeouts, server errors or throttling after retries).
    Unreachable,
    /// OneDrive refused the credentials: only a new sign-in helps.
    SignInNeeded,
    /// Anything else: the item is gone from OneDrive, the local cache failed, an unexpected answer.
    Other,
}

impl std::fmt::Display for ContentFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContentFailure::Changed => {
                "the file changed on OneDrive while it was open; close and reopen it to read the new version"
            }
            ContentFailure::Corrupt => {
                "the downloaded bytes were wrong or incomplete and were discarded (none was served); reading again \
                 downloads them anew"
            }
            ContentFailure::Unreachable => {
                "OneDrive cannot be reached; check the network (files already cached stay readable)"
            }
            ContentFailure::SignInNeeded => "OneDrive refused the sign-in; run `galleryfs login`",
            ContentFailure::Other => "the original cannot be read",
        })
    }
}

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
    /// An I/O failure described by `reason` (where no typed cause exists).
    #[error("I/O error: {reason}")]
    Io { reason: String },
    /// A read of an original failed: `failure` says what it amounts to, `source` is the typed cause.
    #[error("{failure} ({source})")]
    Content {
        failure: ContentFailure,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("interrupted")]
    Interrupted,
}

impl FsError {
    pub fn io(reason: impl Into<String>) -> Self {
        FsError::Io { reason: reason.into() }
    }

    /// A failed read of an original, keeping its cause.
    pub fn content(failure: ContentFailure, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        FsError::Content {
            failure,
            source: Box::new(source),
        }
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
            FsError::Content {
                failure: ContentFailure::Changed,
                ..
            } => libc::ESTALE,
            FsError::Content { .. } => libc::EIO,
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
            FsError::Content { failure, source } => {
                tracing::warn!(op, ino, errno = self.errno(), cause = %source, "{failure}")
            }
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
        let cause = || std::io::Error::other("x");
        assert_eq!(FsError::content(ContentFailure::Changed, cause()).errno(), libc::ESTALE);
        for failure in [
            ContentFailure::Corrupt,
            ContentFailure::Unreachable,
            ContentFailure::SignInNeeded,
            ContentFailure::Other,
        ] {
            assert_eq!(FsError::content(failure, cause()).errno(), libc::EIO, "{failure:?}");
        }
    }
}
