//! A reference-model property test in the style of mountpoint-s3's: random sequences of local operations
//! (write, partial write, truncate, unlink, rename, mkdir, rmdir), remote changes (edit, delete, add) made by
//! "another device" on the mock OneDrive, delta rounds, and outbox replays. After every step the filesystem's
//! view must equal the model's; after every replay OneDrive's tree must equal it too (nothing lost, nothing
//! duplicated, ids kept across renames).

use crate::edits_support;

use edits_support::{quick_config, read_whole, Synced};
use galleryfs::fs::{Caller, FileKind, FsCore, OpenMode, SetAttr, ROOT_INO};
use galleryfs::remote::drive_api::DriveApi;
use galleryfs::remote::mock_drive::MockDrive;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

const C: Caller = Caller { uid: 0, gid: 0, pid: 0 };
const NAMES: [&str; 3] = ["a.jpg", "b.jpg", "c.jpg"];
const DIR: &str = "d";

#[derive(Clone, Debug)]
enum Op {
    Write { file: usize, data: Vec<u8> },
    PWrite { file: usize, offset: u64, data: Vec<u8> },
    Truncate { file: usize, size: u64 },
    Unlink { file: usize },
    Rename { from: usize, to: usize },
    Mkdir,
    Rmdir,
    RemoteEdit { pick: usize, data: Vec<u8> },
    RemoteDelete { pick: usize },
    RemoteAdd { data: Vec<u8> },
    Sync,
    Replay,
}

/// `file` 0..6: the three names in the root, then in `d/`.
fn path_of(file: usize) -> String {
    let name = NAMES[file % 3];
    if file < 3 {
        name.to_string()
    } else {
        format!("{DIR}/{name}")
    }
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..12)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6usize, data()).prop_map(|(file, data)| Op::Write { file, data }),
        2 => (0..6usize, 0..8u64, data()).prop_map(|(file, offset, data)| Op::PWrite { file, offset, data }),
        1 => (0..6usize, 0..10u64).prop_map(|(file, size)| Op::Truncate { file, size }),
        2 => (0..6usize).prop_map(|file| Op::Unlink { file }),
        2 => (0..6usize, 0..6usize).prop_map(|(from, to)| Op::Rename { from, to }),
        2 => Just(Op::Mkdir),
        1 => Just(Op::Rmdir),
        2 => (0..8usize, data()).prop_map(|(pick, data)| Op::RemoteEdit { pick, data }),
        1 => (0..8usize).prop_map(|pick| Op::RemoteDelete { pick }),
        1 => data().prop_map(|data| Op::RemoteAdd { data }),
        2 => Just(Op::Sync),
        3 => Just(Op::Replay),
    ]
}

#[derive(Default, Debug)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    dir: bool,
    /// Paths with local changes not yet replayed: remote changes leave them alone (no conflicts here).
    touched: BTreeSet<String>,
    remote_adds: usize,
}

impl Model {
    fn parent_exists(&self, path: &str) -> bool {
        !path.contains('/') || self.dir
    }
    fn dir_empty(&self) -> bool {
        !self.files.keys().any(|p| p.starts_with("d/"))
    }
    /// Files OneDrive and the store agree on (not touched since the last replay).
    fn stable(&self) -> Vec<String> {
        self.files
            .keys()
            .filter(|p| !self.touched.contains(*p))
            .cloned()
            .collect()
    }
}

struct Harness {
    s: Synced,
    model: Model,
}

fn parent_ino(s: &Synced, path: &str) -> Option<u64> {
    match path.split_once('/') {
        None => Some(ROOT_INO),
        Some((dir, _)) => s.store.lookup(ROOT_INO, dir).unwrap().map(|r| r.ino),
    }
}

