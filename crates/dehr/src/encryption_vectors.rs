//! Hidden commands for the interoperability suite's encryption tests (being written).

use anyhow::Result;

/// `dehr encryption-vectors`: records encrypted by DeHR, one JSON line each.
pub fn run_vectors() -> Result<()> {
    anyhow::bail!("not written yet")
}

/// `dehr open-encrypted`: opens records encrypted by dwn-sdk-js, read as JSON lines on stdin.
pub fn run_open() -> Result<()> {
    anyhow::bail!("not written yet")
}
