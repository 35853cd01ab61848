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
//! now, with [`HURRY`], depending on the machine). So the checkpointer closes a gate that the
//! writer's leader passes before each round of transactions, waits for the round under way to
//! end, and only then asks for the write lock ([`Wake::round`]). A WAL that wraps around in
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

use super::database_sync;
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

/// A catch-up round longer than this is the last before a restart, except the first, which
/// carries the long database sync ([`catch_up`]).
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

    /// Called by the writer's leader around each round of transactions: while the checkpointer
    /// restarts the WAL, waits for it to finish (at most [`MAX_PAUSE`]), and holds a restart
    /// back until the round has ended (when the guard is dropped).
    pub(crate) fn round(&self) -> Round<'_> {
        self.restart.begin_round();
        Round {
            gate: &self.restart,
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        self.signal.lock().closed = true;
        self.signal.changed.notify_one();
    }
}

/// A round of the writer's transactions; see [`Wake::round`].
pub(crate) struct Round<'a> {
    gate: &'a RestartGate,
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        self.gate.end_round();
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

/// Keeps the writer's leader and a `RESTART` checkpoint apart: the leader marks each round of
/// transactions ([`RestartGate::begin_round`]), and the checkpointer closes the gate, waits for
/// the round under way to end, and only then asks SQLite for the write lock, which is then free
/// (unless the wait timed out: SQLite's busy handler takes over, as it did before).
///
/// Before, the gate only stopped new rounds: the `RESTART` asked for the write lock while a
/// round could still be applying, and on a refusal SQLite's busy handler slept 1 ms, then 2, then
/// 5 (such sleeps showed in profiles of `dehr bench`), while a round takes about a millisecond.
///
/// One `writing` flag suffices because rounds never overlap: the leader applies them holding
/// the writing connection.
struct RestartGate {
    state: Mutex<GateState>,
    changed: Condvar,
    /// The longest either side waits for the other ([`MAX_PAUSE`]; longer in tests).
    max_wait: Duration,
}

#[derive(Default)]
struct GateState {
    /// The checkpointer restarts the WAL, or waits to: no new round starts.
    closed: bool,
    /// The writer's leader is applying a round.
    writing: bool,
}

