//! The user's personal thumbnail cache, `$XDG_CACHE_HOME/thumbnails/` (default `~/.cache/thumbnails/`):
//! `{normal,large,x-large,xx-large}/<md5 of URI>.png` and the failure markers `fail/galleryfs-<version>/<md5>.png`.
//!
//! Writes follow the spec's "Thumbnail Saving": a uniquely named temporary file in the destination directory
//! (mode 0600), then `rename` over the final name, so readers never see a partial PNG. Directories are created
//! 0700; existing directories are left as the user has them. Nothing is fsynced (as GLib's thumbnail factory does
//! not): a crash of the daemon loses nothing (the page cache has it); a thumbnail lost or left empty by a power
//! failure is found invalid by the desktop, which then makes its own (reading the file). An fsync per file was a
//! fifth of the daemon's time in a pass over 10,000 items (two sizes, album and Timeline URIs: four files each).

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::render::{fail_marker_png, read_text_chunks, relabel_png};
use super::uri::thumbnail_name;
use super::{ThumbError, ThumbSize};

/// Name of our directory under `fail/`: the spec asks for the program name and its version.
pub fn fail_dir_name() -> String {
    format!("galleryfs-{}", env!("CARGO_PKG_VERSION"))
}

/// The personal thumbnail cache of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalCache {
    /// `<cache home>/thumbnails`.
    root: PathBuf,
}

impl PersonalCache {
    /// The cache under `cache_home` (the value of `$XDG_CACHE_HOME`, or `~/.cache`): `<cache_home>/thumbnails/`.
    pub fn new(cache_home: impl Into<PathBuf>) -> PersonalCache {
        PersonalCache {
            root: cache_home.into().join("thumbnails"),
        }
    }

    /// The cache of the current user: `$XDG_CACHE_HOME` when set to an absolute path (the XDG Base Directory spec
    /// ignores relative values), else `$HOME/.cache`.
    pub fn from_env() -> Result<PersonalCache, ThumbError> {
        let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self::cache_home_from(xdg, home)
            .map(PersonalCache::new)
            .ok_or(ThumbError::NoCacheHome)
    }

    fn cache_home_from(xdg_cache_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
        match xdg_cache_home {
            Some(dir) if dir.is_absolute() => Some(dir),
            _ => home.filter(|h| !h.as_os_str().is_empty()).map(|h| h.join(".cache")),
        }
    }

    /// `<cache home>/thumbnails`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the thumbnail of `uri` at `size` lives.
    pub fn path_for(&self, uri: &str, size: ThumbSize) -> PathBuf {
        self.root.join(size.dir_name()).join(thumbnail_name(uri))
    }

    /// Our failure directory, `thumbnails/fail/galleryfs-<version>/`.
    pub fn fail_dir(&self) -> PathBuf {
        self.root.join("fail").join(fail_dir_name())
    }

    /// Where the failure marker of `uri` lives.
    pub fn fail_marker_path(&self, uri: &str) -> PathBuf {
        self.fail_dir().join(thumbnail_name(uri))
    }

    /// Stores a finished thumbnail PNG (from [`super::render_png`]) for `uri` at `size`, atomically.
    /// Returns the final path.
    pub fn store(&self, uri: &str, size: ThumbSize, png: &[u8]) -> Result<PathBuf, ThumbError> {
        let path = self.path_for(uri, size);
        write_atomic(&path, png)?;
        Ok(path)
    }

    /// Whether a thumbnail for `uri` at `size` exists and is valid for a file last modified at `mtime_secs`: its
    /// `Thumb::URI` is `uri` and its `Thumb::MTime` is `mtime_secs` (the checks GLib makes).
    pub fn is_current(&self, uri: &str, size: ThumbSize, mtime_secs: i64) -> bool {
        labelled_with(&self.path_for(uri, size), uri, mtime_secs)
    }

    /// Records that no thumbnail can be made for `uri` (e.g. OneDrive has none): the spec's failure marker under
    /// `fail/galleryfs-<version>/`. Returns its path.
    pub fn store_fail_marker(&self, uri: &str, mtime_secs: i64) -> Result<PathBuf, ThumbError> {
        let path = self.fail_marker_path(uri);
        write_atomic(&path, &fail_marker_png(uri, mtime_secs)?)?;
        Ok(path)
    }

