//! The reader registry of a local store (`<store>.readers`): which snapshots are open, in every
//! process on this host, so that a commit knows whether it may update block extents in place and
//! when a retired extent may be reused. Modelled on LMDB's reader table.
//!
//! Layout: byte 0 is the **gate**; bytes 8..24 the **home marker** (`boot u64, tid u64`: the
//! redo rows of commits up to `tid` were written home during the boot `boot`, so readers need
//! not replay them; after a reboot the page cache, and with it any home write not yet synced,
//! may be gone, and the marker no longer counts); from [`SLOTS_AT`] one [`SLOT`]-byte slot per process holding
//! the store open: `pid u32, n u32, nonce u64, tids [u64; 6]` (little endian; the nonce is
//! random per open, so a reused slot is told apart from its previous owner): the distinct tids the
//! process's snapshots pin, ascending, or, when there are more than fit (`n` = [`OVERFLOW`]),
//! their minimum (then any tid from it on counts as pinned).
//!
//! A pin at `t` means: this snapshot may map the extents that are current at `t` (a snapshot
//! registers the head tid it read under the gate, also when it reads history: history is
//! rebuilt from the current extents and undo records). So an extent whose current version was
//! written at `v` may be updated in place only if no other pin is `>= v`, and an extent retired
//! at `r` that held the version `v` may be reused only if no pin lies in `[v, r)`.
//!
//! - A process claims a free slot at open by taking an OFD write lock on it and keeps the lock
//!   while the store is open; the kernel drops it when the process dies (or closes the file), so
//!   liveness is the lock, never a pid (pids are reused and differ across namespaces).
//! - A snapshot starts under the gate held shared: read the head, record the pin in the slot.
//!   A commit that wants to write in place holds the gate exclusively from its decision until
//!   its bytes are home, so no snapshot starts in between.
//! - Slots of dead processes are ignored (their lock is gone) and reclaimed by the next opener.

use crate::error::{Error, Result};
use crate::ofd::{self, flock};
use crate::types::Tid;
use nix::fcntl::{fcntl, FcntlArg};
use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Offset of slot 0.
const SLOTS_AT: u64 = 4096;
/// Bytes per slot.
const SLOT: u64 = 64;
/// Tids a slot lists.
const SLOT_TIDS: usize = 6;
/// Offset of the tids in a slot.
const TIDS_AT: usize = 16;
/// `n` of a slot listing only the minimum of more tids than fit.
const OVERFLOW: u32 = u32::MAX;
/// Most processes that may hold one store open at once.
const MAX_SLOTS: u64 = 16384;

/// One process's view of the registry.
pub(crate) struct Registry {
    path: PathBuf,
    /// Holds this process's slot lock (and is used for slot writes).
    slot_fd: File,
    /// Separate open file descriptions for the gate: OFD locks of one description never conflict
    /// with each other, so shared and exclusive holders in this process need their own.
    gate_shared_fd: File,
    gate_excl_fd: File,
    slot: u64,
    /// Threads of this process holding the gate: readers share, a committer excludes.
    gate: RwLock<()>,
    /// How many threads of this process hold the gate shared (the OFD read lock is taken by the
    /// first and released by the last).
    shared_holders: Mutex<u32>,
    /// This process's pins: pin id -> tid.
    pins: Mutex<Pins>,
    /// The process that opened the registry (a forked child must not use it).
    pid: u32,
    /// This boot (a hash of the kernel's boot id).
    boot: u64,
    /// Random per open: tells this owner of the slot from earlier ones.
    nonce: u64,
    /// Opened without write access ([`open_read_only`](Self::open_read_only)): no slot, so this
    /// process's snapshots are not seen by committers.
    read_only: bool,
}

#[derive(Default)]
struct Pins {
    next: u64,
    by_id: BTreeMap<u64, Tid>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("path", &self.path).field("slot", &self.slot).finish()
    }
}

/// What the gate protects: a shared holder may start snapshots; an exclusive one may change
/// extents that open snapshots could map.
pub(crate) enum Gate<'a> {
    Shared(&'a Registry, #[allow(dead_code)] RwLockReadGuard<'a, ()>),
    Exclusive(&'a Registry, #[allow(dead_code)] RwLockWriteGuard<'a, ()>),
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        match self {
            Gate::Shared(r, _) => {
                let mut n = r.shared_holders.lock();
                *n -= 1;
                if *n == 0 {
                    let _ = ofd::lock(&r.gate_shared_fd, libc::F_UNLCK as _, 0, 1, false);
                }
            }
            Gate::Exclusive(r, _) => {
                let _ = ofd::lock(&r.gate_excl_fd, libc::F_UNLCK as _, 0, 1, false);
            }
        }
    }
}

