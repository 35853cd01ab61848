//! Record data: small data in the `data_blobs` table, large data as one file per key under
//! `data/`.
//!
//! A writer buffers up to [`INLINE_LIMIT`] bytes in memory; data that stays that small goes to
//! the database (one row insert instead of a file, an fsync and a directory fsync). Beyond
//! that it spills to a temporary file `data/<unique>.partial`, which
//! [`DataWriter::finish`] flushes, fsyncs and renames to `data/<name>`, then fsyncs `data/` so the
//! rename itself survives a crash. The engine commits the message that references the data only
//! after `finish`, so a message never points to data that could vanish; the reverse (data whose
//! message commit was lost) is harmless garbage.
//!
//! File names are the SHA-256 of the key (tenant, record id, data CID), each part length-prefixed
//! so no two keys collide: tenants and record ids are arbitrary strings (DIDs hold `:` and can be
//! longer than a file name may be), and the hash keeps tenants apart on disk as `tenant = ?` does
//! in SQL.
//!
//! A dropped writer removes its temporary file. Temporary files a killed process left behind are
//! removed at the next open once they are an hour old (younger ones may belong to a live process
//! sharing the directory).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Shared;
use crate::{DataBlob, DataKey, DataWriter, StoreError};

/// Data up to this size is kept in the database: the engine's own inline limit
/// (`maxDataSizeAllowedToBeEncoded`), below which it rarely hands data to a writer at all.
pub(crate) const INLINE_LIMIT: usize = 30_000;

const PARTIAL_SUFFIX: &str = ".partial";
const STALE_PARTIAL_AGE: Duration = Duration::from_secs(3600);
const READ_CHUNK: usize = 64 * 1024;

/// The final path of the data of `key` for `tenant`.
pub(crate) fn data_path(data_dir: &Path, tenant: &str, key: &DataKey) -> PathBuf {
    let mut hasher = Sha256::new();
    for part in [tenant, &key.record_id, &key.data_cid] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut name = String::with_capacity(64);
    for byte in digest.iter() {
        name.push_str(&format!("{byte:02x}"));
    }
    data_dir.join(name)
}

fn partial_path(data_dir: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    data_dir.join(format!(
        "{}-{nanos}-{n}{PARTIAL_SUFFIX}",
        std::process::id()
    ))
}

/// Removes temporary files older than [`STALE_PARTIAL_AGE`] (see the module documentation).
pub(crate) fn remove_stale_partials(data_dir: &Path) -> Result<(), StoreError> {
    let now = SystemTime::now();
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry
            .file_name()
            .to_string_lossy()
            .ends_with(PARTIAL_SUFFIX)
        {
            continue;
        }
        let age = entry
            .metadata()?
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok());
        if age.is_some_and(|age| age > STALE_PARTIAL_AGE) {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
                _ => {
                    tracing::info!(path = %entry.path().display(), "removed a stale partial data file")
                }
            }
        }
    }
    Ok(())
}

/// Makes a directory entry change (create, rename, unlink) in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Removes a data file, ignoring one that is already gone.
pub(crate) fn remove_file(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

pub(crate) struct SqliteDataWriter {
    shared: Arc<Shared>,
    tenant: String,
    buffer: Vec<u8>,
    /// The temporary file, once the data outgrew [`INLINE_LIMIT`].
    file: Option<tokio::fs::File>,
    /// Its path, kept until the rename succeeded so that Drop removes the file on every other
    /// path (errors, a dropped writer, a cancelled `finish`).
    partial: Option<PathBuf>,
}

impl SqliteDataWriter {
    pub(crate) fn new(shared: Arc<Shared>, tenant: &str) -> Self {
        SqliteDataWriter {
            shared,
            tenant: tenant.to_owned(),
            buffer: Vec::new(),
            file: None,
            partial: None,
        }
    }
}

impl Drop for SqliteDataWriter {
    fn drop(&mut self) {
        // Close first: some systems refuse to unlink an open file.
        drop(self.file.take());
        if let Some(path) = self.partial.take()
            && let Err(e) = remove_file(&path)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a partial data file");
        }
    }
}