    /// Whether a failure marker for `uri` exists and matches `mtime_secs`.
    pub fn has_fail_marker(&self, uri: &str, mtime_secs: i64) -> bool {
        labelled_with(&self.fail_marker_path(uri), uri, mtime_secs)
    }

    /// Moves the thumbnails (all sizes) and failure marker of `old_uri` to `new_uri` after the file was renamed or
    /// moved, relabelled with `new_uri` and `mtime_secs`. Sizes without a thumbnail are skipped. Returns how many
    /// files were moved.
    pub fn rename(&self, old_uri: &str, new_uri: &str, mtime_secs: i64) -> Result<usize, ThumbError> {
        let mut moved = 0;
        for size in ThumbSize::ALL {
            let old_path = self.path_for(old_uri, size);
            let Some(png) = read_if_present(&old_path)? else {
                continue;
            };
            self.store(new_uri, size, &relabel_png(&png, new_uri, mtime_secs)?)?;
            moved += 1;
        }
        if read_if_present(&self.fail_marker_path(old_uri))?.is_some() {
            self.store_fail_marker(new_uri, mtime_secs)?;
            moved += 1;
        }
        if old_uri != new_uri {
            self.remove(old_uri)?;
        }
        Ok(moved)
    }

    /// Removes every thumbnail of `uri` (all sizes) and its failure marker. Missing files are not an error.
    pub fn remove(&self, uri: &str) -> Result<(), ThumbError> {
        let paths = ThumbSize::ALL
            .iter()
            .map(|size| self.path_for(uri, *size))
            .chain([self.fail_marker_path(uri)]);
        for path in paths {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(source) => return Err(ThumbError::Io { path, source }),
            }
        }
        Ok(())
    }
}

/// The bytes at `path`, `None` when there is no such file.
fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, ThumbError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ThumbError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether the PNG at `path` carries `Thumb::URI` = `uri` and `Thumb::MTime` = `mtime_secs`.
fn labelled_with(path: &Path, uri: &str, mtime_secs: i64) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let texts = read_text_chunks(&bytes);
    let value = |key: &str| texts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    value("Thumb::URI") == Some(uri) && value("Thumb::MTime") == Some(mtime_secs.to_string().as_str())
}

/// Writes `bytes` to `path` through a unique temporary file in the same directory (0600), then renames.
/// Missing directories are created 0700.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ThumbError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ThumbError::Io { path, source }
    };
    let dir = path.parent().expect("thumbnail paths have a directory");
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    let file_name = path
        .file_name()
        .expect("thumbnail paths have a file name")
        .to_string_lossy();
    let tmp = dir.join(format!(
        ".{file_name}.galleryfs-{}-{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        // The umask can only narrow 0600; make it exactly 0600 whatever it is.
        file.set_permissions(Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(ThumbError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_home_prefers_absolute_xdg_then_home() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            PersonalCache::cache_home_from(Some("/x/cache".into()), home.clone()),
            Some(PathBuf::from("/x/cache"))
        );
        assert_eq!(
            PersonalCache::cache_home_from(Some("".into()), home.clone()),
            Some("/home/u/.cache".into())
        );
        assert_eq!(
            PersonalCache::cache_home_from(Some("rel".into()), home.clone()),
            Some("/home/u/.cache".into())
        );
        assert_eq!(
            PersonalCache::cache_home_from(None, home),
            Some("/home/u/.cache".into())
        );
        assert_eq!(PersonalCache::cache_home_from(None, None), None);
    }

    #[test]
    fn paths_follow_the_spec_layout() {
        let cache = PersonalCache::new("/c");
        // echo -n 'file:///tmp/a%20b.jpg' | md5sum
        let uri = "file:///tmp/a%20b.jpg";
        assert_eq!(
            cache.path_for(uri, ThumbSize::Normal),
            Path::new("/c/thumbnails/normal/45f1b47640b52dc5428fd58ac89fec15.png")
        );
        assert_eq!(
            cache.path_for(uri, ThumbSize::Large),
            Path::new("/c/thumbnails/large/45f1b47640b52dc5428fd58ac89fec15.png")
        );
        assert_eq!(
            cache.fail_marker_path(uri),
            Path::new("/c/thumbnails/fail")
                .join(format!("galleryfs-{}", env!("CARGO_PKG_VERSION")))
                .join("45f1b47640b52dc5428fd58ac89fec15.png")
        );
    }
}
