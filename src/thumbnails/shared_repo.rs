//! The virtual shared thumbnail repository the mount answers in every directory:
//! `<dir>/.sh_thumbnails/{normal,large}/<md5>.png` (reachable by path, never listed by readdir).
//!
//! Spec rules (Thumbnail Managing Standard, "Shared Thumbnail Repositories", current text): a shared repository
//! uses the URI *relative to the repository's directory*, `./` + the file name with canonical URI escaping, both
//! for the MD5 in the thumbnail's file name and for `Thumb::URI`; see [`super::uri::shared_uri`].
//!
//! Ambiguity: spec 0.7/0.8 said to hash "only the filename part of the URI" (no `./`), and Thunar's
//! libxfce4util hashed exactly that until 4.19.4 (Debian 12 ships 4.18). So a request is matched against every
//! spelling in [`super::uri::shared_md5_candidates`]; the PNG served is the same, with `Thumb::URI` = `./<name>`
//! (whether Thunar checks it for shared thumbnails is not verified here; GLib does not read shared repositories).

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use super::render::{render_png, ThumbExtra};
use super::uri::{md5_of_name, shared_md5_candidates, shared_uri};
use super::{ThumbError, ThumbSize};

/// The shared repository's directory name inside every directory.
pub const SHARED_REPO_DIR: &str = ".sh_thumbnails";

/// A path that falls inside a directory's shared repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedRepoPath {
    /// `<dir>/.sh_thumbnails` itself.
    Root { dir: PathBuf },
    /// `<dir>/.sh_thumbnails/<size>` (for any size directory of the spec; the mount serves [`ThumbSize::SEEDED`]).
    SizeDir { dir: PathBuf, size: ThumbSize },
    /// `<dir>/.sh_thumbnails/<size>/<md5>.png`; `md5` is 32 lowercase hex digits.
    Thumbnail { dir: PathBuf, size: ThumbSize, md5: String },
}

impl SharedRepoPath {
    /// Recognises a path (absolute, or relative to the mount root) inside a shared repository. `dir` is the given
    /// path's prefix before `.sh_thumbnails` (empty for the mount root when the path is relative). Anything else —
    /// an ordinary path, `fail/`, a bad thumbnail name, a nested `.sh_thumbnails` — gives `None`.
    pub fn parse(path: &Path) -> Option<SharedRepoPath> {
        let components: Vec<Component> = path.components().collect();
        let at = components.iter().position(|c| c.as_os_str() == SHARED_REPO_DIR)?;
        let dir: PathBuf = components[..at].iter().collect();
        if !components[..at]
            .iter()
            .all(|c| matches!(c, Component::Normal(_) | Component::RootDir))
        {
            return None;
        }
        let rest = &components[at + 1..];
        let normal = |c: &Component| match c {
            Component::Normal(name) => Some(name.to_str()?.to_string()),
            _ => None,
        };
        match rest {
            [] => Some(SharedRepoPath::Root { dir }),
            [size] => Some(SharedRepoPath::SizeDir {
                dir,
                size: ThumbSize::from_dir_name(&normal(size)?)?,
            }),
            [size, file] => {
                let size = ThumbSize::from_dir_name(&normal(size)?)?;
                let md5 = parse_thumbnail_file_name(OsStr::new(&normal(file)?))?;
                Some(SharedRepoPath::Thumbnail { dir, size, md5 })
            }
            _ => None,
        }
    }
}

/// The MD5 in a thumbnail file name (`<32 lowercase hex>.png`), or `None` for any other name.
pub fn parse_thumbnail_file_name(name: &OsStr) -> Option<String> {
    let md5 = name.to_str()?.strip_suffix(".png")?;
    let is_md5 = md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    is_md5.then(|| md5.to_string())
}

/// Whether a directory entry name is the shared repository (for lookups that must succeed though readdir hides it).
pub fn is_shared_repo_name(name: &OsStr) -> bool {
    name == SHARED_REPO_DIR
}

