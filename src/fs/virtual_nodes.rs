//! Inodes that exist only in the mount: the freedesktop shared thumbnail repository every directory answers,
//! `<dir>/.sh_thumbnails/{normal,large}/<md5>.png` (reachable by path but not listed by the directory's
//! readdir, so copies and backups of the mount do not pick them up), and the Timeline's folders. Their inode numbers live above
//! [`VIRTUAL_BASE`], far from the store's row ids, and are assigned on first lookup.

use super::types::Ino;
use crate::thumbnails::ThumbSize;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Virtual inode numbers start here (store row ids never get close).
pub const VIRTUAL_BASE: Ino = 1 << 56;

/// A virtual node of the shared repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VirtualNode {
    /// `<dir>/.sh_thumbnails`
    Repo { dir: Ino },
    /// `<dir>/.sh_thumbnails/<size>`
    SizeDir { dir: Ino, size: ThumbSize },
    /// `<dir>/.sh_thumbnails/<size>/<md5>.png`, the thumbnail of file `file` of `dir`.
    Thumb { dir: Ino, size: ThumbSize, file: Ino },
    /// `Timeline` at the mount root.
    Timeline,
    /// `Timeline/YYYY`
    TimelineYear { year: i32 },
    /// `Timeline/YYYY/YYYY-MM`
    TimelineMonth { year: i32, month: u32 },
}

impl VirtualNode {
    pub fn is_dir(&self) -> bool {
        !matches!(self, VirtualNode::Thumb { .. })
    }
}

/// Two-way map between virtual nodes and their inode numbers.
#[derive(Default)]
pub struct VirtualInodes {
    inner: Mutex<Maps>,
}

#[derive(Default)]
struct Maps {
    by_ino: HashMap<Ino, VirtualNode>,
    by_node: HashMap<VirtualNode, Ino>,
    next: Ino,
}

impl VirtualInodes {
    pub fn is_virtual(ino: Ino) -> bool {
        ino >= VIRTUAL_BASE
    }

    /// The inode of `node`, assigning one on first use.
    pub fn ino_of(&self, node: VirtualNode) -> Ino {
        let mut m = self.inner.lock();
        if let Some(i) = m.by_node.get(&node) {
            return *i;
        }
        let ino = VIRTUAL_BASE + m.next;
        m.next += 1;
        m.by_ino.insert(ino, node);
        m.by_node.insert(node, ino);
        ino
    }

    pub fn node(&self, ino: Ino) -> Option<VirtualNode> {
        self.inner.lock().by_ino.get(&ino).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_distinct() {
        let v = VirtualInodes::default();
        let a = v.ino_of(VirtualNode::Repo { dir: 1 });
        let b = v.ino_of(VirtualNode::SizeDir {
            dir: 1,
            size: ThumbSize::Large,
        });
        assert_ne!(a, b);
        assert_eq!(a, v.ino_of(VirtualNode::Repo { dir: 1 }));
        assert!(VirtualInodes::is_virtual(a) && !VirtualInodes::is_virtual(5));
        assert_eq!(
            v.node(b),
            Some(VirtualNode::SizeDir {
                dir: 1,
                size: ThumbSize::Large
            })
        );
    }
}
