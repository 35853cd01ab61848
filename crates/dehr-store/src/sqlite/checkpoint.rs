//! The checkpointer thread: copies committed WAL frames back into the database file, off the
//! writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the threshold, on the
//! writing connection, so that commit waits for two fsyncs and a few megabytes of writes, and
//! every commit queued behind it waits too. Measured on the development VM (2 cores, ~240 MB/s
//! disk), moving checkpoints to their own connection raised sequential single-message commits
//! from ~1.5k/s to ~2.6k/s and concurrent ones from ~3.5–4.4k/s to ~7k/s.
//!
//! The writer signals this thread after each group commit (waking it only when it is idle). It
//! waits [`SETTLE`] so that a burst of commits is checkpointed once, then runs a `PASSIVE`
//! checkpoint, which never blocks the writer or readers. SQLite restarts the WAL from its beginning
//! once everything in it has been copied back and no reader still needs it; under sustained load
//! that moment may not come, so if the WAL grows beyond [`RESTART_FRAMES`] the checkpointer runs a
//! `RESTART` checkpoint, which makes the next commit start the WAL afresh: a stall that bounds the
//! file, kept short by first catching up with more `PASSIVE` rounds ([`catch_up`]), so that little
//! is left to copy and sync while writers wait. `RESTART` needs the write lock, which the writer,
//! committing group after group, almost never leaves free: SQLite's busy handler retried for its
//! whole timeout (5 s, with no checkpoint meanwhile), and the WAL grew to 236 MB in a 20,000-write
//! benchmark and to 1.3 GB in the test `the_wal_stays_bounded_under_sustained_writes` (100–210 MB
//! now, with [`HURRY`], depending on the machine). So the checkpointer first asks the writer to
//! pause before its next transaction ([`Wake::pause_for_restart`]). A WAL that wraps around in
//! place also spares the writer the file system's cost of growing a file (frames written past its
//! end make the kernel allocate and zero blocks): in profiles of 20,000 writes, the writer's
//! samples fell by ~10%.
//!
//! Durability is unaffected: a commit is durable (under the chosen `synchronous` level) once it
//! is in the WAL, and a checkpoint interrupted by a crash is redone from the WAL at the next
//! open.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StoreError;

/// How long to let commits accumulate before checkpointing. Each checkpoint writes every page
/// the WAL changed since the last one (and fsyncs), so hot pages (index leaves, the event
/// log's tail) are written once per checkpoint: with 10 ms the checkpointer took 270 ms of CPU
/// in an import of 3,574 records, with 100 ms 160 ms (`dehr bench --import`, BENCHMARKS.md).
const SETTLE: Duration = Duration::from_millis(100);

/// The wait instead of [`SETTLE`] while the WAL is filling fast: a round found more than
/// [`HURRY_FRAMES`] in it. Under sustained writes the WAL grew by ~80 MB during one `SETTLE`
/// (the test `the_wal_stays_bounded_under_sustained_writes` writes ~25 KB per commit), so the
/// restart came long after the WAL passed [`RESTART_FRAMES`]; rounds this close together keep
/// each `PASSIVE` short and the restart near the threshold.
const HURRY: Duration = Duration::from_millis(10);

/// WAL size (in frames) from which the next round waits only [`HURRY`] (as it does after a
/// restart, when the WAL has just started afresh).
const HURRY_FRAMES: i64 = RESTART_FRAMES / 8;

/// WAL size (in 4 KiB frames, so 32 MiB) beyond which a blocking `RESTART` checkpoint bounds it.
/// Well below `journal_size_limit` (see `configure_writing`), so that the file is not truncated
/// at each restart and grown again.
const RESTART_FRAMES: i64 = 8_192;

/// A catch-up round ([`catch_up`]) that had at most this many frames to copy is the last:
/// 1 MiB, which takes a few milliseconds to copy.
const CATCH_UP_DONE_FRAMES: i64 = 256;

/// A `PASSIVE` round longer than this is the last before a restart ([`catch_up`]).
const CATCH_UP_ROUND: Duration = Duration::from_millis(50);

/// At most this many extra `PASSIVE` rounds before a restart.
const MAX_CATCH_UP_ROUNDS: usize = 8;

/// The WAL size (in frames, 64 MiB) beyond which the catch-up gives up and the restart pauses the
/// writer whatever is left to copy, so that the WAL stays bounded.
const MAX_CATCH_UP_FRAMES: i64 = 2 * RESTART_FRAMES;

/// The longest the writer waits for a restart, so that a stuck checkpointer cannot stop writes.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Handle to the checkpointer thread; dropping it waits for the thread, which exits once the
/// [`Wake`] is gone.
pub(crate) struct Checkpointer {
    thread: Option<JoinHandle<()>>,
}

/// The writer's side of the checkpointer: tells it about commits, and pauses while it restarts
/// the WAL. Dropping it (the store closes) ends the checkpointer.
pub(crate) struct Wake {
    signal: Arc<Signal>,
    restart: Arc<RestartGate>,
}

impl Wake {
    /// Cheap, never blocks; wakes the thread only if it waits for commits. During a round
    /// (settling, checkpointing) the commit is only noted: waking the thread for every group
    /// commit just to go back to sleep cost ~6,000 context switches a second under load.
    pub(crate) fn wake(&self) {
        let mut state = self.signal.lock();
        state.pending = true;
        if state.idle {
            state.idle = false;
            drop(state);
            self.signal.changed.notify_one();
        }
    }

    /// Called by the writer's leader before each take of its queue: while the checkpointer
    /// waits to restart the WAL, waits for it to finish (at most [`MAX_PAUSE`]).
    pub(crate) fn pause_for_restart(&self) {
        self.restart.wait_until_open();
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        self.signal.lock().closed = true;
        self.signal.changed.notify_one();
    }
}

