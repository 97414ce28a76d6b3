//! `galleryfs emulator`: run the Graph emulator in the foreground, printing its URLs as one JSON line.

use super::EmulatorArgs;
use crate::error::CliError;

pub fn emulator(_args: EmulatorArgs) -> Result<(), CliError> {
    Err(CliError::failure(
        "`emulator` is not built yet in this version of galleryfs",
    ))
}
