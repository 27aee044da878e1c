//! The shared memory of group commit: a file in `/dev/shm` mapped by every process of the
//! machine that commits to one database, a futex word to wait on, and [`LEADERS`] locks (OFD,
//! bytes 8 and up) whose holders send the next groups. Every user holds a read lock on byte 0;
//! the last one to close removes the file.
//!
//! # Layout
//! A header page (format magic, the epoch futex word, the queue sequence, each leader's server
//! process), then [`SLOTS`] slots, each a header page of atomics and [`SLOT_BYTES`] of payload.
//! Payload bytes are only copied in and out through raw pointers, by the one process that owns
//! the slot in its current state (the state word's release/acquire orders them).
//!
//! # References
//! `futex(2)` (shared, not `FUTEX_PRIVATE_FLAG`: the word is in a shared file mapping),
//! `fcntl(2)` open file description locks (released by the kernel when the holder dies),
//! `mmap(2)`.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Request slots (commits queued at once on one machine).
pub(crate) const SLOTS: usize = 32;
/// Bytes of a slot's payload: a bigger commit goes alone.
pub(crate) const SLOT_BYTES: usize = 1 << 20;
const PAGE: usize = 4096;
/// Payload bytes of a slot kept allocated after its request was read (see `shrink_payload`).
const KEPT_BYTES: usize = 64 << 10;
/// Bytes of the leader's server-process start time kept in the header.
pub(crate) const START_BYTES: usize = 64;
/// Layout version; a file of another layout is not used.
const MAGIC: u64 = 0x6f75_7463_6f72_6702; // "outcorg" + version 2

/// Slot states.
pub(crate) const FREE: u32 = 0;
/// Its owner is writing a request.
pub(crate) const WRITING: u32 = 1;
/// A request waits for a leader.
pub(crate) const QUEUED: u32 = 2;
/// The leader wrote the result.
pub(crate) const DONE: u32 = 4;
/// Its owner stopped waiting for a leader that took it and never answered: that leader, if it
/// ever answers, frees the slot instead.
pub(crate) const ABANDONED: u32 = 8;
/// `TAKEN + k`: the holder of leader lock `k` took the request and is sending it.
pub(crate) const TAKEN: u32 = 16;

/// Offsets in the header page.
const H_MAGIC: usize = 0;
const H_EPOCH: usize = 8;
const H_SEQ: usize = 16;
/// Per leader lock `k`: at `H_LEADERS + k * H_LEADER_BYTES`, its server process id (i32), the
/// length of its start time, then the start time.
const H_LEADERS: usize = 256;
const H_LEADER_BYTES: usize = 128;
const L_PID: usize = 0;
const L_START_LEN: usize = 4;
const L_START: usize = 8;

/// Offsets in a slot's header page.
const S_STATE: usize = 0;
const S_PID: usize = 4;
const S_LEN: usize = 8;
const S_SEQ: usize = 16;

/// Leader locks: up to this many groups are in flight at once (one sent while the one before
/// it runs on the server, so the server never waits for a client between groups).
pub(crate) const LEADERS: usize = 2;

fn slot_base(i: usize) -> usize {
    PAGE + i * (PAGE + SLOT_BYTES)
}

const FILE_BYTES: usize = PAGE + SLOTS * (PAGE + SLOT_BYTES);

/// One process's mapping of the shared file.
pub(crate) struct Shared {
    /// Holds the read lock on [`USER_BYTE`] while mapped.
    file: File,
    path: std::path::PathBuf,
    ptr: *mut u8,
}