/// What the writer tells the checkpointer.
#[derive(Default)]
struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Default)]
struct SignalState {
    /// Commits since the last round began checkpointing.
    pending: bool,
    /// The checkpointer waits for a commit (and only then needs a notification).
    idle: bool,
    /// The writer is gone: the store is closing.
    closed: bool,
}

impl Signal {
    fn lock(&self) -> std::sync::MutexGuard<'_, SignalState> {
        // Plain flags: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a commit, then lets commits accumulate for `settle`; `false` once the store
    /// is closing (which ends the wait at once, so dropping the store does not wait it out).
    fn wait_for_round(&self, settle: Duration) -> bool {
        let mut state = self.lock();
        while !state.pending && !state.closed {
            state.idle = true;
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.idle = false;
        let (mut state, _) = self
            .changed
            .wait_timeout_while(state, settle, |state| !state.closed)
            .unwrap_or_else(|e| e.into_inner());
        // Commits until now are in the WAL and covered by the checkpoint that follows.
        state.pending = false;
        !state.closed
    }
}

/// Closed while the checkpointer wants the write lock for a `RESTART` checkpoint.
#[derive(Default)]
struct RestartGate {
    closed: Mutex<bool>,
    opened: Condvar,
}

impl RestartGate {
    fn set_closed(&self, closed: bool) {
        // The flag is a plain bool: a panic elsewhere cannot leave it inconsistent.
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = closed;
        if !closed {
            self.opened.notify_all();
        }
    }

    fn wait_until_open(&self) {
        let closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if *closed {
            let _ = self
                .opened
                .wait_timeout_while(closed, MAX_PAUSE, |closed| *closed);
        }
    }
}

impl Checkpointer {
    pub(crate) fn start(conn: Connection) -> Result<(Self, Wake), StoreError> {
        let signal = Arc::new(Signal::default());
        let restart = Arc::new(RestartGate::default());
        let (signalled, gate) = (signal.clone(), restart.clone());
        let thread = std::thread::Builder::new()
            .name("dehr-store-checkpoint".into())
            .spawn(move || run(&conn, &signalled, &gate))?;
        Ok((
            Checkpointer {
                thread: Some(thread),
            },
            Wake { signal, restart },
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

fn run(conn: &Connection, signal: &Signal, restart: &RestartGate) {
    let mut settle = SETTLE;
    while signal.wait_for_round(settle) {
        let round = Instant::now();
        let frames = passive(conn);
        let restarted = match &frames {
            Ok(frames) if *frames > RESTART_FRAMES => {
                if let Some(frames) = catch_up(conn, *frames, round.elapsed()) {
                    restart.set_closed(true);
                    let busy = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
                        row.get::<_, i64>(0)
                    });
                    restart.set_closed(false);
                    match busy {
                        Ok(0) => {}
                        // Readers kept the WAL for the whole busy timeout; the next round retries.
                        Ok(_) => tracing::debug!(frames, "WAL restart checkpoint was kept waiting"),
                        Err(e) => {
                            tracing::warn!(error = %e, frames, "WAL restart checkpoint failed")
                        }
                    }
                }
                true
            }
            Ok(_) => false,
            // The next wake-up retries; a persistent failure shows as a growing WAL.
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                false
            }
        };
        settle = if restarted || frames.is_ok_and(|frames| frames > HURRY_FRAMES) {
            HURRY
        } else {
            SETTLE
        };
    }
}

/// A `PASSIVE` checkpoint: copies the frames in the WAL when it starts and returns their number.
fn passive(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}

/// Before writers pause for a restart, copies the frames they appended during the last
/// `PASSIVE` (which took `last_round`) with more `PASSIVE`s, without pausing them, for as long
/// as rounds are short and each has less to copy than the one before: the `RESTART` then
/// copies and syncs only what came during the last round. Returns the WAL's size at that
/// round, or `None` if the WAL restarted on its own meanwhile (a commit found it all copied
/// back and no reader in it), so that no restart is needed.
///
/// Without this, the `RESTART` copied under the write lock everything written while the
/// `PASSIVE` that found the WAL too large ran, and synced it: on a VM whose fsyncs took
/// 50–250 ms, writers stood still for 170–850 ms per restart, ~40% of the time (strace of the
/// checkpointer, 2026-12-06). A round longer than [`CATCH_UP_ROUND`] ends the catch-up:
/// writers appended as much during it as a restart would copy, and another round would only
/// let the WAL grow. In `the_wal_stays_bounded_under_sustained_writes`, whose writers append
/// ~300 MB/s, the WAL peaked at 230–350 MB without that limit and at 190–210 MB with it.
fn catch_up(conn: &Connection, mut frames: i64, mut last_round: Duration) -> Option<i64> {
    // What the previous round had to copy; no limit for the first comparison.
    let mut copied = i64::MAX;
    for _ in 0..MAX_CATCH_UP_ROUNDS {
        if last_round > CATCH_UP_ROUND || frames > MAX_CATCH_UP_FRAMES {
            break;
        }
        let round = Instant::now();
        match passive(conn) {
            Ok(now) if now < frames => return None,
            Ok(now) => {
                last_round = round.elapsed();
                // What this round had to copy: the frames appended since the last one started.
                let appended = now - frames;
                frames = now;
                if appended <= CATCH_UP_DONE_FRAMES || appended >= copied {
                    break;
                }
                copied = appended;
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed while catching up for a restart");
                break;
            }
        }
    }
    Some(frames)
}
