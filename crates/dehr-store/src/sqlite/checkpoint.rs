//! The checkpointer thread: copies committed WAL frames back into the database file, off the
//! writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the threshold, on the
//! writing connection, so that commit waits for two fsyncs and a few megabytes of writes, and
//! every commit queued behind it waits too. Measured on the development VM (2 cores, ~240 MB/s
//! disk), moving checkpoints to their own connection raised sequential single-message commits
//! from ~1.5k/s to ~2.6k/s and concurrent ones from ~3.5–4.4k/s to ~7k/s.
//!
//! The writer wakes this thread after each group commit. It waits [`SETTLE`] so that a burst of
//! commits is checkpointed once, then runs a `PASSIVE` checkpoint, which never blocks the writer
//! or readers. SQLite restarts the WAL from its beginning once everything in it has been copied
//! back and no reader still needs it; under sustained load that moment may not come, so if the
//! WAL grows beyond [`RESTART_FRAMES`] the checkpointer runs a `RESTART` checkpoint, which waits
//! for the current writer and readers and then makes the next commit start the WAL afresh: a
//! short stall that bounds the file.
//!
//! Durability is unaffected: a commit is durable (under the chosen `synchronous` level) once it
//! is in the WAL, and a checkpoint interrupted by a crash is redone from the WAL at the next
//! open.

use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StoreError;

/// How long to let commits accumulate before checkpointing. Each checkpoint writes every page
/// the WAL changed since the last one (and fsyncs), so hot pages (index leaves, the event
/// log's tail) are written once per checkpoint: with 10 ms the checkpointer took 270 ms of CPU
/// in an import of 3,574 records, with 100 ms 160 ms (`dehr bench --import`, BENCHMARKS.md).
const SETTLE: Duration = Duration::from_millis(100);

/// WAL size (in 4 KiB frames, so 64 MiB) beyond which a blocking `RESTART` checkpoint bounds it.
const RESTART_FRAMES: i64 = 16_384;

/// Handle to the checkpointer thread; dropping it waits for the thread, which exits once every
/// [`Wake`] is gone.
pub(crate) struct Checkpointer {
    thread: Option<JoinHandle<()>>,
}

/// Wakes the checkpointer; cheap, never blocks.
pub(crate) struct Wake(SyncSender<()>);

impl Wake {
    pub(crate) fn wake(&self) {
        // A full channel means a wake-up is already pending; a closed one, that we are closing.
        let _ = self.0.try_send(());
    }
}

impl Checkpointer {
    pub(crate) fn start(conn: Connection) -> Result<(Self, Wake), StoreError> {
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("dehr-store-checkpoint".into())
            .spawn(move || run(&conn, &woken))?;
        Ok((
            Checkpointer {
                thread: Some(thread),
            },
            Wake(wake),
        ))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store's checkpointer thread panicked");
        }
    }
}

fn run(conn: &Connection, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        // Wake-ups during the wait are absorbed; a closing store (every Wake gone) ends the
        // wait at once, so dropping the store does not wait out SETTLE.
        let deadline = Instant::now() + SETTLE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if woken.recv_timeout(left).is_err() {
                break;
            }
        }
        let frames = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(1)
        });
        match frames {
            Ok(frames) if frames > RESTART_FRAMES => {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, frames, "WAL restart checkpoint failed");
                }
            }
            Ok(_) => {}
            // The next wake-up retries; a persistent failure shows as a growing WAL.
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}
