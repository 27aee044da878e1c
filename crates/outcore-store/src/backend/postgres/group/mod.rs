//! Group commit: the small commits of every process of a machine that wait for the commit lock
//! of one database go to the server together, in one transaction sent by one of them.
//!
//! A commit that has read and planned (its writes need no statement's reply) writes its
//! statements, with their parameters in the server's binary form, into a slot of a machine-wide
//! table in shared memory ([`shm`]), then waits. Whoever gets a leader lock (there are two, so
//! that a group is on its way while the one before it runs) takes every queued request and
//! sends them as one pipeline on its own connection: the commit lock
//! once, then each commit's statements (its head move, its rows, the check of its reads, which
//! gives its tid), then one `COMMIT`. The leader writes each request's outcome into its slot and
//! wakes the waiters; a waiter whose request a leader has not taken yet may lead the next group.
//!
//! Each commit keeps its own tid, rows and read check, in queue order, exactly as if it had
//! committed alone right after the one before it. A group that fails (a conflict, any server
//! error) writes nothing; every member then commits alone, which reports its own error. A
//! leader whose connection is lost, or which dies, leaves its members to find out themselves
//! whether the group landed: its server process is recorded in the table (whoever takes that
//! leader lock next answers the requests a dead holder left, with that record, before it
//! records its own), and each member looks its commit id up the way a lone commit does after a
//! lost connection: found, it landed; found nowhere (after that server process was ended), it
//! was not written and the member commits again, alone. A leader alive but silent for twice
//! the patience leaves its members with `CommitOutcomeUnknown`.
//!
//! Off with `group_commit=off` in the URL, or `OUTCORE_PG_GROUP_COMMIT=0` in the environment.

mod shm;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::error::{Error, Result};
use crate::types::Tid;
pub(crate) use shm::SLOT_BYTES;
use shm::{Shared, ABANDONED, DONE, FREE, QUEUED, SLOTS, TAKEN, WRITING};

/// How long a waiter sleeps before it looks again (at its slot, the leader lock, an interrupt).
const NAP: Duration = Duration::from_millis(20);

/// One commit as sent by a group: its statements with their parameters in binary form, and
/// the parameters of the check of its reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub commit_id: i64,
    pub statements: Vec<(String, Vec<Option<Vec<u8>>>)>,
    pub check: Vec<Option<Vec<u8>>>,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// It landed with this tid.
    Landed(Tid),
    /// The group wrote nothing: commit alone.
    Alone,
    /// The group was sent by server process `(pid, start)` and its reply was lost (the leader's
    /// connection, or the leader, died): find out whether it landed. A leader that died before
    /// it recorded its server process (so before it sent anything) leaves pid 0.
    Lost(i32, String),
    /// The leader that took it is alive but gave no answer in twice the patience: whether the
    /// commit landed cannot be told now (never written to a slot).
    Unknown,
}

/// A parameter already in the server's binary form (a request's, sent by a leader).
#[derive(Debug)]
pub(crate) struct RawParam(pub Option<Vec<u8>>);