fn leaf(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

async fn ino_of(s: &Synced, path: &str) -> Option<u64> {
    let parent = parent_ino(s, path)?;
    s.fs.lookup(C, parent, OsStr::new(leaf(path)))
        .await
        .ok()
        .map(|e| e.attr.ino)
}

impl Harness {
    async fn apply(&mut self, op: &Op) {
        let fs = self.s.fs.clone();
        let m = &mut self.model;
        match op.clone() {
            Op::Write { file, data } => {
                let path = path_of(file);
                if !m.parent_exists(&path) {
                    return;
                }
                let parent = parent_ino(&self.s, &path).unwrap();
                edits_support::write_whole(&fs, parent, leaf(&path), &data).await;
                m.files.insert(path.clone(), data);
                m.touched.insert(path);
            }
            Op::PWrite { file, offset, data } => {
                let path = path_of(file);
                let Some(ino) = ino_of(&self.s, &path).await else {
                    assert!(!m.files.contains_key(&path), "{path} should exist");
                    return;
                };
                let mode = OpenMode {
                    write: true,
                    ..Default::default()
                };
                let o = fs.open(C, ino, mode).await.unwrap();
                fs.write(ino, o.fh, offset, &data).await.unwrap();
                fs.flush(ino, o.fh).await.unwrap();
                fs.release(ino, o.fh).await.unwrap();
                let content = m.files.get_mut(&path).expect("model has the file");
                let end = offset as usize + data.len();
                if content.len() < end && !data.is_empty() {
                    content.resize(end, 0);
                }
                if !data.is_empty() {
                    content[offset as usize..end].copy_from_slice(&data);
                }
                m.touched.insert(path);
            }
            Op::Truncate { file, size } => {
                let path = path_of(file);
                let Some(ino) = ino_of(&self.s, &path).await else {
                    return;
                };
                let set = SetAttr {
                    size: Some(size),
                    ..Default::default()
                };
                fs.setattr(C, ino, set).await.unwrap();
                m.files.get_mut(&path).unwrap().resize(size as usize, 0);
                m.touched.insert(path);
            }
            Op::Unlink { file } => {
                let path = path_of(file);
                let Some(parent) = parent_ino(&self.s, &path) else {
                    return;
                };
                let r = fs.unlink(C, parent, OsStr::new(leaf(&path))).await;
                assert_eq!(r.is_ok(), m.files.remove(&path).is_some(), "unlink {path}: {r:?}");
                m.touched.insert(path);
            }
            Op::Rename { from, to } => {
                let (src, dst) = (path_of(from), path_of(to));
                let (Some(sp), Some(dp)) = (parent_ino(&self.s, &src), parent_ino(&self.s, &dst)) else {
                    return;
                };
                let r = fs
                    .rename(C, sp, OsStr::new(leaf(&src)), dp, OsStr::new(leaf(&dst)), false)
                    .await;
                match m.files.remove(&src) {
                    Some(content) => {
                        assert!(r.is_ok(), "rename {src} -> {dst}: {r:?}");
                        m.files.insert(dst.clone(), content);
                        m.touched.insert(src);
                        m.touched.insert(dst);
                    }
                    None => assert_eq!(r.unwrap_err().errno(), libc::ENOENT),
                }
            }
            Op::Mkdir => {
                let r = fs.mkdir(C, ROOT_INO, OsStr::new(DIR)).await;
                assert_eq!(r.is_ok(), !m.dir, "mkdir: {r:?}");
                m.dir = true;
            }
            Op::Rmdir => {
                let r = fs.rmdir(C, ROOT_INO, OsStr::new(DIR)).await;
                match (m.dir, m.dir_empty()) {
                    (false, _) => assert_eq!(r.unwrap_err().errno(), libc::ENOENT),
                    (true, false) => assert_eq!(r.unwrap_err().errno(), libc::ENOTEMPTY),
                    (true, true) => {
                        r.unwrap();
                        m.dir = false;
                    }
                }
            }
            Op::RemoteEdit { pick, data } => {
                let stable = m.stable();
                if stable.is_empty() {
                    return;
                }
                let path = &stable[pick % stable.len()];
                let id = self.s.remote(path).unwrap_or_else(|| panic!("{path} on OneDrive")).id;
                self.s.mock.edit_file(&id, data.clone());
                self.s.sync().await;
                m.files.insert(path.clone(), data);
            }
            Op::RemoteDelete { pick } => {
                let stable = m.stable();
                if stable.is_empty() {
                    return;
                }
                let path = stable[pick % stable.len()].clone();
                let id = self.s.remote(&path).unwrap().id;
                self.s.mock.delete_item(&id);
                self.s.sync().await;
                m.files.remove(&path);
            }
            Op::RemoteAdd { data } => {
                m.remote_adds += 1;
                let name = format!("remote-{}.jpg", m.remote_adds);
                self.s.mock.add_file(&self.s.gallery_id, &name, data.clone());
                self.s.sync().await;
                m.files.insert(name, data);
            }
            Op::Sync => {
                self.s.sync().await;
            }
            Op::Replay => {
                for _ in 0..5 {
                    let report = self.s.replayer.replay_once().await.unwrap();
                    assert_eq!((report.failed, report.conflicts), (0, 0), "{report:?}");
                    if self.s.store.pending().unwrap().is_empty() {
                        break;
                    }
                }
                assert!(
                    self.s.store.pending().unwrap().is_empty(),
                    "{:?}",
                    self.s.store.pending()
                );
                self.s.sync().await;
                m.touched.clear();
                self.check_remote().await;
            }
        }
    }

    /// The filesystem's view: every file path with its content, and whether `d` exists.
    async fn local_view(&self) -> (BTreeMap<String, Vec<u8>>, bool) {
        let mut files = BTreeMap::new();
        let mut dir = false;
        for e in self.s.fs.readdir(ROOT_INO, 0, 0, 1000, false).await.unwrap() {
            let name = e.name.to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            if e.kind == FileKind::Directory {
                assert_eq!(name, DIR);
                dir = true;
                for c in self.s.fs.readdir(e.ino, 0, 0, 1000, false).await.unwrap() {
                    let cname = c.name.to_string_lossy().into_owned();
                    if cname != "." && cname != ".." {
                        files.insert(format!("{DIR}/{cname}"), read_whole(&self.s.fs, c.ino).await);
                    }
                }
            } else {
                files.insert(name, read_whole(&self.s.fs, e.ino).await);
            }
        }
        (files, dir)
    }

    async fn check_local(&self) {
        let (files, dir) = self.local_view().await;
        assert_eq!(files, self.model.files, "the mount's files differ from the model");
        assert_eq!(dir, self.model.dir, "folder d");
    }

    async fn check_remote(&self) {
        let mut files = BTreeMap::new();
        let mut dir = false;
        for c in self.s.drive.children(&self.s.gallery_id).await.unwrap() {
            let name = c.name.clone().unwrap();
            if c.folder.is_some() {
                dir = true;
                for f in self.s.drive.children(&c.id).await.unwrap() {
                    files.insert(
                        format!("{name}/{}", f.name.unwrap()),
                        self.s.mock.content(&f.id).unwrap().to_vec(),
                    );
                }
            } else {
                files.insert(name, self.s.mock.content(&c.id).unwrap().to_vec());
            }
        }
        assert_eq!(
            files, self.model.files,
            "OneDrive's files differ from the model after a replay"
        );
        assert_eq!(dir, self.model.dir, "folder d on OneDrive");
        // Every row has its real OneDrive id.
        for path in self.model.files.keys() {
            let id = self.s.remote(path).unwrap().id;
            assert!(
                self.s.store.get_by_item_id(&id).unwrap().is_some(),
                "{path} known by id"
            );
        }
    }
}

async fn run(ops: Vec<Op>) {
    let mock = Arc::new(MockDrive::new());
    let s = Synced::new(mock.clone(), mock, Duration::ZERO, quick_config()).await;
    let mut h = Harness {
        s,
        model: Model::default(),
    };
    for op in &ops {
        h.apply(op).await;
        h.check_local().await;
    }
    h.apply(&Op::Replay).await;
    h.check_local().await;
}

/// 48 cases by default; `EDITS_MODEL_CASES=N` runs more.
fn cases() -> u32 {
    std::env::var("EDITS_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn local_and_remote_edits_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}

/// A fixed sequence that covers the editor's save, a rename over a file, and a remote edit in one run.
#[tokio::test]
async fn a_known_tricky_sequence() {
    run(vec![
        Op::Write {
            file: 0,
            data: b"a1".to_vec(),
        },
        Op::Mkdir,
        Op::Write {
            file: 4,
            data: b"db".to_vec(),
        },
        Op::Replay,
        Op::Write {
            file: 2,
            data: b"tmp".to_vec(),
        },
        Op::Rename { from: 2, to: 0 },
        Op::RemoteEdit {
            pick: 1,
            data: b"remote".to_vec(),
        },
        Op::Rename { from: 4, to: 1 },
        Op::Rmdir,
        Op::PWrite {
            file: 1,
            offset: 4,
            data: b"zz".to_vec(),
        },
        Op::Replay,
    ])
    .await;
}

#[tokio::test]
async fn a_new_file_takes_a_name_freed_by_an_earlier_move() {
    run(vec![
        Op::Mkdir,
        Op::Write { file: 2, data: vec![] },
        Op::Replay,
        Op::Rename { from: 2, to: 3 },
        Op::Write { file: 2, data: vec![] },
        Op::Rename { from: 3, to: 0 },
    ])
    .await;
}

// ---- both sides editing the same files: conflict copies, nothing lost ----

#[derive(Clone, Debug)]
enum Clash {
    LocalWrite { file: usize, data: Vec<u8> },
    RemoteEdit { file: usize, data: Vec<u8> },
    Sync,
    Replay,
}

fn clash() -> impl Strategy<Value = Clash> {
    prop_oneof![
        3 => (0..3usize, data()).prop_map(|(file, data)| Clash::LocalWrite { file, data }),
        3 => (0..3usize, data()).prop_map(|(file, data)| Clash::RemoteEdit { file, data }),
        2 => Just(Clash::Sync),
        2 => Just(Clash::Replay),
    ]
}

/// One file as the model sees it: what OneDrive holds, the version the store last agreed on, a pending local edit.
#[derive(Clone, Debug)]
struct Both {
    remote: Vec<u8>,
    base: Vec<u8>,
    local: Option<Vec<u8>>,
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

async fn run_clashes(ops: Vec<Clash>) {
    let mock = Arc::new(MockDrive::new());
    let s = Synced::new(mock.clone(), mock, Duration::ZERO, quick_config()).await;
    let mut ids = Vec::new();
    let mut files = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        ids.push(s.mock.add_file(&s.gallery_id, name, vec![i as u8]));
        files.push(Both {
            remote: vec![i as u8],
            base: vec![i as u8],
            local: None,
        });
    }
    s.sync().await;
    let mut copies: Vec<Vec<u8>> = Vec::new();
    let mut ops = ops;
    ops.extend([Clash::Replay, Clash::Sync, Clash::Replay, Clash::Sync]);
    for op in ops {
        match op {
            Clash::LocalWrite { file, data } => {
                edits_support::write_whole(&s.fs, ROOT_INO, NAMES[file], &data).await;
                files[file].local = Some(data);
            }
            Clash::RemoteEdit { file, data } => {
                s.mock.edit_file(&ids[file], data.clone());
                files[file].remote = data;
            }
            Clash::Sync => {
                s.sync().await;
                for f in files.iter_mut().filter(|f| f.local.is_none()) {
                    f.base = f.remote.clone();
                }
            }
            Clash::Replay => {
                let report = s.replayer.replay_once().await.unwrap();
                assert_eq!(report.failed, 0, "{report:?}");
                assert!(s.store.pending().unwrap().is_empty());
                for f in files.iter_mut() {
                    if let Some(local) = f.local.take() {
                        // Both sides holding the same bytes is no conflict: nothing of either is lost.
                        if f.remote != f.base && local != f.remote {
                            copies.push(local); // OneDrive's version keeps the name
                        } else {
                            f.remote = local;
                        }
                        f.base = f.remote.clone();
                    }
                }
            }
        }
        // The mount: each name shows the local edit, else the agreed version; plus every conflict copy.
        let view: Vec<Vec<u8>> = files
            .iter()
            .map(|f| f.local.clone().unwrap_or(f.base.clone()))
            .collect();
        let mut local = BTreeMap::new();
        for e in s.fs.readdir(ROOT_INO, 0, 0, 1000, false).await.unwrap() {
            let name = e.name.to_string_lossy().into_owned();
            if name != "." && name != ".." {
                local.insert(name, read_whole(&s.fs, e.ino).await);
            }
        }
        for (i, name) in NAMES.iter().enumerate() {
            // (A clean file edited on OneDrive but not synced yet reads whatever this test's unpinned content
            // source fetches; the content cache pins versions, this fake does not.)
            if files[i].local.is_some() || files[i].remote == files[i].base {
                assert_eq!(local.get(*name), Some(&view[i]), "{name}");
            }
        }
        let copies_here: Vec<Vec<u8>> = local
            .iter()
            .filter(|(n, _)| !NAMES.contains(&n.as_str()))
            .map(|(_, c)| c.clone())
            .collect();
        assert_eq!(
            sorted(copies_here),
            sorted(copies.clone()),
            "conflict copies in the mount"
        );
    }
    // Settled: OneDrive holds exactly what the mount shows, and every version written on either side that was
    // not knowingly replaced survives.
    let mut remote = BTreeMap::new();
    for c in s.drive.children(&s.gallery_id).await.unwrap() {
        remote.insert(c.name.clone().unwrap(), s.mock.content(&c.id).unwrap().to_vec());
    }
    for (i, name) in NAMES.iter().enumerate() {
        assert_eq!(remote.get(*name), Some(&files[i].remote), "{name} on OneDrive");
        assert_eq!(s.remote(name).unwrap().id, ids[i], "{name} kept its id");
    }
    let copies_there: Vec<Vec<u8>> = remote
        .iter()
        .filter(|(n, _)| !NAMES.contains(&n.as_str()))
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(sorted(copies_there), sorted(copies), "conflict copies on OneDrive");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn both_sides_editing_never_lose_a_version(ops in proptest::collection::vec(clash(), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_clashes(ops));
    }
}

#[tokio::test]
async fn an_unchanged_truncate_then_two_renames_over_a_synced_file() {
    run(vec![
        Op::Write { file: 1, data: vec![] },
        Op::Mkdir,
        Op::Write { file: 3, data: vec![] },
        Op::Replay,
        Op::Truncate { file: 1, size: 0 },
        Op::Rename { from: 1, to: 2 },
        Op::Rename { from: 2, to: 3 },
    ])
    .await;
}

#[tokio::test]
async fn a_new_empty_file_where_an_unlinked_empty_file_was() {
    run(vec![
        Op::Write { file: 0, data: vec![] },
        Op::Replay,
        Op::RemoteAdd { data: vec![] },
        Op::Rename { from: 0, to: 1 },
        Op::Write { file: 0, data: vec![] },
        Op::Unlink { file: 1 },
    ])
    .await;
}

#[tokio::test]
async fn a_new_file_saved_over_a_renamed_file_whose_move_is_pending() {
    run(vec![
        Op::Mkdir,
        Op::Write { file: 3, data: vec![] },
        Op::Replay,
        Op::Rename { from: 3, to: 4 },
        Op::Write { file: 3, data: vec![] },
        Op::Rename { from: 3, to: 4 },
    ])
    .await;
}

#[tokio::test]
async fn a_changed_file_saved_over_a_file_moved_out_of_a_removed_folder() {
    run(vec![
        Op::Write { file: 0, data: vec![] },
        Op::Write { file: 1, data: vec![] },
        Op::Mkdir,
        Op::Write { file: 3, data: vec![] },
        Op::Replay,
        Op::PWrite {
            file: 1,
            offset: 0,
            data: vec![0],
        },
        Op::Rename { from: 3, to: 2 },
        Op::Rmdir,
        Op::Rename { from: 1, to: 2 },
    ])
    .await;
}