// SAFETY: the mapping is plain shared memory; every access goes through atomics or raw copies
// whose exclusivity the slot protocol provides, from any thread.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    /// Opens (creating if needed, mode 0600) and maps `path`. `None` when another layout
    /// version uses the file.
    pub fn open(path: &std::path::Path) -> io::Result<Option<Self>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        if !ofd_lock(&file, libc::F_RDLCK as libc::c_short, USER_BYTE)? {
            // The last user is removing it: nothing to group with.
            return Ok(None);
        }
        if file.metadata()?.len() < FILE_BYTES as u64 {
            // Sparse: pages are allocated when first written. Two processes growing it race
            // harmlessly (same length).
            file.set_len(FILE_BYTES as u64)?;
        }
        // Every page written through the mapping outside a payload is allocated here: a full
        // tmpfs then fails this call instead of raising SIGBUS at a store (payloads are
        // allocated before each write, see `reserve`).
        allocate(&file, 0, PAGE)?;
        for i in 0..SLOTS {
            allocate(&file, slot_base(i), 2 * PAGE)?;
        }
        // SAFETY: a fresh shared mapping of the whole file at an address the kernel picks;
        // nothing else is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                FILE_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let me = Self { file, path: path.to_path_buf(), ptr: ptr.cast() };
        let magic = me.u64_at(H_MAGIC);
        match magic.compare_exchange(0, MAGIC, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(Some(me)),
            Err(m) if m == MAGIC => Ok(Some(me)),
            Err(_) => Ok(None),
        }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off + 4 <= FILE_BYTES);
        // SAFETY: in the mapping (which lives as long as `self`), 4-aligned (the mapping is
        // page-aligned); shared memory is only ever accessed atomically at these offsets.
        unsafe { &*self.ptr.add(off).cast::<AtomicU32>() }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off + 8 <= FILE_BYTES);
        // SAFETY: as in `u32_at`, 8-aligned.
        unsafe { &*self.ptr.add(off).cast::<AtomicU64>() }
    }

    /// The futex word bumped after each group.
    pub fn epoch(&self) -> &AtomicU32 {
        self.u32_at(H_EPOCH)
    }

    /// The next queue sequence number.
    pub fn next_seq(&self) -> u64 {
        self.u64_at(H_SEQ).fetch_add(1, Ordering::AcqRel)
    }

    /// A slot's state word.
    pub fn state(&self, i: usize) -> &AtomicU32 {
        self.u32_at(slot_base(i) + S_STATE)
    }

    /// The process owning slot `i`.
    pub fn owner(&self, i: usize) -> &AtomicU32 {
        self.u32_at(slot_base(i) + S_PID)
    }

    /// The payload length of slot `i`.
    pub fn len(&self, i: usize) -> &AtomicU32 {
        self.u32_at(slot_base(i) + S_LEN)
    }

    /// The queue order of slot `i`.
    pub fn seq(&self, i: usize) -> &AtomicU64 {
        self.u64_at(slot_base(i) + S_SEQ)
    }

    /// Allocates the pages of slot `i`'s first `len` payload bytes (a full tmpfs is an error
    /// here, not a SIGBUS when they are written). The caller owns the slot.
    pub fn reserve(&self, i: usize, len: usize) -> io::Result<()> {
        assert!(i < SLOTS && len <= SLOT_BYTES, "payload beyond its slot");
        allocate(&self.file, slot_base(i) + PAGE, len.max(1))
    }

    /// Copies `data` (at most [`SLOT_BYTES`], reserved) into slot `i`'s payload. The caller owns
    /// the slot in its current state.
    pub fn write_payload(&self, i: usize, data: &[u8]) {
        assert!(i < SLOTS && data.len() <= SLOT_BYTES, "payload beyond its slot");
        // SAFETY: the payload area of slot `i` lies in the mapping (checked above); the slot
        // protocol gives its owner exclusive use of it; no reference to it is formed.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(slot_base(i) + PAGE), data.len()) };
    }

    /// Copies `len` payload bytes of slot `i` out. The caller owns the slot in its state.
    pub fn read_payload(&self, i: usize, len: usize) -> Vec<u8> {
        assert!(i < SLOTS && len <= SLOT_BYTES, "payload beyond its slot");
        let mut out = vec![0u8; len];
        // SAFETY: as in `write_payload`, reading.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(slot_base(i) + PAGE), out.as_mut_ptr(), len) };
        out
    }

    /// Gives slot `i`'s payload pages beyond its first [`KEPT_BYTES`] back to the system (a
    /// request read): small requests reuse their pages (no allocation, zeroing and unmapping
    /// from every process per commit), a big one does not hold its memory.
    pub fn shrink_payload(&self, i: usize) {
        let at = (slot_base(i) + PAGE + KEPT_BYTES) as libc::off_t;
        // SAFETY: fallocate on an owned descriptor with integer arguments; the range is the
        // slot's payload, which only the caller (its current owner) uses.
        unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                at,
                (SLOT_BYTES - KEPT_BYTES) as libc::off_t,
            );
        }
    }

    /// Records the server process (pid, start time) of the group leader lock `k` sends; read
    /// by whoever finds that group's requests orphaned. The caller holds lock `k`.
    pub fn set_leader(&self, k: usize, pid: i32, start: &str) {
        assert!(k < LEADERS);
        let base = H_LEADERS + k * H_LEADER_BYTES;
        let bytes = &start.as_bytes()[..start.len().min(START_BYTES)];
        // SAFETY: the start-time area of leader `k` lies in the header page; only the holder of
        // lock `k` writes it (and others read it after taking that lock), no reference is formed.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(base + L_START), bytes.len()) };
        self.u32_at(base + L_START_LEN).store(bytes.len() as u32, Ordering::Release);
        // SAFETY: `AtomicI32` has the layout of `AtomicU32`; see `u32_at`.
        let p = unsafe { &*self.ptr.add(base + L_PID).cast::<AtomicI32>() };
        p.store(pid, Ordering::Release);
    }

    /// The server process of the last group of leader lock `k` (see
    /// [`set_leader`](Self::set_leader)).
    pub fn leader(&self, k: usize) -> (i32, String) {
        let base = H_LEADERS + k.min(LEADERS - 1) * H_LEADER_BYTES;
        // SAFETY: as in `set_leader`.
        let pid = unsafe { &*self.ptr.add(base + L_PID).cast::<AtomicI32>() }.load(Ordering::Acquire);
        let len = (self.u32_at(base + L_START_LEN).load(Ordering::Acquire) as usize).min(START_BYTES);
        let mut b = vec![0u8; len];
        // SAFETY: as in `set_leader`, reading.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(base + L_START), b.as_mut_ptr(), len) };
        (pid, String::from_utf8_lossy(&b).into_owned())
    }

    /// Takes a free leader lock (`only`: that one) if there is one: its number and the lock
    /// (released on drop, or by the kernel when the process dies).
    pub fn try_lead(&self, only: Option<usize>) -> io::Result<Option<(usize, LeaderLock)>> {
        // A descriptor of its own: OFD locks belong to an open file description, so each
        // attempt (each thread) competes with every other one, in this process too. Opened
        // for the attempt and closed with the lock, never kept: a descriptor kept open would
        // be shared with every child forked meanwhile (Python's `multiprocessing`), and a lock
        // taken on it later would outlive this process's death while a child lives.
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&self.path)?;
        for k in 0..LEADERS {
            if only.is_some_and(|o| o != k) {
                continue;
            }
            if ofd_lock(&f, libc::F_WRLCK as libc::c_short, LEADER_BYTES + k as u64)? {
                return Ok(Some((k, LeaderLock { _file: f })));
            }
        }
        Ok(None)
    }

    /// Sleeps until the epoch differs from `seen`, a wake, or `timeout`.
    pub fn wait_epoch(&self, seen: u32, timeout: Duration) {
        let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
        let word = self.epoch() as *const AtomicU32;
        // SAFETY: FUTEX_WAIT on a 4-aligned word of a live shared mapping, with a valid timespec;
        // the kernel only reads the word.
        unsafe {
            libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAIT, seen, &ts as *const libc::timespec);
        }
    }

    /// Bumps the epoch and wakes every waiter.
    pub fn bump_epoch(&self) {
        self.epoch().fetch_add(1, Ordering::AcqRel);
        let word = self.epoch() as *const AtomicU32;
        // SAFETY: FUTEX_WAKE on a word of a live shared mapping.
        unsafe {
            libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, i32::MAX);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last user removes the file (a process opening it meanwhile keeps the old one, and
        // groups with the processes that open it after it: both stay correct).
        if ofd_lock(&self.file, libc::F_WRLCK as libc::c_short, USER_BYTE).unwrap_or(false) {
            let _ = std::fs::remove_file(&self.path);
        }
        // SAFETY: unmaps exactly the mapping made in `open`; no reference into it outlives
        // `self` (accessors borrow `self`).
        unsafe { libc::munmap(self.ptr.cast(), FILE_BYTES) };
    }
}

