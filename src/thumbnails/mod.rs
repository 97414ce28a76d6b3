//! The freedesktop Thumbnail Managing Standard: file URIs escaped as GLib does, MD5 names, PNG thumbnails with
//! `Thumb::URI`/`Thumb::MTime`, the personal cache and the shared `.sh_thumbnails` repository. (Being built.)
