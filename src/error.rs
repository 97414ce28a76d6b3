//! The command line's errors: [`CliError`], the one line a command prints before exiting non-zero, and the
//! process exit codes of the contract ([`exit`]). The filesystem's errors and their errnos are in `fs/error.rs`.

use thiserror::Error;

/// Process exit codes of the contract.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
}

/// An error the command line reports as one line before exiting non-zero.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: exit::FAILURE,
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: exit::USAGE,
        }
    }
}
