//! Schema migrations, numbered by `PRAGMA user_version`. Each step runs in its own transaction; a database from a
//! newer galleryfs is refused rather than guessed at.

use super::{Result, StoreError};
use rusqlite::Connection;

/// Migration `n` (1-based) brings `user_version` from `n-1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: items, meta, blocks, thumbnails, outbox.
    r#"
    CREATE TABLE items (
        ino            INTEGER PRIMARY KEY AUTOINCREMENT,
        item_id        TEXT    NOT NULL UNIQUE,
        parent_ino     INTEGER REFERENCES items(ino) ON DELETE CASCADE,
        name           TEXT    NOT NULL,
        name_key       TEXT    NOT NULL,
        kind           INTEGER NOT NULL,          -- 0 file, 1 folder
        size           INTEGER NOT NULL DEFAULT 0,
        etag           TEXT,
        ctag           TEXT,
        quick_xor_hash TEXT,
        mtime          INTEGER NOT NULL DEFAULT 0, -- Unix seconds
        mime_type      TEXT,
        is_media       INTEGER NOT NULL DEFAULT 0,
        pinned         INTEGER NOT NULL DEFAULT 0,
        content_state  INTEGER NOT NULL DEFAULT 0, -- 0 cloud, 1 partial, 2 cached, 3 dirty
        local_only     INTEGER NOT NULL DEFAULT 0,
        base_ctag      TEXT,
        base_hash      TEXT,
        base_size      INTEGER,
        remote_removed INTEGER NOT NULL DEFAULT 0  -- kept for local changes although gone from the gallery
    );
    CREATE UNIQUE INDEX items_parent_name ON items(parent_ino, name_key);
    CREATE INDEX items_media ON items(is_media) WHERE is_media = 1;
    -- The gallery root is inode 1; its real item id is set by set_root_item.
    INSERT INTO items (ino, item_id, parent_ino, name, name_key, kind) VALUES (1, 'galleryfs:root', NULL, '', '', 1);

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    -- Which cTag the cached bytes of an item belong to, and its LRU bookkeeping.
    CREATE TABLE content (
        ino          INTEGER PRIMARY KEY REFERENCES items(ino) ON DELETE CASCADE,
        ctag         TEXT    NOT NULL,
        cached_bytes INTEGER NOT NULL DEFAULT 0,
        last_access  INTEGER NOT NULL DEFAULT 0  -- Unix milliseconds
    );
    CREATE INDEX content_lru ON content(last_access);
    -- Present byte ranges [lo, hi) of the cached content; disjoint and non-adjacent per item.
    CREATE TABLE blocks (
        ino   INTEGER NOT NULL REFERENCES content(ino) ON DELETE CASCADE,
        lo    INTEGER NOT NULL,
        hi    INTEGER NOT NULL,
        PRIMARY KEY (ino, lo)
    ) WITHOUT ROWID;

    CREATE TABLE thumbs (
        item_id    TEXT    NOT NULL REFERENCES items(item_id) ON DELETE CASCADE ON UPDATE CASCADE,
        size       TEXT    NOT NULL,              -- normal | large
        ctag       TEXT,                          -- the content version the state applies to
        state      INTEGER NOT NULL,              -- 0 ready, 1 missing, 2 failed
        attempts   INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (item_id, size)
    ) WITHOUT ROWID;

    CREATE TABLE outbox (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        kind           TEXT    NOT NULL,          -- upload | delete | move | mkdir
        ino            INTEGER NOT NULL,
        op             TEXT    NOT NULL,          -- JSON of OutboxOp
        upload_url     TEXT,
        upload_expires TEXT,
        attempts       INTEGER NOT NULL DEFAULT 0,
        last_error     TEXT,
        retry_at       TEXT,
        created_at     TEXT    NOT NULL
    );
    "#,
    // 2: deletes made through galleryfs (OneDrive Personal has no recycle-bin listing API).
    r#"
    CREATE TABLE trash (
        item_id    TEXT    PRIMARY KEY,
        name       TEXT    NOT NULL,
        path       TEXT    NOT NULL,            -- below the gallery root, at the time of the delete
        parent_id  TEXT,                        -- the OneDrive id of the folder it was in
        is_dir     INTEGER NOT NULL DEFAULT 0,
        size       INTEGER NOT NULL DEFAULT 0,
        deleted_at TEXT    NOT NULL,            -- RFC 3339
        state      INTEGER NOT NULL DEFAULT 0   -- 0 delete pending, 1 in the recycle bin
    ) WITHOUT ROWID;
    CREATE INDEX trash_deleted_at ON trash(deleted_at);
    "#,
    // 3: directory times kept like a local filesystem's, and link counts of folders.
    r#"
    ALTER TABLE items ADD COLUMN ctime INTEGER;        -- Unix seconds of the last local change of the row's
                                                       -- entries or times when later than mtime (NULL: mtime)
    ALTER TABLE items ADD COLUMN remote_mtime INTEGER; -- a folder's fileSystemInfo time as OneDrive last reported
                                                       -- it (NULL: not seen yet)
    CREATE INDEX items_subfolders ON items(parent_ino) WHERE kind = 1;
    -- Until now a folder's mtime was OneDrive's.
    UPDATE items SET remote_mtime = mtime WHERE kind = 1 AND local_only = 0;
    "#,
    // 4: the photo facet of media files (capture date, camera, dimensions, location). Existing stores have none
    // recorded: forgetting the delta link makes the next sync list the gallery again (inodes kept), which fills it.
    r#"
    CREATE TABLE media (
        ino          INTEGER PRIMARY KEY REFERENCES items(ino) ON DELETE CASCADE,
        taken        INTEGER,                   -- photo.takenDateTime, Unix seconds
        created      INTEGER,                   -- fileSystemInfo.createdDateTime, Unix seconds
        camera_make  TEXT,
        camera_model TEXT,
        width        INTEGER,
        height       INTEGER,
        latitude     REAL,
        longitude    REAL,
        altitude     REAL
    );
    DELETE FROM meta WHERE key = 'delta_link';
    "#,
];

pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "metadata store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap(); // idempotent
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let root: String = conn
            .query_row("SELECT item_id FROM items WHERE ino = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(root, "galleryfs:root");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::SchemaTooNew { .. })));
    }

    #[test]
    fn a_version_2_store_upgrades_in_place() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO items (item_id, parent_ino, name, name_key, kind, mtime) VALUES ('D', 1, 'Album', 'album', 1, 7)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (mtime, ctime, remote): (i64, Option<i64>, Option<i64>) = conn
            .query_row(
                "SELECT mtime, ctime, remote_mtime FROM items WHERE item_id = 'D'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (mtime, ctime, remote),
            (7, None, Some(7)),
            "the folder's time so far was OneDrive's"
        );
    }

    /// A store of version 2 (before photo facets) is upgraded in place: its items stay, the media table appears,
    /// and the delta link is forgotten so the next sync lists the gallery again and records the facets.
    #[test]
    fn version_2_gains_the_media_table_and_relists() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (i, sql) in MIGRATIONS.iter().take(2).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO meta (key, value) VALUES ('delta_link', 'https://x/delta?token=1'), ('drive_id', 'd');
             INSERT INTO items (item_id, parent_ino, name, name_key, kind) VALUES ('p', 1, 'a.jpg', 'a.jpg', 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM items WHERE item_id = 'p'"), 1);
        assert_eq!(count("SELECT count(*) FROM media"), 0);
        assert_eq!(count("SELECT count(*) FROM meta WHERE key = 'delta_link'"), 0);
        assert_eq!(count("SELECT count(*) FROM meta WHERE key = 'drive_id'"), 1);
    }
}
