//! Finding the gallery folder at mount time (README.md, `folder=`; special folders:
//! <https://learn.microsoft.com/en-us/onedrive/developer/rest-api/api/drive_get_specialfolder>):
//! 1. the configured `--folder` / `folder=` path when given (from the drive root, leading `/` optional);
//! 2. else the child `Samsung Gallery` (case-insensitive) of the `photos` special folder, found by its special
//!    name and never by its display name, which is localized ("Pictures", "Imagens");
//! 3. else `/Samsung Gallery` at the drive root;
//! 4. else an error saying where it looked.
//!
//! The caller then records the folder's id in the store and works by id: renaming an ancestor later does not
//! break the mount.

use thiserror::Error;

use crate::remote::drive_api::{DriveApi, DriveError};
use crate::remote::models::DriveItem;

/// The folder's name under `Pictures` or the root.
pub const GALLERY_FOLDER_NAME: &str = "Samsung Gallery";

/// Where the gallery was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GalleryLocation {
    /// The configured path (normalized: leading `/`, no trailing `/`).
    Configured(String),
    /// Inside the `photos` special folder (whatever its display name).
    PhotosFolder,
    DriveRoot,
}

#[derive(Debug, Error)]
pub enum LocateError {
    #[error("no Samsung Gallery folder found in Pictures or at the root of OneDrive; pass --folder PATH")]
    NotFound,
    #[error("the folder {0} does not exist on OneDrive")]
    ConfiguredNotFound(String),
    #[error("{0} on OneDrive is a file, not a folder")]
    NotAFolder(String),
    #[error(transparent)]
    Drive(#[from] DriveError),
}

/// The gallery folder and where it was found.
#[derive(Clone, Debug)]
pub struct LocatedGallery {
    pub item: DriveItem,
    pub location: GalleryLocation,
}

/// `folder` as a path from the drive root: leading `/`, no trailing `/`, no empty segments (`/` for the root).
pub fn normalize_folder_path(folder: &str) -> String {
    let segments: Vec<&str> = folder.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segments.join("/"))
}

/// Finds the gallery folder (see the module note).
pub async fn locate_gallery(drive: &dyn DriveApi, folder: Option<&str>) -> Result<LocatedGallery, LocateError> {
    if let Some(folder) = folder.filter(|f| !f.trim().is_empty()) {
        let path = normalize_folder_path(folder);
        let item = match drive.item_by_path(&path).await {
            Ok(item) => item,
            Err(DriveError::NotFound(_)) => return Err(LocateError::ConfiguredNotFound(path)),
            Err(e) => return Err(e.into()),
        };
        if !item.is_folder() {
            return Err(LocateError::NotAFolder(path));
        }
        return Ok(LocatedGallery {
            item,
            location: GalleryLocation::Configured(path),
        });
    }
    if let Some(item) = in_photos_folder(drive).await? {
        return Ok(LocatedGallery {
            item,
            location: GalleryLocation::PhotosFolder,
        });
    }
    match drive.item_by_path(&format!("/{GALLERY_FOLDER_NAME}")).await {
        Ok(item) if item.is_folder() => Ok(LocatedGallery {
            item,
            location: GalleryLocation::DriveRoot,
        }),
        Ok(_) | Err(DriveError::NotFound(_)) => Err(LocateError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// `Samsung Gallery` inside the `photos` special folder, if both exist: one request, however many photos the
/// folder holds beside it.
async fn in_photos_folder(drive: &dyn DriveApi) -> Result<Option<DriveItem>, LocateError> {
    Ok(drive
        .special_folder_child("photos", GALLERY_FOLDER_NAME)
        .await?
        .filter(|c| c.is_folder() && !c.is_deleted()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_paths_normalize() {
        assert_eq!(
            normalize_folder_path("Pictures/Samsung Gallery"),
            "/Pictures/Samsung Gallery"
        );
        assert_eq!(
            normalize_folder_path("/Pictures//Samsung Gallery/"),
            "/Pictures/Samsung Gallery"
        );
        assert_eq!(normalize_folder_path("/"), "/");
    }
}