#[async_trait::async_trait]
impl DataWriter for SqliteDataWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        if self.partial.is_none() {
            if self.buffer.len() + chunk.len() <= INLINE_LIMIT {
                self.buffer.extend_from_slice(chunk);
                return Ok(());
            }
            let path = partial_path(&self.shared.data_dir);
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await?;
            self.partial = Some(path);
            let file = self.file.insert(file);
            file.write_all(&std::mem::take(&mut self.buffer)).await?;
        }
        match &mut self.file {
            Some(file) => file.write_all(chunk).await?,
            None => {
                return Err(StoreError::Io(std::io::Error::other(
                    "data writer used after a failed finish",
                )));
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>, key: DataKey) -> Result<(), StoreError> {
        let (Some(mut file), Some(partial)) = (self.file.take(), self.partial.clone()) else {
            let buffer = std::mem::take(&mut self.buffer);
            let tenant = self.tenant.clone();
            return self
                .shared
                .with_writer(move |conn| {
                    // Same key, same content (the key holds its CID): an existing row is kept.
                    conn.prepare_cached(
                        "INSERT INTO data_blobs (tenant, record_id, data_cid, data) VALUES (?, ?, ?, ?) \
                         ON CONFLICT (tenant, record_id, data_cid) DO NOTHING",
                    )?
                    .execute(rusqlite::params![tenant, key.record_id, key.data_cid, buffer])?;
                    Ok(())
                })
                .await;
        };
        file.flush().await?;
        file.sync_data().await?;
        drop(file);
        let target = data_path(&self.shared.data_dir, &self.tenant, &key);
        let data_dir = self.shared.data_dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // rename replaces an existing file atomically; its content is the same anyway.
            fs::rename(&partial, &target)?;
            sync_dir(&data_dir)
        })
        .await
        .map_err(|e| std::io::Error::other(format!("data file task failed: {e}")))??;
        self.partial = None;
        Ok(())
    }
}

/// Opens the data of `key`: from the database if it is small, else from its file.
pub(crate) async fn get(
    shared: &Arc<Shared>,
    tenant: &str,
    key: &DataKey,
) -> Result<Option<DataBlob>, StoreError> {
    let row: Option<Vec<u8>> = shared.with_reader(|conn| {
        let mut stmt = conn.prepare_cached(
            "SELECT data FROM data_blobs WHERE tenant = ? AND record_id = ? AND data_cid = ?",
        )?;
        let mut rows = stmt.query(rusqlite::params![tenant, key.record_id, key.data_cid])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    })?;
    if let Some(data) = row {
        let size = data.len() as u64;
        let stream = futures_util::stream::iter([Ok(Bytes::from(data))]);
        return Ok(Some(DataBlob {
            size,
            stream: Box::pin(stream),
        }));
    }
    let file = match tokio::fs::File::open(data_path(&shared.data_dir, tenant, key)).await {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let size = file.metadata().await?.len();
    // An open file stays readable if the data is deleted meanwhile (POSIX unlink semantics).
    let stream = futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let n = file.read_buf(&mut buf).await?;
        Ok((n > 0).then(|| (buf.freeze(), file)))
    });
    Ok(Some(DataBlob {
        size,
        stream: Box::pin(stream),
    }))
}

/// Removes the data of `key`, wherever it is.
pub(crate) async fn delete(shared: &Shared, tenant: &str, key: &DataKey) -> Result<(), StoreError> {
    let (owned_tenant, owned_key) = (tenant.to_owned(), key.clone());
    shared
        .with_writer(move |conn| {
            conn.prepare_cached(
                "DELETE FROM data_blobs WHERE tenant = ? AND record_id = ? AND data_cid = ?",
            )?
            .execute(rusqlite::params![
                owned_tenant,
                owned_key.record_id,
                owned_key.data_cid
            ])?;
            Ok(())
        })
        .await?;
    remove_file(&data_path(&shared.data_dir, tenant, key))?;
    Ok(())
}