impl ToSql for RawParam {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(b) => {
                out.extend_from_slice(b);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// `param` in the binary form the server takes for `ty`.
pub(crate) fn encode_param(param: &(dyn ToSql + Sync), ty: &Type) -> Result<Option<Vec<u8>>> {
    let mut buf = BytesMut::new();
    match param.to_sql_checked(ty, &mut buf) {
        Ok(IsNull::Yes) => Ok(None),
        Ok(IsNull::No) => Ok(Some(buf.to_vec())),
        Err(e) => Err(Error::Invalid(format!("a commit parameter of type {ty} cannot be encoded: {e}"))),
    }
}

fn put_params(out: &mut Vec<u8>, params: &[Option<Vec<u8>>]) {
    out.extend_from_slice(&(params.len() as u32).to_le_bytes());
    for p in params {
        match p {
            None => out.extend_from_slice(&(-1i32).to_le_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// Reads a request's bytes (written by [`Request::encode`] of this build).
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn params(&mut self) -> Option<Vec<Option<Vec<u8>>>> {
        let n = self.u32()? as usize;
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let len = self.i32()?;
            out.push(if len < 0 { None } else { Some(self.take(len as usize)?.to_vec()) });
        }
        Some(out)
    }
}

impl Request {
    /// The request as slot bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.commit_id.to_le_bytes());
        out.extend_from_slice(&(self.statements.len() as u32).to_le_bytes());
        for (sql, params) in &self.statements {
            out.extend_from_slice(&(sql.len() as u32).to_le_bytes());
            out.extend_from_slice(sql.as_bytes());
            put_params(&mut out, params);
        }
        put_params(&mut out, &self.check);
        out
    }

    /// A request from slot bytes; `None` if they are not one.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader(b);
        let commit_id = r.i64()?;
        let n = r.u32()? as usize;
        let mut statements = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let len = r.u32()? as usize;
            let sql = std::str::from_utf8(r.take(len)?).ok()?.to_string();
            statements.push((sql, r.params()?));
        }
        let check = r.params()?;
        r.0.is_empty().then_some(Self { commit_id, statements, check })
    }
}

impl Outcome {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Outcome::Landed(t) => {
                out.push(0);
                out.extend_from_slice(&t.to_le_bytes());
            }
            Outcome::Alone | Outcome::Unknown => out.push(1),
            Outcome::Lost(pid, start) => {
                out.push(2);
                out.extend_from_slice(&pid.to_le_bytes());
                out.extend_from_slice(start.as_bytes());
            }
        }
        out
    }

    fn decode(b: &[u8]) -> Self {
        match b.split_first() {
            Some((0, t)) if t.len() == 8 => Outcome::Landed(u64::from_le_bytes(t.try_into().unwrap_or_default())),
            Some((2, rest)) if rest.len() >= 4 => {
                let pid = i32::from_le_bytes(rest[..4].try_into().unwrap_or_default());
                Outcome::Lost(pid, String::from_utf8_lossy(&rest[4..]).into_owned())
            }
            // Anything else (never written by this build): nothing is known to have landed
            // from it, and `Alone` makes the commit look its own state up again.
            _ => Outcome::Alone,
        }
    }
}

