//! An fsync of the database file through a connection's own file handle, for the checkpointer
//! (see `checkpoint::catch_up`).
//!
//! Why not `std::fs::File::sync_data` on a file opened for the purpose: SQLite locks the
//! database with POSIX advisory locks, and closing any descriptor of a file releases every such
//! lock the process holds on it, those of all its connections included.
//!
//! This and the `wal_batch` module are the crate's only unsafe code.
#![allow(unsafe_code)]

use std::ffi::c_void;

use rusqlite::{Connection, ffi};

/// Flushes the main database file of `conn` to stable storage (`SQLITE_SYNC_NORMAL`, as SQLite
/// syncs it at checkpoints with `synchronous=NORMAL` or `FULL`). `false` if the database has no
/// file (in memory).
pub(crate) fn sync_database(conn: &Connection) -> Result<bool, rusqlite::Error> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `conn.handle()` is an open connection used only by this thread for the duration
    // of the call (`&Connection` is not `Sync`); `SQLITE_FCNTL_FILE_POINTER` writes the
    // `sqlite3_file*` of the main database, owned by the connection and valid while it is open.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast::<c_void>(),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None));
    }
    // SAFETY: a non-null file from SQLite has a method table while it is open; `xSync` is the
    // VFS's own sync, which SQLite calls the same way from its checkpoints.
    let rc = unsafe {
        match file
            .as_ref()
            .and_then(|f| f.pMethods.as_ref())
            .and_then(|m| m.xSync)
        {
            Some(sync) => sync(file, ffi::SQLITE_SYNC_NORMAL),
            // No open file (an in-memory database): nothing to sync.
            None => return Ok(false),
        }
    };
    if rc != ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::sync_database;

    #[test]
    fn syncs_a_database_file_and_accepts_one_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        assert!(sync_database(&conn).unwrap(), "the file was not synced");
        assert!(!sync_database(&Connection::open_in_memory().unwrap()).unwrap());
    }
}
