//! A VFS shim that writes each commit's WAL frames to the file in one system call.
//!
//! SQLite writes a WAL frame as two `pwrite`s, its 24-byte header and then the page, so a
//! commit of 30 pages costs 60 system calls. On the development VM a frame written that way
//! cost ~6.8 µs, against ~1 µs when a commit's frames went out in one call (a loop of `pwrite`s
//! of the same sizes and offsets), and writing frames was two thirds of the writer thread's
//! time (see BENCHMARKS.md). This shim, registered as the SQLite VFS [`NAME`], wraps the default
//! VFS and changes nothing but WAL files: there, writes that extend the log are gathered in
//! memory and written in one call once the transaction's commit frame is complete.
//!
//! Why SQLite cannot tell the difference:
//! * SQLite makes a commit visible (to readers, to the checkpointer, to recovery after a crash)
//!   only after `sqlite3WalFrames` has written the commit frame: it then updates the WAL index
//!   in shared memory, and `COMMIT` returns. The shim flushes inside the write that completes the
//!   commit frame, so by then every frame of the transaction is in the file (in the OS page
//!   cache, exactly as without the shim; `fsync` is unchanged).
//! * Every other call on the file (read, sync, truncate, size, file control, close) flushes
//!   first, so SQLite never reads or syncs a file that differs from what it wrote.
//! * Writes that do not extend the log (SQLite rewriting a frame or the checksums of the running
//!   transaction) flush first and go straight to the file, so writes reach the file in
//!   SQLite's order.
//! * If the process dies with frames still buffered, they belonged to a transaction without its
//!   commit frame, which recovery ignores anyway.
//!
//! Only the connection that writes uses it (see `SqliteStore::open_with`); readers and the
//! checkpointer never write the WAL.
//!
//! This and the `database_sync` module are the crate's only unsafe code: a VFS is a table of C
//! callbacks.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

use crate::StoreError;

/// The name connections pass to open the store through the shim.
pub(crate) const NAME: &str = "dehr-wal-batch";
const NAME_C: &CStr = c"dehr-wal-batch";

/// The most bytes buffered before a flush, so that a huge transaction does not hold its whole
/// WAL in memory; a group commit is a few hundred KiB.
const MAX_BUFFER: usize = 8 << 20;
/// The most bytes the default VFS writes in one call: its `unixWrite` masks the length with
/// `0x1ffff` (SQLite itself never writes more than a page or a frame at once), and reports a
/// longer write as a full disk.
const MAX_WRITE: usize = 0x1ffff;
/// The buffer's capacity kept after a flush.
const KEPT_CAPACITY: usize = 1 << 20;

const WAL_HEADER_SIZE: u64 = 32;
const FRAME_HEADER_SIZE: u64 = 24;
const WAL_MAGIC: [u32; 2] = [0x377f_0682, 0x377f_0683];

/// The default VFS, which does the actual I/O. Set once, before the shim is registered.
struct Root(*mut ffi::sqlite3_vfs);
// SAFETY: the default VFS is a static table SQLite never frees; it is safe to use from any
// thread (SQLite's own connections do).
unsafe impl Send for Root {}
unsafe impl Sync for Root {}

