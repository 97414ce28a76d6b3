//! The outbox: a durable, ordered journal of local operations not yet applied on OneDrive (uploads, deletes,
//! moves, folder creations). `Store` commits every outbox change with `synchronous=FULL`; to make an item change
//! and its outbox entry atomic, do both inside one [`Store::write_durable`](super::Store::write_durable).
//! Upload-session URLs are pre-authenticated secrets: stored here so an upload can resume, never printed.

use super::{Result, StoreError, StoreTx};
use chrono::{DateTime, Utc};
use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A pending local operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OutboxOp {
    /// Upload the staged content of `ino` (a new or changed file).
    Upload {
        ino: u64,
        staged_path: PathBuf,
        size: u64,
        mtime: i64,
    },
    /// Delete the OneDrive item (its row is already gone locally).
    Delete { ino: u64, item_id: String },
    /// Move and/or rename the OneDrive item.
    Move {
        ino: u64,
        item_id: String,
        new_parent_id: String,
        new_name: String,
    },
    /// Create folder `name` in the folder with inode `parent`.
    Mkdir { ino: u64, parent: u64, name: String },
    /// Set the folder's `fileSystemInfo.lastModifiedDateTime` to its local mtime (`utimensat` on a folder; a
    /// file's times travel with its upload).
    Times { ino: u64 },
}

impl OutboxOp {
    pub fn ino(&self) -> u64 {
        match self {
            OutboxOp::Upload { ino, .. }
            | OutboxOp::Delete { ino, .. }
            | OutboxOp::Move { ino, .. }
            | OutboxOp::Mkdir { ino, .. }
            | OutboxOp::Times { ino } => *ino,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            OutboxOp::Upload { .. } => "upload",
            OutboxOp::Delete { .. } => "delete",
            OutboxOp::Move { .. } => "move",
            OutboxOp::Mkdir { .. } => "mkdir",
            OutboxOp::Times { .. } => "times",
        }
    }
}

/// One journal entry.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: i64,
    pub op: OutboxOp,
    /// Pre-authenticated upload-session URL to resume with. Secret: redacted from `Debug`.
    pub upload_url: Option<String>,
    pub upload_expires: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for OutboxEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxEntry")
            .field("seq", &self.seq)
            .field("op", &self.op)
            .field("upload_url", &self.upload_url.as_ref().map(|_| "<redacted>"))
            .field("upload_expires", &self.upload_expires)
            .field("attempts", &self.attempts)
            .field("last_error", &self.last_error)
            .field("retry_at", &self.retry_at)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// Outbox totals for `galleryfs status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub uploads: u64,
    pub deletes: u64,
    pub moves: u64,
    pub mkdirs: u64,
    /// Entries that failed at least once.
    pub failing: u64,
}

fn parse_time(s: Option<String>) -> Result<Option<DateTime<Utc>>> {
    s.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| StoreError::Corrupt(format!("outbox time {s:?}")))
    })
    .transpose()
}

type RawEntry = (
    i64,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    String,
);