/// The open snapshots of every process, as a committer sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Readers {
    /// The committer's own pin (not another reader, but it still maps its snapshot's extents).
    pub own: Option<Tid>,
    /// Exact pins of every other snapshot.
    pub others: Vec<Tid>,
    /// Processes with more pins than their slot lists: any tid from each floor on may be pinned.
    pub floors: Vec<Tid>,
}

impl Readers {
    /// Whether another snapshot may map an extent whose current version was written at `v`.
    pub fn block_in_place(&self, v: Tid) -> bool {
        !self.floors.is_empty() || self.others.iter().any(|t| *t >= v)
    }

    /// Whether any snapshot may still map an extent retired at `retired` holding the version
    /// written at `v`.
    pub fn maps_retired(&self, v: Tid, retired: Tid) -> bool {
        self.own.iter().chain(&self.others).any(|t| *t >= v && *t < retired) || self.floors.iter().any(|f| *f < retired)
    }
}

impl Registry {
    /// Open (creating) the registry beside the store and claim a slot.
    pub fn open(path: &Path) -> Result<Registry> {
        let mut reg = Self::open_with(path, false)?;
        for slot in 0..MAX_SLOTS {
            let at = SLOTS_AT + slot * SLOT;
            let claimed = ofd::lock(&reg.slot_fd, libc::F_WRLCK as _, at, SLOT, false);
            if claimed.map_err(|source| Error::Io {
                op: "claim a reader slot",
                path: reg.path.display().to_string(),
                source,
            })? {
                reg.slot = slot;
                reg.write_slot(0, &[])?;
                return Ok(reg);
            }
        }
        Err(Error::Io {
            op: "claim a reader slot",
            path: path.display().to_string(),
            source: std::io::Error::other(format!("all {MAX_SLOTS} slots are held by live processes")),
        })
    }