/// How a waiting commit sends the groups it leads.
pub(crate) trait Leader {
    /// Sends `group` (in queue order) as one transaction under `lead`; an outcome per
    /// request, in order.
    fn send(&mut self, lead: &Lead<'_>, group: Vec<Request>) -> Vec<Outcome>;
}

/// The machine-wide group of one database (one per store handle).
pub(crate) struct Group {
    shm: Shared,
    /// Bound of a wait for another process's group (then the request is withdrawn, or its
    /// outcome looked up).
    patience: Duration,
    /// The store's location (for errors).
    location: String,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

/// The right to send the next group; dropping it lets the waiters look again.
pub(crate) struct Lead<'a> {
    group: &'a Group,
    /// Which leader lock.
    k: usize,
    _lock: shm::LeaderLock,
}

impl Lead<'_> {
    /// Takes every queued request, in queue order, with its slot (answer each with
    /// [`answer`](Self::answer)).
    pub fn take_queued(&self) -> Vec<(usize, Request)> {
        let shm = &self.group.shm;
        let mut taken: Vec<(u64, usize, Request)> = Vec::new();
        for i in 0..SLOTS {
            let state = shm.state(i);
            match state.load(Ordering::Acquire) {
                // Its process died before any leader took it: nothing of it was sent, and it
                // must never be (its commit failed with its process).
                QUEUED if shm::process_gone(shm.owner(i).load(Ordering::Relaxed)) => {
                    let _ = state.compare_exchange(QUEUED, FREE, Ordering::AcqRel, Ordering::Relaxed);
                }
                QUEUED
                    if state
                        .compare_exchange(QUEUED, TAKEN + self.k as u32, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok() =>
                {
                    let len = shm.len(i).load(Ordering::Relaxed) as usize;
                    let bytes = shm.read_payload(i, len.min(SLOT_BYTES));
                    shm.shrink_payload(i);
                    match Request::decode(&bytes) {
                        Some(r) => taken.push((shm.seq(i).load(Ordering::Relaxed), i, r)),
                        None => self.answer(i, &Outcome::Alone),
                    }
                }
                // Left by a process that died while writing its request or before reading
                // its outcome.
                s @ (WRITING | DONE) if shm::process_gone(shm.owner(i).load(Ordering::Relaxed)) => {
                    let _ = state.compare_exchange(s, FREE, Ordering::AcqRel, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        taken.sort_by_key(|(seq, ..)| *seq);
        taken.into_iter().map(|(_, i, r)| (i, r)).collect()
    }

    /// Writes the outcome of the request taken from `slot` (frees the slot instead if its
    /// owner stopped waiting).
    pub fn answer(&self, slot: usize, out: &Outcome) {
        let shm = &self.group.shm;
        let b = out.encode();
        shm.write_payload(slot, &b);
        shm.len(slot).store(b.len() as u32, Ordering::Relaxed);
        let taken = TAKEN + self.k as u32;
        if shm.state(slot).compare_exchange(taken, DONE, Ordering::AcqRel, Ordering::Acquire).is_err() {
            let _ = shm.state(slot).compare_exchange(ABANDONED, FREE, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Records the server process sending the group (for [`Outcome::Lost`]).
    pub fn set_sender(&self, pid: i32, start: &str) {
        self.group.shm.set_leader(self.k, pid, start);
    }
}

impl Group {
    /// The group of the database named by `key` for this user, or `None` when there is no
    /// usable `/dev/shm` file. `location`: the store's, for errors.
    pub fn open(key: &str, location: &str, io_timeout: Duration) -> Option<Self> {
        let key = twox_hash::XxHash3_64::oneshot(key.as_bytes());
        let dir = std::path::Path::new("/dev/shm");
        shm::remove_stale(dir, shm::uid());
        let path = dir.join(format!("outcore-commits-{}-{key:016x}", shm::uid()));
        match Shared::open(&path) {
            Ok(Some(shm)) => Some(Self {
                shm,
                patience: io_timeout.saturating_mul(3) + Duration::from_secs(10),
                location: location.to_string(),
            }),
            Ok(None) => {
                tracing::debug!("{}: another layout version, or being removed; commits go alone", path.display());
                None
            }
            Err(e) => {
                tracing::debug!("no group commit ({}: {e})", path.display());
                None
            }
        }
    }

    /// How many requests wait for a leader now.
    pub fn queued(&self) -> usize {
        (0..SLOTS).filter(|i| self.shm.state(*i).load(Ordering::Acquire) == QUEUED).count()
    }

    /// The right to send the next group, if no one else has it.
    pub fn try_lead(&self) -> Result<Option<Lead<'_>>> {
        self.lead_with(None)
    }

    /// A free leader lock (`only`: that one). Requests still marked taken by it were taken by
    /// a holder that died before answering them (a live one answers all it took before it gives
    /// the lock back): they are answered [`Outcome::Lost`] with that holder's server process,
    /// before this holder records its own over it.
    fn lead_with(&self, only: Option<usize>) -> Result<Option<Lead<'_>>> {
        let lock = self.shm.try_lead(only).map_err(|e| Error::Invalid(format!("group commit leader lock: {e}")))?;
        let Some((k, l)) = lock else { return Ok(None) };
        let lead = Lead { group: self, k, _lock: l };
        let mut orphans =
            (0..SLOTS).filter(|i| self.shm.state(*i).load(Ordering::Acquire) == TAKEN + k as u32).peekable();
        if orphans.peek().is_some() {
            let (pid, started) = self.shm.leader(k);
            let lost = Outcome::Lost(pid, started);
            for i in orphans {
                lead.answer(i, &lost);
            }
        }
        // No server process until this holder sends one (a holder that dies before it sends
        // leaves none: its members then know nothing was sent).
        lead.set_sender(0, "");
        Ok(Some(lead))
    }

    /// Ends a lead: frees the lock, then wakes the waiters.
    pub fn end_lead(&self, lead: Lead<'_>) {
        drop(lead);
        self.shm.bump_epoch();
    }

    /// Queues `request` (bytes of [`Request::encode`]); its slot, or `None` if it is too big
    /// or every slot is taken (then the commit goes alone).
    pub fn queue(&self, request: &[u8]) -> Option<usize> {
        if request.len() > SLOT_BYTES {
            return None;
        }
        let me = std::process::id();
        for i in 0..SLOTS {
            if self.shm.state(i).compare_exchange(FREE, WRITING, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                if let Err(e) = self.shm.reserve(i, request.len()) {
                    tracing::debug!("no room for a group commit request ({e}); the commit goes alone");
                    self.release(i);
                    return None;
                }
                self.shm.owner(i).store(me, Ordering::Relaxed);
                self.shm.write_payload(i, request);
                self.shm.len(i).store(request.len() as u32, Ordering::Relaxed);
                self.shm.seq(i).store(self.shm.next_seq(), Ordering::Relaxed);
                self.shm.state(i).store(QUEUED, Ordering::Release);
                return Some(i);
            }
        }
        None
    }

    /// Waits for the outcome of the request in `slot`, leading groups (this one's or later
    /// ones) through `leader` whenever the leader lock is free.
    pub fn wait(&self, slot: usize, leader: &mut dyn Leader) -> Result<Outcome> {
        let start = Instant::now();
        loop {
            let seen = self.shm.epoch().load(Ordering::Acquire);
            if let Some(out) = self.finished(slot) {
                return Ok(out);
            }
            let state = self.shm.state(slot).load(Ordering::Acquire);
            if state >= TAKEN {
                // A leader holds its lock until it has written the outcome: the lock of the
                // one that took it free means that leader is gone. Whoever takes that lock
                // answers its requests (`lead_with`): look again.
                let k = (state - TAKEN) as usize;
                if let Some(lead) = self.lead_with(Some(k))? {
                    self.end_lead(lead);
                    continue;
                }
            } else if let Some(lead) = self.try_lead()? {
                let taken = lead.take_queued();
                if !taken.is_empty() {
                    let (slots, group): (Vec<usize>, Vec<Request>) = taken.into_iter().unzip();
                    let outcomes = leader.send(&lead, group);
                    for (k, s) in slots.iter().enumerate() {
                        lead.answer(*s, outcomes.get(k).unwrap_or(&Outcome::Alone));
                    }
                }
                self.end_lead(lead);
                continue;
            }
            let waited = start.elapsed();
            if crate::interrupt::requested() || waited > self.patience {
                // Not taken yet: withdrawn, nothing sent. Taken: the leader is sending it.
                if self.shm.state(slot).compare_exchange(QUEUED, WRITING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    self.release(slot);
                    if crate::interrupt::requested() {
                        return Err(Error::Interrupted { location: self.location.clone(), op: "commit" });
                    }
                    return Ok(Outcome::Alone);
                }
                // Taken by a leader that is alive (its lock is held) and silent for twice the
                // patience: stop waiting; it frees the slot if it ever answers.
                let state = self.shm.state(slot).load(Ordering::Acquire);
                if waited > self.patience.saturating_mul(2)
                    && state >= TAKEN
                    && self
                        .shm
                        .state(slot)
                        .compare_exchange(state, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    return Ok(Outcome::Unknown);
                }
            }
            self.shm.wait_epoch(seen, NAP);
        }
    }

    /// The outcome of `slot` if a leader wrote it (the slot is then free again).
    fn finished(&self, slot: usize) -> Option<Outcome> {
        if self.shm.state(slot).load(Ordering::Acquire) != DONE {
            return None;
        }
        let len = self.shm.len(slot).load(Ordering::Relaxed) as usize;
        let out = Outcome::decode(&self.shm.read_payload(slot, len.min(SLOT_BYTES)));
        self.release(slot);
        Some(out)
    }

    fn release(&self, slot: usize) {
        self.shm.state(slot).store(FREE, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_outcomes_round_trip() {
        let r = Request {
            commit_id: -5,
            statements: vec![("SELECT 1".into(), vec![None, Some(vec![1, 2, 3])]), ("X".into(), vec![])],
            check: vec![Some(vec![]), None],
        };
        assert_eq!(Request::decode(&r.encode()), Some(r.clone()));
        let b = r.encode();
        assert_eq!(Request::decode(&b[..b.len() - 1]), None, "a cut request is refused");
        for o in [Outcome::Landed(77), Outcome::Alone, Outcome::Lost(12, "2026-12-06 01:00:00+00".into())] {
            assert_eq!(Outcome::decode(&o.encode()), o);
        }
        assert_eq!(Outcome::decode(&[9]), Outcome::Alone);
    }

    fn request(commit_id: i64) -> Vec<u8> {
        Request { commit_id, statements: vec![("SELECT 1".into(), vec![])], check: vec![] }.encode()
    }

    /// Sends nothing: records itself as leader and dies (a panic; a process killed with its
    /// lock gives the lock back the same way).
    struct Dying;
    impl Leader for Dying {
        fn send(&mut self, lead: &Lead<'_>, _: Vec<Request>) -> Vec<Outcome> {
            lead.set_sender(4242, "started at noon");
            panic!("the leader dies with its group in flight");
        }
    }

    /// Lands every request, tids from 100.
    struct Landing(Vec<i64>);
    impl Leader for Landing {
        fn send(&mut self, _: &Lead<'_>, group: Vec<Request>) -> Vec<Outcome> {
            self.0.extend(group.iter().map(|r| r.commit_id));
            (0..group.len()).map(|k| Outcome::Landed(100 + k as u64)).collect()
        }
    }

    /// The leader takes every queued request in queue order and each gets its own outcome; a
    /// request whose leader died with it is found orphaned, with that leader's server process.
    #[test]
    fn a_leader_answers_its_group_and_a_dead_leaders_group_is_found_lost() {
        let key = format!("test-{}", rand::random::<u64>());
        let g = Group::open(&key, "test", Duration::from_secs(1)).expect("group file");
        let (a, b) = (g.queue(&request(1)).unwrap(), g.queue(&request(2)).unwrap());
        assert_eq!(g.queued(), 2);
        let mut landing = Landing(Vec::new());
        assert_eq!(g.wait(a, &mut landing).unwrap(), Outcome::Landed(100));
        assert_eq!(landing.0, vec![1, 2], "one group, in queue order");
        assert_eq!(g.wait(b, &mut landing).unwrap(), Outcome::Landed(101));
        assert_eq!(g.queued(), 0);

        let (c, d) = (g.queue(&request(3)).unwrap(), g.queue(&request(4)).unwrap());
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.wait(c, &mut Dying)));
        assert!(died.is_err());
        // `d` was taken by the dead leader: never sent again, its outcome is the server's.
        assert_eq!(g.wait(d, &mut landing).unwrap(), Outcome::Lost(4242, "started at noon".into()));
        assert_eq!(g.wait(c, &mut landing).unwrap(), Outcome::Lost(4242, "started at noon".into()));
        assert_eq!(landing.0, vec![1, 2], "nothing of the lost group was sent again");

        // A request whose process died while it waited is never sent.
        let e = g.queue(&request(5)).unwrap();
        let dead = std::process::Command::new("true").spawn().unwrap();
        let pid = dead.id();
        let _ = { dead }.wait();
        g.shm.owner(e).store(pid, Ordering::Relaxed);
        let f = g.queue(&request(6)).unwrap();
        assert_eq!(g.wait(f, &mut landing).unwrap(), Outcome::Landed(100));
        assert_eq!(landing.0, vec![1, 2, 6], "the dead process's request was dropped");
        assert_eq!(g.shm.state(e).load(Ordering::Acquire), FREE);
    }

    /// Takes its group and dies before it records a server process (so before sending).
    struct DyingEarly;
    impl Leader for DyingEarly {
        fn send(&mut self, _: &Lead<'_>, _: Vec<Request>) -> Vec<Outcome> {
            panic!("the leader dies before it sends");
        }
    }

    /// A leader that dies before recording its server process leaves none, never the one of
    /// the lock's previous group (another process's live connection): its members know nothing
    /// was sent.
    #[test]
    fn a_leader_dead_before_sending_leaves_no_server_process() {
        let key = format!("test-{}", rand::random::<u64>());
        let g = Group::open(&key, "test", Duration::from_secs(1)).expect("group file");
        let a = g.queue(&request(1)).unwrap();
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.wait(a, &mut Dying)));
        assert!(died.is_err());
        assert_eq!(g.wait(a, &mut Landing(Vec::new())).unwrap(), Outcome::Lost(4242, "started at noon".into()));
        // The same lock's next holder dies before sending: no process, not the last one.
        let b = g.queue(&request(2)).unwrap();
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.wait(b, &mut DyingEarly)));
        assert!(died.is_err());
        assert_eq!(g.wait(b, &mut Landing(Vec::new())).unwrap(), Outcome::Lost(0, String::new()));
    }

    /// A member stops waiting for a live leader silent for twice its patience (`Unknown`), and
    /// that leader's late answer frees the slot instead of leaving it done for nobody.
    #[test]
    fn a_silent_leader_is_abandoned_and_its_late_answer_frees_the_slot() {
        let key = format!("test-{}", rand::random::<u64>());
        let mut g = Group::open(&key, "test", Duration::from_secs(1)).expect("group file");
        g.patience = Duration::from_millis(30);
        let a = g.queue(&request(1)).unwrap();
        let lead = g.try_lead().unwrap().expect("a free lock");
        let taken = lead.take_queued();
        assert_eq!(taken.len(), 1);
        // Both locks held (the other elsewhere): the member can only wait, then give up.
        let other = g.shm.try_lead(None).unwrap().expect("the other lock");
        assert_eq!(g.wait(a, &mut Landing(Vec::new())).unwrap(), Outcome::Unknown);
        assert_eq!(g.shm.state(a).load(Ordering::Acquire), ABANDONED);
        lead.answer(taken[0].0, &Outcome::Landed(7));
        assert_eq!(g.shm.state(a).load(Ordering::Acquire), FREE);
        drop(other);
        g.end_lead(lead);
    }

    static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Ctrl-C while a request waits for a leader withdraws it (nothing sent, the slot free)
    /// and says so.
    #[test]
    fn an_interrupt_withdraws_a_request_no_leader_took() {
        crate::interrupt::set_check(|| STOP.load(Ordering::SeqCst));
        let key = format!("test-{}", rand::random::<u64>());
        let g = Group::open(&key, "test", Duration::from_secs(1)).expect("group file");
        // Both leader locks held elsewhere: the request can only wait.
        let held: Vec<_> = (0..shm::LEADERS).map(|_| g.shm.try_lead(None).unwrap().expect("a free lock")).collect();
        let a = g.queue(&request(1)).unwrap();
        STOP.store(true, Ordering::SeqCst);
        let r = g.wait(a, &mut Landing(Vec::new()));
        STOP.store(false, Ordering::SeqCst);
        assert!(matches!(r, Err(Error::Interrupted { .. })), "{r:?}");
        assert_eq!(g.shm.state(a).load(Ordering::Acquire), FREE);
        assert_eq!(g.queued(), 0);
        drop(held);
    }
}