fn raw_entry(r: &Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

impl StoreTx<'_> {
    /// Appends an operation; returns its sequence number (strictly increasing, never reused).
    pub fn enqueue(&self, op: &OutboxOp) -> Result<i64> {
        let json = serde_json::to_string(op).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.exec(
            "INSERT INTO outbox (kind, ino, op, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![op.kind(), op.ino() as i64, json, Utc::now().to_rfc3339()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// All entries in sequence order.
    pub fn pending(&self) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, op, upload_url, upload_expires, attempts, last_error, retry_at, created_at \
             FROM outbox ORDER BY seq",
        )?;
        let rows = stmt.query_map([], raw_entry)?;
        rows.map(|r| {
            let (seq, op, upload_url, upload_expires, attempts, last_error, retry_at, created_at) = r?;
            Ok(OutboxEntry {
                seq,
                op: serde_json::from_str(&op).map_err(|e| StoreError::Corrupt(format!("outbox op: {e}")))?,
                upload_url,
                upload_expires: parse_time(upload_expires)?,
                attempts: attempts.max(0) as u32,
                last_error,
                retry_at: parse_time(retry_at)?,
                created_at: parse_time(Some(created_at))?.unwrap_or_default(),
            })
        })
        .collect()
    }

    fn outbox_changed(&self, seq: i64, n: usize) -> Result<()> {
        if n == 0 {
            Err(StoreError::NoSuchOutboxEntry(seq))
        } else {
            Ok(())
        }
    }

    /// Remembers the upload session of an `Upload` entry so it can resume after a restart.
    pub fn set_upload_session(&self, seq: i64, url: &str, expires: Option<DateTime<Utc>>) -> Result<()> {
        let n = self.exec(
            "UPDATE outbox SET upload_url = ?2, upload_expires = ?3 WHERE seq = ?1",
            params![seq, url, expires.map(|t| t.to_rfc3339())],
        )?;
        self.outbox_changed(seq, n)
    }

    /// Forgets a finished upload session (expired or completed).
    pub fn clear_upload_session(&self, seq: i64) -> Result<()> {
        let n = self.exec(
            "UPDATE outbox SET upload_url = NULL, upload_expires = NULL WHERE seq = ?1",
            [seq],
        )?;
        self.outbox_changed(seq, n)
    }

    /// The operation is done on OneDrive: removes the entry.
    pub fn complete(&self, seq: i64) -> Result<()> {
        let n = self.exec("DELETE FROM outbox WHERE seq = ?1", [seq])?;
        self.outbox_changed(seq, n)
    }

    /// Records a failed attempt and when to retry.
    pub fn fail(&self, seq: i64, error: &str, retry_at: DateTime<Utc>) -> Result<()> {
        let n = self.exec(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, retry_at = ?3 WHERE seq = ?1",
            params![seq, error, retry_at.to_rfc3339()],
        )?;
        self.outbox_changed(seq, n)
    }

    /// Drops the pending entries of `ino` whose kind is in `kinds` (e.g. the uploads of a file deleted before
    /// they ran); returns how many.
    pub fn drop_ops(&self, ino: u64, kinds: &[&str]) -> Result<usize> {
        let mut n = 0;
        for kind in kinds {
            n += self.exec(
                "DELETE FROM outbox WHERE ino = ?1 AND kind = ?2",
                params![ino as i64, kind],
            )?;
        }
        Ok(n)
    }

    /// Hands `from`'s pending moves to `to` (a file that took over `from`'s OneDrive item), keeping their place
    /// in the sequence; returns how many.
    pub fn reassign_moves(&self, from: u64, to: u64) -> Result<usize> {
        let mut n = 0;
        for entry in self.pending()? {
            if let OutboxOp::Move {
                ino,
                item_id,
                new_parent_id,
                new_name,
            } = entry.op
            {
                if ino != from {
                    continue;
                }
                let op = OutboxOp::Move {
                    ino: to,
                    item_id,
                    new_parent_id,
                    new_name,
                };
                let json = serde_json::to_string(&op).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                n += self.exec(
                    "UPDATE outbox SET ino = ?1, op = ?2 WHERE seq = ?3",
                    params![to as i64, json, entry.seq],
                )?;
            }
        }
        Ok(n)
    }

    /// Whether `ino` has a pending entry of `kind`.
    pub fn has_op(&self, ino: u64, kind: &str) -> Result<bool> {
        let n: i64 = self.one(
            "SELECT COUNT(*) FROM outbox WHERE ino = ?1 AND kind = ?2",
            params![ino as i64, kind],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Whether an entry of `kind` for `ino` comes after `seq` (a later upload supersedes an earlier one).
    pub fn has_later_op(&self, ino: u64, kind: &str, seq: i64) -> Result<bool> {
        let n: i64 = self.one(
            "SELECT COUNT(*) FROM outbox WHERE ino = ?1 AND kind = ?2 AND seq > ?3",
            params![ino as i64, kind, seq],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Whether a delete of OneDrive item `item_id` for `ino` is journalled after `seq`.
    pub fn has_later_delete(&self, ino: u64, item_id: &str, seq: i64) -> Result<bool> {
        let n: i64 = self.one(
            "SELECT COUNT(*) FROM outbox WHERE ino = ?1 AND kind = 'delete' AND seq > ?3 \
             AND json_extract(op, '$.item_id') = ?2",
            params![ino as i64, item_id, seq],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// The OneDrive ids with a delete journalled and not yet done, and the inodes with a move journalled and not
    /// yet done: what a delta round must not undo (the local side is newer).
    pub fn pending_deletes_and_moves(
        &self,
    ) -> Result<(std::collections::HashSet<String>, std::collections::HashSet<u64>)> {
        let mut deletes = std::collections::HashSet::new();
        let mut moves = std::collections::HashSet::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT kind, ino, json_extract(op, '$.item_id') FROM outbox WHERE kind IN ('delete', 'move')",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        for row in rows {
            let (kind, ino, item_id) = row?;
            match kind.as_str() {
                "delete" => {
                    deletes.extend(item_id);
                }
                _ => {
                    moves.insert(ino as u64);
                }
            }
        }
        Ok((deletes, moves))
    }

    pub fn outbox_counts(&self) -> Result<OutboxCounts> {
        let mut counts = OutboxCounts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT kind, COUNT(*), SUM(attempts > 0) FROM outbox GROUP BY kind")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })?;
        for r in rows {
            let (kind, n, failing) = r?;
            let n = n as u64;
            counts.pending += n;
            counts.failing += failing as u64;
            match kind.as_str() {
                "upload" => counts.uploads += n,
                "delete" => counts.deletes += n,
                "move" => counts.moves += n,
                "mkdir" => counts.mkdirs += n,
                _ => {}
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn lifecycle_and_redaction() {
        let s = Store::open_in_memory().unwrap();
        let up = s
            .enqueue(&OutboxOp::Upload {
                ino: 7,
                staged_path: "/tmp/staged/7".into(),
                size: 100,
                mtime: 3,
            })
            .unwrap();
        let del = s
            .enqueue(&OutboxOp::Delete {
                ino: 8,
                item_id: "X!1".into(),
            })
            .unwrap();
        assert!(del > up);
        s.set_upload_session(up, "https://upload.example/secret-token", None)
            .unwrap();
        let when = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        s.fail(up, "HTTP 503", when).unwrap();
        let pending = s.pending().unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].attempts, 1);
        assert_eq!(pending[0].retry_at, Some(when));
        assert!(!format!("{:?}", pending[0]).contains("secret-token"));
        let counts = s.outbox_counts().unwrap();
        assert_eq!(
            (counts.pending, counts.uploads, counts.deletes, counts.failing),
            (2, 1, 1, 1)
        );
        assert!(s.read(|t| t.has_op(7, "upload")).unwrap());
        assert!(!s.read(|t| t.has_later_op(7, "upload", up)).unwrap());
        s.complete(up).unwrap();
        assert!(matches!(s.complete(up), Err(StoreError::NoSuchOutboxEntry(_))));
        assert_eq!(s.pending().unwrap()[0].seq, del);
        assert_eq!(s.write(|t| t.drop_ops(8, &["upload"])).unwrap(), 0);
        assert_eq!(s.write(|t| t.drop_ops(8, &["upload", "delete"])).unwrap(), 1);
        assert!(s.pending().unwrap().is_empty());
    }
}