static ROOT: OnceLock<Root> = OnceLock::new();
static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the shim (once per process; later calls return the first call's result).
pub(crate) fn register() -> Result<(), StoreError> {
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find` initializes SQLite if needed and returns the default
            // VFS, which lives as long as the process. The copy keeps its methods (they are
            // called with the copy, and read nothing from it but `pAppData`, copied too) except
            // `xOpen`, and allocates room for the wrapper in front of the default's file.
            unsafe {
                let root = ffi::sqlite3_vfs_find(ptr::null());
                if root.is_null() {
                    return Err("SQLite has no default VFS".to_owned());
                }
                let _ = ROOT.set(Root(root));
                let mut vfs = *root;
                vfs.zName = NAME_C.as_ptr();
                vfs.pNext = ptr::null_mut();
                vfs.szOsFile = (*root).szOsFile + INNER_OFFSET as c_int;
                vfs.xOpen = Some(open);
                let rc = ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0);
                if rc != ffi::SQLITE_OK {
                    return Err(format!("registering the SQLite VFS {NAME} failed ({rc})"));
                }
                Ok(())
            }
        })
        .clone()
        .map_err(StoreError::Database)
}

fn root() -> *mut ffi::sqlite3_vfs {
    // `open` is only reachable through the registered VFS, registered after ROOT was set.
    ROOT.get().map_or(ptr::null_mut(), |r| r.0)
}

/// A WAL file as SQLite sees it: the `sqlite3_file` header with our methods, the pending
/// writes, and then (at [`INNER_OFFSET`]) the default VFS's file.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    log: *mut PendingLog,
}

/// `size_of::<WalFile>()` is a multiple of the pointer size, so the inner file is aligned.
const INNER_OFFSET: usize = size_of::<WalFile>();

/// Writes waiting to be written together.
struct PendingLog {
    /// The database page size, from the WAL header; without it frames cannot be recognized,
    /// and every write goes straight to the file.
    page_size: Option<u64>,
    buffer: Vec<u8>,
    /// The file offset of `buffer[0]`.
    start: u64,
    /// The end of the log as this connection wrote it: writes at or past it extend the log.
    end: u64,
    /// Where the last commit frame written ends; the buffer is flushed once it reaches it.
    commit_end: Option<u64>,
}

#[cfg(test)]
thread_local! {
    /// (writes SQLite made to WAL files, writes the shim made to the file) on this thread.
    pub(crate) static WRITES: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

fn count(received: u64, written: u64) {
    #[cfg(test)]
    WRITES.with(|w| {
        let (r, o) = w.get();
        w.set((r + received, o + written));
    });
    let _ = (received, written);
}

fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    file.cast::<u8>().wrapping_add(INNER_OFFSET).cast()
}

fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: `file` is an open file of the default VFS, whose method table is static.
    unsafe { &*(*file).pMethods }
}

/// Writes `data` at `offset` in the inner file, in pieces of at most [`MAX_WRITE`] bytes.
fn write_inner(inner: *mut ffi::sqlite3_file, data: &[u8], offset: u64) -> c_int {
    let Some(write) = methods(inner).xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut offset = offset;
    for piece in data.chunks(MAX_WRITE) {
        let (Ok(len), Ok(at)) = (c_int::try_from(piece.len()), i64::try_from(offset)) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        count(0, 1);
        // SAFETY: `inner` is open; `piece` is valid for `len` bytes and only read.
        let rc = unsafe { write(inner, piece.as_ptr().cast::<c_void>().cast_mut(), len, at) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        offset += piece.len() as u64;
    }
    ffi::SQLITE_OK
}

impl PendingLog {
    fn flush(&mut self, inner: *mut ffi::sqlite3_file) -> c_int {
        if self.buffer.is_empty() {
            return ffi::SQLITE_OK;
        }
        let rc = write_inner(inner, &self.buffer, self.start);
        self.buffer.clear();
        self.buffer.shrink_to(KEPT_CAPACITY);
        self.commit_end = None;
        rc
    }

    fn buffer_end(&self) -> u64 {
        self.start + self.buffer.len() as u64
    }

    /// Whether a write of `len` bytes at `offset` is a frame header, and of a commit frame.
    fn commit_header(&self, data: &[u8], offset: u64) -> bool {
        let Some(page_size) = self.page_size else {
            return false;
        };
        data.len() as u64 == FRAME_HEADER_SIZE
            && offset >= WAL_HEADER_SIZE
            && (offset - WAL_HEADER_SIZE).is_multiple_of(FRAME_HEADER_SIZE + page_size)
            // Bytes 4..8: the database size after a commit, zero in other frames.
            && data[4..8] != [0, 0, 0, 0]
    }

    fn write(&mut self, inner: *mut ffi::sqlite3_file, data: &[u8], offset: u64) -> c_int {
        count(1, 0);
        if offset == 0 && data.len() as u64 >= WAL_HEADER_SIZE {
            // A new WAL header: the log starts again (after a checkpoint restarted it).
            let rc = self.flush(inner);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            self.page_size = page_size_of_header(data);
            self.end = 0;
        }
        let extends_log = offset >= self.end;
        if self.page_size.is_none()
            || !extends_log
            || data.len() > MAX_BUFFER
            || (!self.buffer.is_empty() && offset != self.buffer_end())
            || self.buffer.len() + data.len() > MAX_BUFFER
        {
            let rc = self.flush(inner);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        self.end = self.end.max(offset + data.len() as u64);
        if self.page_size.is_none() || !extends_log || data.len() > MAX_BUFFER {
            return write_inner(inner, data, offset);
        }
        if self.buffer.is_empty() {
            self.start = offset;
        }
        if self.commit_header(data, offset)
            && let Some(page_size) = self.page_size
        {
            self.commit_end = Some(offset + FRAME_HEADER_SIZE + page_size);
        }
        self.buffer.extend_from_slice(data);
        match self.commit_end {
            Some(end) if self.buffer_end() >= end => self.flush(inner),
            _ => ffi::SQLITE_OK,
        }
    }
}

/// The page size a WAL header records, if `header` is one.
fn page_size_of_header(header: &[u8]) -> Option<u64> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(header.get(i..i + 4)?.try_into().ok()?))
    };
    if !WAL_MAGIC.contains(&word(0)?) {
        return None;
    }
    let page_size = u64::from(word(8)?);
    (page_size.is_power_of_two() && (512..=65536).contains(&page_size)).then_some(page_size)
}

/// The page size in the header of the WAL that `inner` has open, if it has one.
fn page_size_of_file(inner: *mut ffi::sqlite3_file) -> Option<u64> {
    let read = methods(inner).xRead?;
    let mut header = [0u8; WAL_HEADER_SIZE as usize];
    // SAFETY: `inner` is open and `header` is writable for its length. A short read (a new,
    // empty WAL) zero-fills and returns SQLITE_IOERR_SHORT_READ.
    let rc = unsafe { read(inner, header.as_mut_ptr().cast(), header.len() as c_int, 0) };
    if rc != ffi::SQLITE_OK {
        return None;
    }
    page_size_of_header(&header)
}

/// The VFS's `xOpen`: WAL files get the wrapper, every other file is the default VFS's own.
unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let root = root();
    // SAFETY: `root` is the default VFS; SQLite allocated `file` with our `szOsFile` bytes,
    // enough for a `WalFile` followed by the default VFS's file.
    unsafe {
        let Some(root_open) = root.as_ref().and_then(|r| r.xOpen) else {
            return ffi::SQLITE_CANTOPEN;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return root_open(root, name, file, flags, out_flags);
        }
        let inner = inner(file);
        (*file).pMethods = ptr::null();
        (*inner).pMethods = ptr::null();
        let rc = root_open(root, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // SQLite will not close a file whose methods are null, so close the inner one here.
            if !(*inner).pMethods.is_null()
                && let Some(close) = methods(inner).xClose
            {
                close(inner);
            }
            return rc;
        }
        let log = PendingLog {
            page_size: page_size_of_file(inner),
            buffer: Vec::new(),
            start: 0,
            end: 0,
            commit_end: None,
        };
        let wal = file.cast::<WalFile>();
        (*wal).log = Box::into_raw(Box::new(log));
        (*wal).base.pMethods = &WAL_METHODS;
        ffi::SQLITE_OK
    }
}

/// The pending log of a wrapped file.
///
/// # Safety
/// `file` must be a file opened by [`open`] with the WAL methods, not yet closed, and used by
/// one thread at a time (SQLite guarantees both).
unsafe fn log<'a>(file: *mut ffi::sqlite3_file) -> &'a mut PendingLog {
    // SAFETY: per the contract, `log` is the live box `open` made.
    unsafe { &mut *(*file.cast::<WalFile>()).log }
}

/// Flushes, then calls the inner file's method `$method` with `$args`.
macro_rules! flush_then {
    ($file:ident, $method:ident, $missing:expr $(, $arg:ident)*) => {{
        // SAFETY: SQLite calls the method on a file `open` wrapped (see `log`).
        unsafe {
            let inner = inner($file);
            let rc = log($file).flush(inner);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            match methods(inner).$method {
                Some(method) => method(inner $(, $arg)*),
                None => $missing,
            }
        }
    }};
}

/// Calls the inner file's method `$method` with `$args`, without flushing.
macro_rules! forward {
    ($file:ident, $method:ident, $missing:expr $(, $arg:ident)*) => {{
        // SAFETY: SQLite calls the method on a file `open` wrapped (see `log`).
        unsafe {
            let inner = inner($file);
            match methods(inner).$method {
                Some(method) => method(inner $(, $arg)*),
                None => $missing,
            }
        }
    }};
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once, after its last use; the box is taken back here.
    unsafe {
        let inner = inner(file);
        let wal = file.cast::<WalFile>();
        let flushed = (*(*wal).log).flush(inner);
        drop(Box::from_raw((*wal).log));
        (*wal).log = ptr::null_mut();
        let closed = match methods(inner).xClose {
            Some(close) => close(inner),
            None => ffi::SQLITE_OK,
        };
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

unsafe extern "C" fn wal_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    flush_then!(file, xRead, ffi::SQLITE_IOERR_READ, buf, amount, offset)
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let (Ok(len), Ok(offset)) = (usize::try_from(amount), u64::try_from(offset)) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // SAFETY: SQLite passes a buffer valid for `amount` bytes, and a file `open` wrapped.
    unsafe {
        let data = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        log(file).write(inner(file), data, offset)
    }
}

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    let rc = flush_then!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size);
    if rc == ffi::SQLITE_OK {
        // SAFETY: as in `flush_then`.
        let log = unsafe { log(file) };
        log.end = log.end.min(u64::try_from(size).unwrap_or(0));
    }
    rc
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flush_then!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
}

unsafe extern "C" fn wal_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    flush_then!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
}

unsafe extern "C" fn wal_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, ffi::SQLITE_OK, level)
}

unsafe extern "C" fn wal_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, ffi::SQLITE_OK, level)
}

unsafe extern "C" fn wal_check_reserved_lock(
    file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    forward!(file, xCheckReservedLock, ffi::SQLITE_OK, out)
}

unsafe extern "C" fn wal_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    flush_then!(file, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
}

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xSectorSize, 4096)
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xDeviceCharacteristics, 0)
}

/// Version 1: a WAL file is never memory-mapped and has no shared memory of its own (the WAL
/// index belongs to the database file).
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags, params};

    use super::{NAME, WRITES, register};

    /// A connection through the shim, in WAL mode, as the store's writer opens it.
    fn writer(path: &std::path::Path, synchronous: &str) -> Connection {
        register().expect("the shim registers");
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME)
            .expect("opens through the shim");
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
             PRAGMA wal_autocheckpoint = 0;"
        ))
        .expect("configures");
        conn
    }

    /// A connection through SQLite's default VFS: what it sees is what reached the file.
    fn reader(path: &std::path::Path) -> Connection {
        Connection::open(path).expect("opens through the default VFS")
    }

    fn rows(conn: &Connection) -> (i64, i64) {
        conn.query_row(
            "SELECT count(*), coalesce(sum(length(x)), 0) FROM t",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("counts")
    }

    fn integrity(conn: &Connection) -> String {
        conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("checks")
    }

    fn writes() -> (u64, u64) {
        WRITES.with(std::cell::Cell::get)
    }

    #[test]
    fn a_commit_reaches_the_file_in_one_write_and_readers_see_it_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("db");
        let mut conn = writer(&path, "NORMAL");
        conn.execute_batch("CREATE TABLE t (x BLOB)")
            .expect("creates");
        let other = reader(&path);
        for commit in 1..=20_i64 {
            let before = writes();
            let tx = conn.transaction().expect("begins");
            for _ in 0..10 {
                tx.execute("INSERT INTO t VALUES (?)", params![vec![7u8; 3000]])
                    .expect("inserts");
            }
            tx.commit().expect("commits");
            let (received, written) = writes();
            // Ten rows of 3000 bytes dirty at least ten pages: twenty writes from SQLite.
            assert!(
                received - before.0 >= 20,
                "SQLite wrote {} times",
                received - before.0
            );
            assert_eq!(
                written - before.1,
                1,
                "one write reaches the file per commit"
            );
            assert_eq!(rows(&other), (commit * 10, commit * 30_000));
        }
        assert_eq!(integrity(&other), "ok");
    }

    /// The paths where SQLite writes the WAL other than by appending a commit's frames: a
    /// transaction larger than the page cache (frames written before the commit, then rewritten
    /// in place, then their checksums), one rolled back after that, a WAL restarted by a
    /// checkpoint (a new header at offset 0) and truncated to `journal_size_limit`. The large
    /// transactions also buffer more than the default VFS writes in one call.
    #[test]
    fn spills_rollbacks_and_restarts_keep_the_database_whole() {
        for synchronous in ["NORMAL", "FULL"] {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("db");
            let mut conn = writer(&path, synchronous);
            conn.execute_batch(
                "PRAGMA cache_size = 8; PRAGMA journal_size_limit = 65536; \
                 CREATE TABLE t (x BLOB); CREATE INDEX t_x ON t (x);",
            )
            .expect("configures");
            let insert = |conn: &mut Connection, n: usize, seed: u8, commit: bool| {
                let tx = conn.transaction().expect("begins");
                for i in 0..n {
                    let mut row = vec![seed; 1500];
                    row[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    tx.execute("INSERT INTO t VALUES (?)", params![row])
                        .expect("inserts");
                    if i % 50 == 0 {
                        // Changes pages already spilled to the WAL in this transaction.
                        tx.execute("UPDATE t SET x = x WHERE rowid % 7 = 0", [])
                            .expect("updates");
                    }
                }
                if commit {
                    tx.commit().expect("commits");
                } else {
                    tx.rollback().expect("rolls back");
                }
            };
            let other = reader(&path);
            insert(&mut conn, 400, 1, true);
            assert_eq!(rows(&other), (400, 600_000));
            insert(&mut conn, 400, 2, false);
            assert_eq!(rows(&other), (400, 600_000));
            insert(&mut conn, 100, 3, true);
            assert_eq!(rows(&other), (500, 750_000));
            let (busy, _, _): (i64, i64, i64) = other
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .expect("checkpoints");
            assert_eq!(busy, 0, "the restart got its locks");
            for round in 0..5 {
                insert(&mut conn, 30, 4 + round, true);
            }
            assert_eq!(rows(&other), (650, 975_000));
            assert_eq!(integrity(&other), "ok");
            drop(other);
            drop(conn);
            let reopened = reader(&path);
            assert_eq!(rows(&reopened), (650, 975_000));
            assert_eq!(integrity(&reopened), "ok", "synchronous={synchronous}");
        }
    }
}