/// The leader lock, held while a group is taken, sent and answered.
pub(crate) struct LeaderLock {
    _file: File,
}

/// The byte every user holds a read lock on while it has the file open.
const USER_BYTE: u64 = 0;
/// Leader lock `k` is the write lock on byte `LEADER_BYTES + k`.
const LEADER_BYTES: u64 = 8;

/// Sets an OFD lock of `kind` on byte `at` of `f` without waiting; false when it conflicts.
fn ofd_lock(f: &File, kind: libc::c_short, at: u64) -> io::Result<bool> {
    crate::ofd::lock(f, kind, at, 1, false)
}

/// Allocates `[at, at + len)` of `f` (`fallocate` mode 0: the pages exist afterwards).
fn allocate(f: &File, at: usize, len: usize) -> io::Result<()> {
    // SAFETY: fallocate on an owned descriptor with integer arguments.
    if unsafe { libc::fallocate(f.as_raw_fd(), 0, at as libc::off_t, len as libc::off_t) } == 0 {
        return Ok(());
    }
    Err(io::Error::last_os_error())
}

/// Removes the group files of user `uid` in `dir` that no process has open (left by processes
/// that ended without closing them).
pub(crate) fn remove_stale(dir: &std::path::Path, uid: u32) {
    let prefix = format!("outcore-commits-{uid}-");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(e.path()) else { continue };
        if ofd_lock(&f, libc::F_WRLCK as libc::c_short, USER_BYTE).unwrap_or(false) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// This process's user id (group files are per user).
pub(crate) fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Whether process `pid` is gone (a slot it owns can be reclaimed).
pub(crate) fn process_gone(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file some process has open stays; one nobody has open (its process ended without
    /// closing it) is removed; the last user to close a file removes it.
    #[test]
    fn stale_files_are_removed_and_open_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (live, stale) = (
            dir.path().join(format!("outcore-commits-{}-1", uid())),
            dir.path().join(format!("outcore-commits-{}-2", uid())),
        );
        let other = dir.path().join("outcore-commits-unrelated");
        let shared = Shared::open(&live).unwrap().expect("a new file");
        std::fs::write(&stale, b"").unwrap();
        std::fs::write(&other, b"").unwrap();
        remove_stale(dir.path(), uid());
        assert!(live.exists() && other.exists() && !stale.exists());
        let second = Shared::open(&live).unwrap().expect("the same file");
        drop(shared);
        assert!(live.exists(), "a user still has it");
        drop(second);
        assert!(!live.exists(), "the last user removed it");
    }

    /// Two requests in flight at once at most: the leader locks are distinct and exclusive.
    #[test]
    fn leader_locks_are_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let s = Shared::open(&dir.path().join("g")).unwrap().unwrap();
        let (a, _la) = s.try_lead(None).unwrap().unwrap();
        let (b, lb) = s.try_lead(None).unwrap().unwrap();
        assert_ne!(a, b);
        assert!(s.try_lead(None).unwrap().is_none());
        assert!(s.try_lead(Some(b)).unwrap().is_none());
        drop(lb);
        assert_eq!(s.try_lead(Some(b)).unwrap().map(|(k, _)| k), Some(b));
    }
}