    /// Open the existing registry without write access and without a slot: snapshots still
    /// wait for the gate (so none starts while a committer writes in place), but committers do
    /// not see them (for stores nobody writes meanwhile: read-only media, another user's store
    /// at rest).
    pub fn open_read_only(path: &Path) -> Result<Registry> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, read_only: bool) -> Result<Registry> {
        let io = |op: &'static str| move |source| Error::Io { op, path: path.display().to_string(), source };
        let open = || OpenOptions::new().read(true).write(!read_only).create(!read_only).truncate(false).open(path);
        let slot_fd = open().map_err(io("open the reader registry"))?;
        let gate_shared_fd = open().map_err(io("open the reader registry"))?;
        let gate_excl_fd = open().map_err(io("open the reader registry"))?;
        let pid = std::process::id();
        let boot_id = std::fs::read("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        // 0 marks "no marker"; an unreadable boot id disables the marker (every reader replays).
        let boot = if boot_id.is_empty() { 0 } else { twox_hash::XxHash3_64::oneshot(&boot_id) | 1 };
        Ok(Registry {
            path: path.to_path_buf(),
            slot_fd,
            gate_shared_fd,
            gate_excl_fd,
            slot: u64::MAX,
            gate: RwLock::new(()),
            shared_holders: Mutex::new(0),
            pins: Mutex::new(Pins::default()),
            pid,
            boot,
            nonce: crate::types::random_u64() | 1,
            read_only,
        })
    }

    /// Refuse what needs write access to the registry.
    fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { location: self.path.display().to_string(), op });
        }
        Ok(())
    }

    fn check_process(&self) -> Result<()> {
        if std::process::id() != self.pid {
            return Err(Error::Forked { location: self.path.display().to_string(), opened_by: self.pid });
        }
        Ok(())
    }

    fn io_err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io { op, path: self.path.display().to_string(), source }
    }

    /// Hold the gate shared (snapshot starts).
    pub fn gate_shared(&self) -> Result<Gate<'_>> {
        self.check_process()?;
        let g = self.gate.read();
        let mut n = self.shared_holders.lock();
        if *n == 0 {
            ofd::lock(&self.gate_shared_fd, libc::F_RDLCK as _, 0, 1, true).map_err(self.io_err("take the gate"))?;
        }
        *n += 1;
        Ok(Gate::Shared(self, g))
    }

    /// Hold the gate exclusively (a commit that may write in place).
    pub fn gate_exclusive(&self) -> Result<Gate<'_>> {
        self.check_process()?;
        self.check_writable("take the gate exclusively")?;
        let g = self.gate.write();
        ofd::lock(&self.gate_excl_fd, libc::F_WRLCK as _, 0, 1, true).map_err(self.io_err("take the gate"))?;
        Ok(Gate::Exclusive(self, g))
    }

    fn write_slot(&self, n: u32, tids: &[Tid]) -> Result<()> {
        if self.read_only {
            return Ok(()); // no slot: this process's pins stay its own
        }
        let mut b = [0u8; SLOT as usize];
        b[0..4].copy_from_slice(&self.pid.to_le_bytes());
        b[4..8].copy_from_slice(&n.to_le_bytes());
        b[8..16].copy_from_slice(&self.nonce.to_le_bytes());
        for (i, t) in tids.iter().take(SLOT_TIDS).enumerate() {
            b[TIDS_AT + 8 * i..TIDS_AT + 8 + 8 * i].copy_from_slice(&t.to_le_bytes());
        }
        self.slot_fd.write_all_at(&b, SLOTS_AT + self.slot * SLOT).map_err(self.io_err("write a reader slot"))
    }

    fn publish(&self, pins: &Pins) -> Result<()> {
        let mut tids: Vec<Tid> = pins.by_id.values().copied().collect();
        tids.sort_unstable();
        tids.dedup();
        if tids.len() > SLOT_TIDS {
            self.write_slot(OVERFLOW, &tids[..1])
        } else {
            self.write_slot(tids.len() as u32, &tids)
        }
    }

    /// Record that the redo rows of commits up to `tid` are home (in the page cache) in this
    /// boot. Called by a committer under the exclusive gate.
    pub fn set_home(&self, _gate: &Gate<'_>, tid: Tid) -> Result<()> {
        self.check_writable("write the home marker")?;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.boot.to_le_bytes());
        b[8..].copy_from_slice(&tid.to_le_bytes());
        self.slot_fd.write_all_at(&b, 8).map_err(self.io_err("write the home marker"))
    }

    /// Up to which tid redo rows are known to be home in this boot (0: none).
    pub fn home(&self) -> Result<Tid> {
        let mut b = [0u8; 16];
        match self.slot_fd.read_exact_at(&mut b, 8) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(self.io_err("read the home marker")(e)),
        }
        let (boot, tid) = (
            u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
        );
        Ok(if self.boot != 0 && boot == self.boot { tid } else { 0 })
    }

    /// Record a snapshot at `tid`; the caller holds the gate (shared or exclusive) and read `tid`
    /// under it. Returns the pin's id.
    pub fn pin(&self, _gate: &Gate<'_>, tid: Tid) -> Result<u64> {
        let mut pins = self.pins.lock();
        pins.next += 1;
        let id = pins.next;
        pins.by_id.insert(id, tid);
        if let Err(e) = self.publish(&pins) {
            pins.by_id.remove(&id);
            return Err(e);
        }
        Ok(id)
    }

    /// Forget a pin (its snapshot ended).
    pub fn unpin(&self, id: u64) {
        if std::process::id() != self.pid {
            return; // a forked child never owned the slot
        }
        let mut pins = self.pins.lock();
        if pins.by_id.remove(&id).is_some() {
            // A failed slot write leaves the slot more conservative than needed, never less.
            let _ = self.publish(&pins);
        }
    }

    /// The open snapshots of every live process, not counting pin `exclude`.
    pub fn readers(&self, exclude: Option<u64>) -> Result<Readers> {
        self.check_process()?;
        let mut out = Readers::default();
        {
            let pins = self.pins.lock();
            for (id, tid) in &pins.by_id {
                if Some(*id) == exclude {
                    out.own = Some(*tid);
                } else {
                    out.others.push(*tid);
                }
            }
        }
        let len = self.slot_fd.metadata().map_err(self.io_err("read the reader registry"))?.len();
        let n = (len.saturating_sub(SLOTS_AT) / SLOT).min(MAX_SLOTS);
        let mut table = vec![0u8; (n * SLOT) as usize];
        self.slot_fd.read_exact_at(&mut table, SLOTS_AT).map_err(self.io_err("read the reader registry"))?;
        for slot in 0..n {
            if slot == self.slot {
                continue;
            }
            let b = &table[(slot * SLOT) as usize..((slot + 1) * SLOT) as usize];
            let n = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            if n == 0 || !self.slot_alive(slot)? {
                continue;
            }
            let tid = |i: usize| {
                let mut t = [0u8; 8];
                t.copy_from_slice(&b[TIDS_AT + 8 * i..TIDS_AT + 8 + 8 * i]);
                u64::from_le_bytes(t)
            };
            if n == OVERFLOW {
                out.floors.push(tid(0));
            } else {
                out.others.extend((0..(n as usize).min(SLOT_TIDS)).map(tid));
            }
        }
        Ok(out)
    }

    /// This handle's slot and nonce (owner of staged extents).
    pub fn owner(&self) -> (u64, u64) {
        (self.slot, self.nonce)
    }

    /// Whether the owner `(slot, nonce)` is this handle or a live one.
    pub fn owner_alive(&self, slot: u64, nonce: u64) -> Result<bool> {
        if slot == self.slot {
            return Ok(nonce == self.nonce);
        }
        if slot >= MAX_SLOTS || !self.slot_alive(slot)? {
            return Ok(false);
        }
        let mut b = [0u8; 8];
        self.slot_fd.read_exact_at(&mut b, SLOTS_AT + slot * SLOT + 8).map_err(self.io_err("read a reader slot"))?;
        Ok(u64::from_le_bytes(b) == nonce)
    }

    /// Whether a live process holds `slot` (its OFD lock is held).
    fn slot_alive(&self, slot: u64) -> Result<bool> {
        let mut l = flock(libc::F_WRLCK as _, SLOTS_AT + slot * SLOT, SLOT);
        fcntl(&self.gate_excl_fd, FcntlArg::F_OFD_GETLK(&mut l)).map_err(|e| Error::Io {
            op: "read the reader registry",
            path: self.path.display().to_string(),
            source: e.into(),
        })?;
        Ok(l.l_type != libc::F_UNLCK as libc::c_short)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_of_this_and_other_handles_are_counted_and_dead_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.readers");
        let a = Registry::open(&p).unwrap();
        let b = Registry::open(&p).unwrap();
        assert_ne!(a.slot, b.slot);
        let g = a.gate_shared().unwrap();
        let pa = a.pin(&g, 7).unwrap();
        drop(g);
        let r = |own: Option<Tid>, others: &[Tid], floors: &[Tid]| Readers {
            own,
            others: others.to_vec(),
            floors: floors.to_vec(),
        };
        assert_eq!(a.readers(Some(pa)).unwrap(), r(Some(7), &[], &[]));
        assert_eq!(b.readers(None).unwrap(), r(None, &[7], &[]));
        let g = b.gate_shared().unwrap();
        let pb = b.pin(&g, 5).unwrap();
        drop(g);
        assert_eq!(a.readers(Some(pa)).unwrap(), r(Some(7), &[5], &[]));
        let ra = a.readers(Some(pa)).unwrap();
        assert!(ra.block_in_place(5) && !ra.block_in_place(6));
        assert!(ra.maps_retired(4, 6) && !ra.maps_retired(6, 7) && ra.maps_retired(6, 8) && !ra.maps_retired(8, 9));
        b.unpin(pb);
        assert_eq!(a.readers(Some(pa)).unwrap(), r(Some(7), &[], &[]));
        let g = b.gate_shared().unwrap();
        b.pin(&g, 3).unwrap();
        drop(g);
        drop(b); // its lock goes with it: the slot is no longer live
        assert_eq!(a.readers(Some(pa)).unwrap(), r(Some(7), &[], &[]));
        let c = Registry::open(&p).unwrap();
        assert_eq!(c.readers(None).unwrap(), r(None, &[7], &[]));
        // More distinct pins than a slot lists: only their minimum, as a floor.
        let g = c.gate_shared().unwrap();
        for t in 10..20 {
            c.pin(&g, t).unwrap();
        }
        drop(g);
        assert_eq!(a.readers(Some(pa)).unwrap(), r(Some(7), &[], &[10]));
        assert!(a.readers(Some(pa)).unwrap().block_in_place(100));
    }

    #[test]
    fn the_exclusive_gate_waits_for_shared_holders_of_other_handles() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.readers");
        let a = std::sync::Arc::new(Registry::open(&p).unwrap());
        let b = Registry::open(&p).unwrap();
        let g = b.gate_shared().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let a2 = a.clone();
        let t = std::thread::spawn(move || {
            let _x = a2.gate_exclusive().unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "exclusive while shared held");
        drop(g);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        t.join().unwrap();
    }
}
