//! Background WAL checkpoints for the SQLite store.
//!
//! A commit is durable once its frames are in the WAL (`synchronous=FULL` syncs it). Copying
//! those pages into the database file (the checkpoint) is left to a thread, so a commit does not
//! wait for it: SQLite's automatic checkpoint would otherwise run at the end of the commit that
//! crosses its threshold and write every page a second time before the commit returns. The
//! thread runs a `PASSIVE` checkpoint after commits (coalesced), which never blocks readers or
//! writers; a crash in between loses nothing (the WAL is replayed on open), and the last
//! connection to close checkpoints what is left.

use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// The checkpoint thread of one store; stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    poke: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to the database at `path`.
    pub(crate) fn start(path: &Path) -> std::io::Result<Self> {
        let path = path.to_path_buf();
        let (poke, rx) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new().name("outcore-checkpoint".into()).spawn(move || {
            let conn = match super::connect(&path, super::Access::ReadWrite) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "no background checkpoints: cannot connect");
                    return;
                }
            };
            while rx.recv().is_ok() {
                // A failed or partial checkpoint is retried after the next commit.
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "background checkpoint failed");
                }
            }
        })?;
        Ok(Self { poke: Some(poke), thread: Some(thread) })
    }

    /// Asks for a checkpoint soon (requests made while one is pending are merged).
    pub(crate) fn poke(&self) {
        if let Some(p) = &self.poke {
            match p.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.poke.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