/// Which of a directory's file `names` a shared-repository request for `md5` is about. A name whose current-spec
/// MD5 (`./<name>`) matches wins over one matched by an older spelling.
pub fn find_name_for_md5<'a, I>(names: I, md5: &str) -> Option<&'a OsStr>
where
    I: IntoIterator<Item = &'a OsStr>,
{
    let mut legacy_match = None;
    for name in names {
        if md5_of_name(name) == md5 {
            return Some(name);
        }
        if legacy_match.is_none() && shared_md5_candidates(name).iter().any(|candidate| candidate == md5) {
            legacy_match = Some(name);
        }
    }
    legacy_match
}

/// Renders the PNG served at `<dir>/.sh_thumbnails/<size>/…` for the file `file_name` of that directory:
/// as [`render_png`], with `Thumb::URI` = `./<escaped name>`.
pub fn render_shared_png(
    source: &[u8],
    size: ThumbSize,
    file_name: &OsStr,
    mtime_secs: i64,
    extra: &ThumbExtra,
) -> Result<Vec<u8>, ThumbError> {
    render_png(source, size, &shared_uri(file_name), mtime_secs, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "42dc3ce4d36a5be7fd011ec91196e357";

    #[test]
    fn parses_repository_paths() {
        let thumb = format!("/Camera/2024/.sh_thumbnails/large/{MD5}.png");
        assert_eq!(
            SharedRepoPath::parse(Path::new(&thumb)),
            Some(SharedRepoPath::Thumbnail {
                dir: "/Camera/2024".into(),
                size: ThumbSize::Large,
                md5: MD5.into()
            })
        );
        assert_eq!(
            SharedRepoPath::parse(Path::new(&format!(".sh_thumbnails/normal/{MD5}.png"))),
            Some(SharedRepoPath::Thumbnail {
                dir: "".into(),
                size: ThumbSize::Normal,
                md5: MD5.into()
            })
        );
        assert_eq!(
            SharedRepoPath::parse(Path::new("/a/.sh_thumbnails")),
            Some(SharedRepoPath::Root { dir: "/a".into() })
        );
        assert_eq!(
            SharedRepoPath::parse(Path::new("/a/.sh_thumbnails/normal/")),
            Some(SharedRepoPath::SizeDir {
                dir: "/a".into(),
                size: ThumbSize::Normal
            })
        );
    }

    #[test]
    fn rejects_everything_else() {
        for path in [
            "/a/b.jpg".to_string(),
            "/a/.sh_thumbnails/fail".to_string(),
            "/a/.sh_thumbnails/normal/readme.txt".to_string(),
            format!("/a/.sh_thumbnails/normal/{}.png", MD5.to_uppercase()),
            format!("/a/.sh_thumbnails/normal/{MD5}.jpg"),
            format!("/a/.sh_thumbnails/normal/{MD5}.png/x"),
            format!("/a/.sh_thumbnails/normal/.sh_thumbnails/normal/{MD5}.png"),
            format!("/a/../.sh_thumbnails/normal/{MD5}.png"),
        ] {
            assert_eq!(SharedRepoPath::parse(Path::new(&path)), None, "{path}");
        }
    }

    #[test]
    fn finds_the_name_behind_an_md5() {
        let names = [OsStr::new("x.jpg"), OsStr::new("a b.jpg"), OsStr::new("photo.jpg")];
        // echo -n './a%20b.jpg' | md5sum
        assert_eq!(find_name_for_md5(names, MD5), Some(OsStr::new("a b.jpg")));
        // echo -n 'photo.jpg' | md5sum  (pre-4.19.4 Thunar)
        assert_eq!(
            find_name_for_md5(names, "72acded3acd45e4c8b6ed680854b8ab1"),
            Some(OsStr::new("photo.jpg"))
        );
        assert_eq!(find_name_for_md5(names, "00000000000000000000000000000000"), None);
        assert!(is_shared_repo_name(OsStr::new(".sh_thumbnails")));
        assert!(!is_shared_repo_name(OsStr::new(".thumbnails")));
    }
}
