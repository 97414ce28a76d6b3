//! `galleryfs login` and `galleryfs logout`.

use super::{LoginArgs, LogoutArgs};
use crate::error::CliError;

pub fn login(_args: LoginArgs) -> Result<(), CliError> {
    Err(CliError::failure(
        "`login` is not built yet in this version of galleryfs",
    ))
}

pub fn logout(_args: LogoutArgs) -> Result<(), CliError> {
    Err(CliError::failure(
        "`logout` is not built yet in this version of galleryfs",
    ))
}