impl RestartGate {
    fn new(max_wait: Duration) -> Self {
        RestartGate {
            state: Mutex::default(),
            changed: Condvar::new(),
            max_wait,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // Plain flags: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the gate and waits until no round is under way (at most `max_wait`).
    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let _ = self
            .changed
            .wait_timeout_while(state, self.max_wait, |state| state.writing);
    }

    fn open(&self) {
        self.lock().closed = false;
        self.changed.notify_all();
    }

    /// Waits while the gate is closed (at most `max_wait`), then marks a round as started.
    fn begin_round(&self) {
        let mut state = self.lock();
        if state.closed {
            state = self
                .changed
                .wait_timeout_while(state, self.max_wait, |state| state.closed)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        debug_assert!(!state.writing, "rounds of the writer overlap");
        state.writing = true;
    }

    fn end_round(&self) {
        let mut state = self.lock();
        state.writing = false;
        // Only a closed gate has a checkpointer waiting for this (it checks `writing` under the
        // same lock after closing, so none is missed); waking nobody still costs a system call.
        if state.closed {
            drop(state);
            self.changed.notify_all();
        }
    }
}

impl Checkpointer {
    pub(crate) fn start(conn: Connection) -> Result<(Self, Wake), StoreError> {
        let signal = Arc::new(Signal::default());
        let restart = Arc::new(RestartGate::new(MAX_PAUSE));
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
                let first_round = round.elapsed();
                match catch_up(conn, *frames) {
                    CatchUp::Restart(frames) => {
                        let catch_up_time = round.elapsed() - first_round;
                        restart_wal(conn, restart, frames, first_round, catch_up_time);
                    }
                    CatchUp::RestartedOnItsOwn => {}
                    CatchUp::SyncFailed => return,
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

/// The `RESTART` checkpoint, with writers held at the gate.
fn restart_wal(
    conn: &Connection,
    gate: &RestartGate,
    frames: i64,
    first_round: Duration,
    catch_up_time: Duration,
) {
    let pause = Instant::now();
    gate.close();
    let busy = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
        row.get::<_, i64>(0)
    });
    gate.open();
    match busy {
        // What the restart cost writers: `pause_ms`, from closing the gate (which waits for the
        // round under way) to reopening it.
        Ok(0) => tracing::debug!(
            frames,
            first_round_ms = first_round.as_secs_f64() * 1e3,
            catch_up_ms = catch_up_time.as_secs_f64() * 1e3,
            pause_ms = pause.elapsed().as_secs_f64() * 1e3,
            "WAL restarted"
        ),
        // Readers kept the WAL for the whole busy timeout; the next round retries.
        Ok(_) => tracing::debug!(frames, "WAL restart checkpoint was kept waiting"),
        Err(e) => tracing::warn!(error = %e, frames, "WAL restart checkpoint failed"),
    }
}

/// A `PASSIVE` checkpoint: copies the frames in the WAL when it starts and returns their number.
fn passive(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}

/// How a catch-up ([`catch_up`]) ended.
enum CatchUp {
    /// Little is left to copy: restart now, the WAL holding this many frames.
    Restart(i64),
    /// A commit found the WAL all copied back and no reader in it, and started it afresh: no
    /// restart is needed.
    RestartedOnItsOwn,
    /// The database file could not be synced. The checkpointer stops: see [`catch_up`].
    SyncFailed,
}

/// Before writers pause for a restart, copies the frames they appended during the last
/// `PASSIVE` with more `PASSIVE` rounds, each followed by an fsync of the database file,
/// without pausing them, for as long as rounds are short and each has less to copy than the one
/// before: the `RESTART` then copies and syncs only what came during the last round.
///
/// Why the database fsync here: a `PASSIVE` round that cannot copy everything (writers append
/// meanwhile, so under load none can) does not sync the database file; SQLite syncs it when a
/// checkpoint copies the whole WAL, which under load is only the `RESTART`, so that one synced
/// every page copied since the last restart while writers waited. On the development VM that
/// fsync took 17–20 ms (a trace of the checkpointer's system calls) and restarts paused writers
/// for a median of ~13 ms (`dehr bench` with this module's debug log); synced here, outside the
/// pause, the `RESTART`'s own fsync covers the last round only, and the median pause fell to
/// 2–6 ms (BENCHMARKS.md, run 10). When it succeeds, the sync only flushes early pages that
/// SQLite syncs anyway before the WAL is reused.
///
/// When it fails, the checkpointer stops for good ([`CatchUp::SyncFailed`]): Linux reports a
/// failed write-back once per open file, and this sync goes through SQLite's own file, so
/// SQLite's next sync could succeed over pages that never reached the disk, and the WAL, which
/// still holds them, would be reused. Without checkpoints the WAL keeps every commit and grows;
/// the error tells the operator to check the disk and restart, which replays the WAL.
///
/// Without the extra rounds, the `RESTART` copied under the write lock everything written while
/// the `PASSIVE` that found the WAL too large ran. A round longer than [`CATCH_UP_ROUND`] ends
/// the catch-up (except the first, which carries the long database sync): writers appended as
/// much during it as a restart would copy, and another round would only let the WAL grow. In
/// `the_wal_stays_bounded_under_sustained_writes`, whose writers append ~300 MB/s, the WAL
/// peaked at 230–350 MB without that limit and at 190–210 MB with it (130–155 MB in run 10).
fn catch_up(conn: &Connection, mut frames: i64) -> CatchUp {
    // What the previous round had to copy; no limit for the first comparison.
    let mut copied = i64::MAX;
    let mut last_round = Duration::ZERO;
    for i in 0..MAX_CATCH_UP_ROUNDS {
        if (i > 1 && last_round > CATCH_UP_ROUND) || frames > MAX_CATCH_UP_FRAMES {
            break;
        }
        let round = Instant::now();
        match passive(conn) {
            Ok(now) if now < frames => return CatchUp::RestartedOnItsOwn,
            Ok(now) => {
                if let Err(e) = database_sync::sync_database(conn) {
                    tracing::error!(
                        error = %e,
                        "could not sync the database file: checkpoints stop, the WAL keeps every \
                         write and grows; check the disk, then restart, which replays the WAL"
                    );
                    return CatchUp::SyncFailed;
                }
                last_round = round.elapsed();
                // What this round had to copy: the frames appended since the last one started.
                let appended = now - frames;
                tracing::trace!(
                    frames = now,
                    appended,
                    round_ms = last_round.as_secs_f64() * 1e3,
                    "WAL catch-up round"
                );
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
    CatchUp::Restart(frames)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::RestartGate;

    /// Far longer than any test waits: a wait that ends by timing out fails the test.
    const TEST_WAIT: Duration = Duration::from_secs(60);
    /// Bound on a wait that the other side ends, far below [`TEST_WAIT`].
    const PROMPT: Duration = Duration::from_secs(10);

    /// Runs `wait` on a thread; checks that it has not returned 100 ms after it started, then
    /// calls `release` and checks that it returns promptly (not by timing out).
    fn waits_until_released(wait: impl FnOnce() + Send + 'static, release: impl FnOnce()) {
        let (started_tx, started) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            started_tx.send(()).unwrap();
            wait();
            done_tx.send(()).unwrap();
        });
        started.recv().unwrap();
        assert!(
            done.recv_timeout(Duration::from_millis(100)).is_err(),
            "returned before being released"
        );
        release();
        done.recv_timeout(PROMPT).expect("not woken when released");
        thread.join().unwrap();
    }

    /// Closing the gate waits for the writer's round under way, so that the `RESTART` finds
    /// SQLite's write lock free, and is woken when the round ends.
    #[test]
    fn closing_waits_for_the_round_under_way() {
        let gate = Arc::new(RestartGate::new(TEST_WAIT));
        gate.begin_round();
        let (closer, ender) = (gate.clone(), gate.clone());
        waits_until_released(move || closer.close(), move || ender.end_round());
        gate.open();
    }

    /// A closed gate holds the next round back until it opens.
    #[test]
    fn a_round_waits_while_the_gate_is_closed() {
        let gate = Arc::new(RestartGate::new(TEST_WAIT));
        gate.close();
        let (writer, opener) = (gate.clone(), gate.clone());
        waits_until_released(move || writer.begin_round(), move || opener.open());
        gate.end_round();
    }

    /// With no round under way, closing does not wait.
    #[test]
    fn closing_an_idle_gate_does_not_wait() {
        let gate = RestartGate::new(TEST_WAIT);
        let start = Instant::now();
        gate.close();
        assert!(start.elapsed() < PROMPT);
        gate.open();
    }
}
