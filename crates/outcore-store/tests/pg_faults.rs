//! PostgreSQL faults between client and server, made by a proxy the test controls: a server that
//! accepts and says nothing (connect timeout), a server that stops answering (io timeout,
//! Ctrl-C), and a connection cut in the middle of a commit's streamed rows, just before `COMMIT`,
//! or between `COMMIT` and its reply (the commit outcome is found, never left silent). And
//! commits that read their blocks before queueing on the commit lock: one changed first makes
//! the others on the same block conflict.

mod common;

use outcore_store::{open, ArrayId, ArrayMeta, Commit, Error, Order};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the proxy does to the traffic.
const FORWARD: u8 = 0;
/// Stop forwarding in both directions (a frozen server).
const FREEZE: u8 = 1;
/// Cut the connection when the client sends `COMMIT`, without forwarding it (once).
const CUT_BEFORE_COMMIT: u8 = 2;
/// Forward `COMMIT`, wait for the server's reply, drop it and cut the connection (once).
const CUT_AFTER_COMMIT: u8 = 3;

/// After [`CUT_BEFORE_COMMIT`] did its cut: forward.
const COMMIT_DROPPED: u8 = 4;
/// After [`CUT_AFTER_COMMIT`] forwarded `COMMIT`: forward, wait for the reply.
const AWAIT_REPLY: u8 = 5;
/// After [`CUT_AFTER_COMMIT`] did its cut: forward.
const REPLY_DROPPED: u8 = 6;
/// Cut the connection once the client has sent [`COPY_CUT_AFTER`] bytes after starting a
/// `COPY` (a commit's streamed segment rows), before its end (once).
const CUT_IN_COPY: u8 = 7;
/// After [`CUT_IN_COPY`] did its cut: forward.
const COPY_CUT: u8 = 8;
/// Bytes of a `COPY` let through before [`CUT_IN_COPY`] cuts.
const COPY_CUT_AFTER: usize = 1 << 20;

/// `COMMIT` as the client sends it: as a simple query, or the text of the statement it
/// prepares (once per connection, just before the pipeline of a commit's last writes and
/// `COMMIT`).
const COMMIT_MSG: &[u8] = b"COMMIT\0";
/// The start of the `COPY` of new segment rows, as the client sends it.
const COPY_MSG: &[u8] = b"COPY outcore_segment";

struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
}

impl Proxy {
    /// A proxy in front of `upstream` (host:port).
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let m = mode.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let link = Arc::new(Link {
                    mode: m.clone(),
                    cut: AtomicBool::new(false),
                    awaiting_reply: AtomicBool::new(false),
                    in_copy: std::sync::atomic::AtomicUsize::new(usize::MAX),
                    client: client.try_clone().unwrap(),
                    server: server.try_clone().unwrap(),
                });
                for (from, to, upward) in
                    [(client.try_clone().unwrap(), server, true), (link.server.try_clone().unwrap(), client, false)]
                {
                    let link = link.clone();
                    std::thread::spawn(move || pump(from, to, upward, &link));
                }
            }
        });
        Proxy { port, mode }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn mode(&self) -> u8 {
        self.mode.load(Ordering::SeqCst)
    }
}

/// One proxied connection: what its two pumps (client to server, server to client) share.
struct Link {
    mode: Arc<AtomicU8>,
    /// The connection was cut (both directions end).
    cut: AtomicBool,
    /// COMMIT went up in mode `CUT_AFTER_COMMIT`: its reply is to be dropped.
    awaiting_reply: AtomicBool,
    /// Bytes sent up since a `COPY` started, in mode `CUT_IN_COPY` (`usize::MAX`: none yet).
    in_copy: std::sync::atomic::AtomicUsize,
    client: TcpStream,
    server: TcpStream,
}

/// Forward bytes `from` one side `to` the other (`upward`: client to server) as `link.mode` says.
fn pump(mut from: TcpStream, mut to: TcpStream, upward: bool, link: &Link) {
    let Link { mode, cut, awaiting_reply, in_copy, client, server } = link;
    let cut_both = || {
        cut.store(true, Ordering::SeqCst);
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    };
    let mut buf = vec![0u8; 1 << 16];
    loop {
        while mode.load(Ordering::SeqCst) == FREEZE && !cut.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                cut_both();
                return;
            }
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if upward && mode.load(Ordering::SeqCst) == CUT_IN_COPY {
            if chunk.windows(COPY_MSG.len()).any(|w| w == COPY_MSG) {
                in_copy.store(0, Ordering::SeqCst);
            }
            let sent = in_copy.load(Ordering::SeqCst);
            if sent != usize::MAX {
                if sent + n > COPY_CUT_AFTER {
                    mode.store(COPY_CUT, Ordering::SeqCst);
                    cut_both();
                    return;
                }
                in_copy.store(sent + n, Ordering::SeqCst);
            }
        }
        let has_commit = chunk.windows(COMMIT_MSG.len()).any(|w| w == COMMIT_MSG);
        if upward && has_commit {
            match mode.load(Ordering::SeqCst) {
                CUT_BEFORE_COMMIT => {
                    mode.store(COMMIT_DROPPED, Ordering::SeqCst);
                    cut_both();
                    return;
                }
                CUT_AFTER_COMMIT => {
                    mode.store(AWAIT_REPLY, Ordering::SeqCst);
                    awaiting_reply.store(true, Ordering::SeqCst);
                }
                _ => {}
            }
        }
        if !upward && awaiting_reply.load(Ordering::SeqCst) && chunk.windows(7).any(|w| w == b"COMMIT\0") {
            // The server's reply to COMMIT: the client never sees it.
            mode.store(REPLY_DROPPED, Ordering::SeqCst);
            cut_both();
            return;
        }
        while mode.load(Ordering::SeqCst) == FREEZE && !cut.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(chunk).is_err() {
            cut_both();
            return;
        }
    }
}

/// The fixture's URL, through `proxy`, without TLS (so the proxy can read the protocol).
fn via(url: &str, proxy: &Proxy, extra: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_port(Some(proxy.port)).unwrap();
    format!("{u}?sslmode=disable{extra}")
}

fn upstream(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(5432))
}

fn create(store: &dyn outcore_store::Store, name: &str) -> ArrayId {
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, name, ArrayMeta::new("<f8", vec![1024], Order::C, 4096));
    c.write_block(id, 0, vec![1u8; 4096]);
    store.commit(store.head().unwrap(), c).unwrap();
    id
}

#[test]
fn connect_timeout_bounds_a_server_that_accepts_and_says_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _held = std::thread::spawn(move || {
        let conns: Vec<_> = listener.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(conns);
    });
    for tls in ["disable", "prefer"] {
        let t0 = Instant::now();
        let r = open(&format!("postgresql://u@127.0.0.1:{port}/db?connect_timeout=1&sslmode={tls}"));
        let took = t0.elapsed();
        match r {
            Err(e @ Error::Unreachable { .. }) => {
                assert!(e.to_string().contains("connect_timeout"), "{e}");
                assert!(e.is_transient());
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
        assert!(took < Duration::from_secs(5), "sslmode={tls}: waited {took:?} for a 1 s connect timeout");
    }
}

#[test]
fn io_timeout_bounds_a_frozen_server() {
    let Some(f) = common::postgres() else { return };
    let proxy = Proxy::start(upstream(&f.url));
    let store = open(&via(&f.url, &proxy, "&io_timeout=1")).unwrap();
    create(&*store, "a");
    proxy.set(FREEZE);
    let t0 = Instant::now();
    match store.head() {
        Err(e @ Error::Unreachable { .. }) => assert!(e.to_string().contains("io_timeout"), "{e}"),
        other => panic!("expected Unreachable from a frozen server, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "waited {:?} for a 1 s io timeout", t0.elapsed());
    // Once the server answers again, a new connection works (the timed-out one is dropped).
    proxy.set(FORWARD);
    assert!(store.head().unwrap() > 0);
}

static STOP: AtomicBool = AtomicBool::new(false);

#[test]
fn an_interrupt_ends_a_wait_for_a_frozen_server() {
    let Some(f) = common::postgres() else { return };
    outcore_store::interrupt::set_check(|| STOP.load(Ordering::SeqCst));
    let proxy = Proxy::start(upstream(&f.url));
    let store = open(&via(&f.url, &proxy, "")).unwrap(); // default io_timeout: 60 s
    create(&*store, "a");
    proxy.set(FREEZE);
    let waiter = std::thread::spawn(move || {
        let t0 = Instant::now();
        (store.head(), t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    STOP.store(true, Ordering::SeqCst);
    let (r, took) = waiter.join().unwrap();
    STOP.store(false, Ordering::SeqCst);
    assert!(matches!(r, Err(Error::Interrupted { .. })), "{r:?}");
    assert!(took < Duration::from_secs(3), "interrupt took {took:?}");
    proxy.set(FORWARD);
}

/// A store through a proxy in `mode`, for the commit under test: an array with one block of
/// ones committed first (through another handle), and the head then.
fn armed(f: &common::Fixture, mode: u8) -> (Proxy, std::sync::Arc<dyn outcore_store::Store>, ArrayId, u64) {
    let proxy = Proxy::start(upstream(&f.url));
    let first = open(&via(&f.url, &proxy, "")).unwrap();
    let id = create(&*first, "a");
    let before = first.head().unwrap();
    // A new handle: its connection prepares COMMIT in the commit under test.
    let store = open(&via(&f.url, &proxy, "")).unwrap();
    proxy.set(mode);
    (proxy, store, id, before)
}

/// A commit writing block 0 of `id` as 4096 bytes of `byte`.
fn block0(id: ArrayId, byte: u8) -> Commit {
    let mut c = Commit::new();
    c.write_block(id, 0, vec![byte; 4096]);
    c
}

#[test]
fn a_commit_whose_reply_is_lost_is_found_to_have_landed() {
    let Some(f) = common::postgres() else { return };
    let (proxy, store, id, before) = armed(&f, CUT_AFTER_COMMIT);
    let tid = store.commit(before, block0(id, 2)).expect("the commit landed: the store must say so");
    assert_eq!(proxy.mode(), REPLY_DROPPED, "the reply to COMMIT was dropped");
    assert!(tid > before);
    // Seen from a direct connection: the commit is there, with the data.
    let direct = open(&f.url).unwrap();
    assert_eq!(direct.head().unwrap(), tid);
    let mut buf = vec![0u8; 4096];
    direct.load(id, 0, tid, &mut buf).unwrap();
    assert_eq!(buf, vec![2u8; 4096]);
}

#[test]
fn a_commit_cut_before_it_was_sent_says_nothing_was_written() {
    let Some(f) = common::postgres() else { return };
    let (proxy, store, id, before) = armed(&f, CUT_BEFORE_COMMIT);
    match store.commit(before, block0(id, 3)) {
        Err(e @ Error::CommitNotWritten { .. }) => assert!(e.to_string().contains("nothing changed"), "{e}"),
        other => panic!("expected CommitNotWritten, got {other:?}"),
    }
    assert_eq!(proxy.mode(), COMMIT_DROPPED);
    let direct = open(&f.url).unwrap();
    assert_eq!(direct.head().unwrap(), before, "nothing was committed");
    let mut buf = vec![0u8; 4096];
    direct.load(id, 0, before, &mut buf).unwrap();
    assert_eq!(buf, vec![1u8; 4096]);
    // The same commit, tried again, goes through.
    assert!(store.commit(before, block0(id, 3)).unwrap() > before);
}

#[test]
fn a_commit_cut_in_the_middle_of_its_streamed_rows_writes_nothing() {
    let Some(f) = common::postgres() else { return };
    let (proxy, store, _, before) = armed(&f, CUT_IN_COPY);
    // A new array of four 2 MiB blocks: its segment rows are streamed by one COPY.
    let big = || {
        let id = ArrayId(0xb16);
        let mut c = Commit::new();
        c.put_array(id, "big", ArrayMeta::new("u1", vec![8 << 20], Order::C, 8 << 20));
        for blk in 0..4u64 {
            c.write_block(id, blk, vec![blk as u8 + 1; 2 << 20]);
        }
        c
    };
    let e = store.commit(before, big()).expect_err("the connection was cut before COMMIT");
    assert!(e.is_transient(), "a lost connection may pass: {e}");
    assert_eq!(proxy.mode(), COPY_CUT, "the cut came in the middle of the COPY");
    let direct = open(&f.url).unwrap();
    assert_eq!(direct.head().unwrap(), before, "nothing was committed");
    assert!(direct.array("big", before).unwrap().is_none());
    let mut sql = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
    let rows: i64 = sql.query_one("SELECT count(*) FROM outcore_segment WHERE array_id = 2838", &[]).unwrap().get(0);
    assert_eq!(rows, 0, "no segment row of the cut commit stayed");
    // The same commit, tried again on a new connection, goes through whole.
    let tid = store.commit(before, big()).unwrap();
    let a = direct.array("big", tid).unwrap().expect("committed");
    let mut buf = vec![0u8; 2 << 20];
    for blk in 0..4u64 {
        direct.load(a.id, blk, tid, &mut buf).unwrap();
        assert!(buf.iter().all(|b| *b == blk as u8 + 1), "block {blk}");
    }
}

#[test]
fn a_changed_or_moved_segment_row_is_corrupt() {
    let Some(f) = common::postgres() else { return };
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, "a", ArrayMeta::new("u1", vec![1 << 20], Order::C, 1 << 20));
    c.write_block(id, 0, (0..100_000u32).map(|i| (i % 251) as u8 + 1).collect());
    let tid = f.store.commit(0, c).unwrap();
    let mut sql = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
    let load = |tid| {
        let mut buf = vec![0u8; 1 << 20];
        open(&f.url).unwrap().load(id, 0, tid, &mut buf).map(|_| buf)
    };
    assert!(load(tid).is_ok());
    // One flipped bit in a segment's bytes (the third 16 KiB window's row starts at page 8).
    sql.batch_execute("UPDATE outcore_segment SET data = set_byte(data, 5, get_byte(data, 5) # 1) WHERE seg = 8")
        .unwrap();
    match load(tid) {
        Err(Error::Corrupt { detail, .. }) => assert!(detail.contains("segment at page 8"), "{detail}"),
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
    sql.batch_execute("UPDATE outcore_segment SET data = set_byte(data, 5, get_byte(data, 5) # 1) WHERE seg = 8")
        .unwrap();
    assert!(load(tid).is_ok());
    // A segment row moved to another place in the block, or to where it crosses its window.
    sql.batch_execute("UPDATE outcore_segment SET seg = 160 WHERE seg = 12").unwrap();
    assert!(matches!(load(tid), Err(Error::Corrupt { .. })));
    sql.batch_execute("UPDATE outcore_segment SET seg = 13 WHERE seg = 160").unwrap();
    assert!(matches!(load(tid), Err(Error::Corrupt { .. })));
}

/// The advisory lock key PostgreSQL commits queue on (the store's protocol: `COMMIT_LOCK` in
/// the backend).
const COMMIT_LOCK: i64 = 0x006f_7574_636f_7263;

/// Run `commits` (each on its own handle, all made on snapshot `base`) while a session holds
/// the commit lock, so each reads its blocks' rows before the lock and then queues on it;
/// release the lock once all are queued. Their results, in the order given.
fn queued(f: &common::Fixture, base: u64, commits: Vec<Commit>) -> Vec<Result<u64, Error>> {
    queued_at(f, &alone(&f.url), base, commits)
}

/// `url` with group commit off: each commit queues on the commit lock itself.
fn alone(url: &str) -> String {
    format!("{url}{}group_commit=off", if url.contains('?') { '&' } else { '?' })
}

/// [`queued`] with the commits' stores opened at `url`.
fn queued_at(f: &common::Fixture, url: &str, base: u64, commits: Vec<Commit>) -> Vec<Result<u64, Error>> {
    let mut holder = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
    holder.batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({COMMIT_LOCK})")).unwrap();
    let n = commits.len() as i64;
    let handles: Vec<_> = commits
        .into_iter()
        .map(|c| {
            let store = outcore_store::open(url).unwrap();
            std::thread::spawn(move || store.commit(base, c))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut watch = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
    loop {
        let waiting: i64 = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' AND datname = current_database()",
                &[],
            )
            .unwrap()
            .get(0);
        if waiting == n {
            break;
        }
        assert!(Instant::now() < deadline, "{waiting} of {n} commits queued on the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    holder.batch_execute("COMMIT").unwrap();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn commits_that_read_a_block_before_the_lock_conflict_when_another_changed_it_first() {
    let Some(f) = common::postgres() else { return };
    let id = ArrayId::random();
    let mut c = Commit::new();
    let mut meta = ArrayMeta::new("u1", vec![3 * 65536], Order::C, 3 * 65536);
    meta.blksize = 65536;
    c.put_array(id, "a", meta);
    for blk in 0..3u64 {
        c.write_block(id, blk, vec![1u8; 65536]);
    }
    let base = f.store.commit(f.store.head().unwrap(), c).unwrap();
    let load = |blk: u64, at: u64| {
        let mut buf = vec![0u8; 65536];
        f.store.load(id, blk, at, &mut buf).unwrap();
        buf
    };
    // Two whole-block writes and two page writes of the same block, all read before the
    // first of them commits: exactly one of each pair lands, the other conflicts.
    let whole = |byte: u8| {
        let mut c = Commit::new();
        c.write_block(id, 0, vec![byte; 65536]);
        c
    };
    let pages = |byte: u8| {
        let mut c = Commit::new();
        c.write_pages_from(id, 1, [3u32, 9], move |pages: &[u32], block: &mut [u8]| {
            for p in pages {
                block[*p as usize * 4096..(*p as usize + 1) * 4096].fill(byte);
            }
            Ok(())
        });
        c
    };
    let mut head = base;
    for (a, b) in [(whole(7), whole(8)), (pages(5), pages(6))] {
        let results = queued(&f, head, vec![a, b]);
        let won: Vec<usize> = (0..2).filter(|i| results[*i].is_ok()).collect();
        assert_eq!(won.len(), 1, "exactly one commit lands: {results:?}");
        let lost = &results[1 - won[0]];
        assert!(matches!(lost, Err(e) if e.is_conflict()), "the other conflicts: {lost:?}");
        head = *results[won[0]].as_ref().unwrap();
    }
    let first = load(0, head);
    assert!(first.iter().all(|b| *b == first[0]) && (first[0] == 7 || first[0] == 8), "block 0 is one whole write");
    let second = load(1, head);
    let byte = second[3 * 4096];
    assert!(byte == 5 || byte == 6);
    for (p, page) in second.chunks(4096).enumerate() {
        let want = if p == 3 || p == 9 { byte } else { 1 };
        assert!(page.iter().all(|b| *b == want), "page {p} of block 1");
    }
    // Commits of different blocks queued the same way all land.
    let results = queued(&f, head, vec![whole(9), pages(4)]);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let last = f.store.head().unwrap();
    assert!(load(0, last).iter().all(|b| *b == 9));
    assert!(load(1, last)[3 * 4096..4 * 4096].iter().all(|b| *b == 4));
    assert!(load(2, last).iter().all(|b| *b == 1));
}

/// Like [`queued`] (group commit off), but each commit queues on the lock before the next one
/// starts, so that
/// they land (or fail) in the order given: PostgreSQL grants an advisory lock in queue order.
fn queued_in_order(f: &common::Fixture, base: u64, commits: Vec<Commit>) -> Vec<Result<u64, Error>> {
    let mut holder = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
    holder.batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({COMMIT_LOCK})")).unwrap();
    let mut watch = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
    let mut handles = Vec::new();
    for (i, c) in commits.into_iter().enumerate() {
        let store = outcore_store::open(&alone(&f.url)).unwrap();
        handles.push(std::thread::spawn(move || store.commit(base, c)));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: i64 = watch
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' AND datname = current_database()", &[])
                .unwrap()
                .get(0);
            if waiting == i as i64 + 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{waiting} of {} commits queued on the lock", i + 1);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    holder.batch_execute("COMMIT").unwrap();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// An array of `blocks` blocks of 64 KiB with `codec`, the first `written` blocks filled with
/// their number + 1 (the others hold nothing).
fn array_of(f: &common::Fixture, blocks: u64, written: u64, codec: outcore_store::Codec) -> (ArrayId, u64) {
    let id = ArrayId::random();
    let mut c = Commit::new();
    let mut meta = ArrayMeta::new("u1", vec![blocks * 65536], Order::C, blocks * 65536);
    meta.blksize = 65536;
    meta.codec = codec;
    c.put_array(id, format!("a{id}"), meta);
    for blk in 0..written {
        c.write_block(id, blk, vec![blk as u8 + 1; 65536]);
    }
    (id, f.store.commit(f.store.head().unwrap(), c).unwrap())
}

#[test]
fn commits_queued_behind_others_take_the_next_tids_and_their_rows_read_back_at_every_tid() {
    // Each commit reads at the same head and so expects the same tid; the server gives them
    // consecutive ones, to which their rows' checksums are bound (the undo records, and the
    // current versions of a compressed array, carry checksums bound to their tid).
    let Some(f) = common::postgres() else { return };
    for codec in [outcore_store::Codec::Zstd { level: 3 }, outcore_store::Codec::None] {
        let (id, base) = array_of(&f, 3, 3, codec);
        let commits: Vec<Commit> = (0..3u64)
            .map(|blk| {
                let mut c = Commit::new();
                let mut data = vec![blk as u8 + 1; 65536];
                data[4096 * blk as usize..4096 * (blk as usize + 1)].fill(100 + blk as u8);
                c.write_block(id, blk, data);
                c
            })
            .collect();
        let tids: Vec<u64> = queued_in_order(&f, base, commits).into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(tids, vec![base + 1, base + 2, base + 3], "{codec:?}");
        for at in base..=base + 3 {
            for blk in 0..3u64 {
                let mut buf = vec![0u8; 65536];
                f.store.load(id, blk, at, &mut buf).unwrap_or_else(|e| panic!("{codec:?} block {blk} at {at}: {e}"));
                let written = at >= base + 1 + blk;
                for (p, page) in buf.chunks(4096).enumerate() {
                    let want = if written && p == blk as usize { 100 + blk as u8 } else { blk as u8 + 1 };
                    assert!(page.iter().all(|b| *b == want), "{codec:?} block {blk} page {p} at {at}");
                }
            }
        }
        // A row bound to its tid and moved to another one is caught.
        let mut sql = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
        let moved = sql
            .execute(
                "UPDATE outcore_undo SET tid = tid + 100 WHERE array_id = $1 AND blk = 2 AND tid = $2",
                &[&(id.0 as i64), &((base + 3) as i64)],
            )
            .unwrap();
        assert_eq!(moved, 1);
        let mut buf = vec![0u8; 65536];
        assert!(matches!(f.store.load(id, 2, base, &mut buf), Err(Error::Corrupt { .. })), "{codec:?}");
    }
}

#[test]
fn a_commit_whose_array_changed_while_it_queued_is_made_again_on_the_new_state() {
    let Some(f) = common::postgres() else { return };
    // Block 2 holds nothing: a shrink leaves no trace in it, only in the array's versions.
    let (id, base) = array_of(&f, 3, 2, outcore_store::Codec::None);
    let resized = |blocks: u64| {
        let mut meta = ArrayMeta::new("u1", vec![blocks * 65536], Order::C, blocks * 65536);
        meta.blksize = 65536;
        let mut c = Commit::new();
        c.put_array(id, format!("a{id}"), meta);
        c
    };
    let write = |blk: u64, byte: u8| {
        let mut c = Commit::new();
        c.write_block(id, blk, vec![byte; 65536]);
        c
    };
    // The array grows while a write of one of its blocks waits for the lock: the write is made
    // again on the grown array and lands.
    let results = queued_in_order(&f, base, vec![resized(4), write(0, 9)]);
    assert_eq!(results.iter().map(|r| *r.as_ref().unwrap()).collect::<Vec<_>>(), vec![base + 1, base + 2]);
    let head = base + 2;
    let mut buf = vec![0u8; 65536];
    f.store.load(id, 0, head, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 9));
    assert_eq!(f.store.array_by_id(id, head).unwrap().unwrap().meta.nbytes, 4 * 65536);
    // The array shrinks under a write of a block it then no longer holds (and which had no
    // content): that write conflicts, as it would have had it read the array after the shrink
    // (were its stale read of the array used, the block would be stored beyond the array's end).
    let results = queued_in_order(&f, head, vec![resized(1), write(2, 7)]);
    assert_eq!(*results[0].as_ref().unwrap(), head + 1);
    assert!(matches!(&results[1], Err(e) if e.is_conflict()), "{:?}", results[1]);
    assert_eq!(f.store.head().unwrap(), head + 1);
    assert_eq!(f.store.array_by_id(id, head + 1).unwrap().unwrap().meta.nbytes, 65536);
}

/// The store's sessions plan its short statements without sequential scans and never
/// JIT-compile them (with scans off, a plan that still needs one costs more than the JIT
/// threshold, and each execution was compiled again: 300 ms of server CPU per array listing).
#[test]
fn sessions_run_without_jit_and_without_sequential_scans() {
    let Some(f) = common::postgres() else { return };
    let store = outcore_store::PgStore::open(&f.url).unwrap();
    assert_eq!(store.session_setting("jit").unwrap(), "off");
    assert_eq!(store.session_setting("enable_seqscan").unwrap(), "off");
    assert_eq!(store.session_setting("plan_cache_mode").unwrap(), "force_generic_plan");
}

/// Commits of several handles (processes would do the same) that queue while the commit lock
/// is taken go to the server together: the first two lead (one sent while the other runs: each
/// alone, nothing was queued when they came), the next ones queue and go in one transaction.
/// Each still gets its own tid, in queue order, its rows bound to it (every tid reads back);
/// a group with a conflict writes nothing, its members then landing or conflicting alone as
/// they would have.
#[test]
fn small_commits_waiting_together_go_in_one_transaction_and_keep_their_own_tids() {
    let Some(f) = common::postgres() else { return };
    let (id, base) = array_of(&f, 6, 6, outcore_store::Codec::None);
    let page = |blk: u64, p: u32, byte: u8| {
        let mut c = Commit::new();
        c.write_pages_from(id, blk, [p], move |pages: &[u32], block: &mut [u8]| {
            for p in pages {
                block[*p as usize * 4096..(*p as usize + 1) * 4096].fill(byte);
            }
            Ok(())
        });
        c
    };
    let mut watch = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
    let group = outcore_store::PgStore::open(&f.url).unwrap();
    // `leaders` start while the lock is held and wait for it in the server; then `queued`
    // start and queue; then the lock is released. The results, leaders first.
    let mut grouped = |leaders: Vec<Commit>, queued: Vec<Commit>, base: u64| -> Vec<Result<u64, Error>> {
        let mut holder = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
        holder.batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({COMMIT_LOCK})")).unwrap();
        let start = |commits: Vec<Commit>| -> Vec<_> {
            commits
                .into_iter()
                .map(|c| {
                    let store = outcore_store::open(&f.url).unwrap();
                    std::thread::spawn(move || store.commit(base, c))
                })
                .collect()
        };
        let until = |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !done() {
                assert!(Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let (nl, nq) = (leaders.len() as i64, queued.len());
        let mut handles = start(leaders);
        until(
            "the leaders wait for the commit lock",
            Box::new(|| {
                let n: i64 = watch
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE wait_event = 'advisory' AND datname = current_database()",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                n == nl
            }),
        );
        handles.extend(start(queued));
        until("the others queue", Box::new(|| group.group_queued() == Some(nq)));
        holder.batch_execute("COMMIT").unwrap();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    let results =
        grouped(vec![page(0, 2, 50), page(1, 2, 51)], vec![page(2, 2, 52), page(3, 2, 53), page(4, 2, 54)], base);
    let mut tids: Vec<u64> = results.into_iter().map(|r| r.unwrap()).collect();
    tids.sort_unstable();
    assert_eq!(tids, (base + 1..=base + 5).collect::<Vec<_>>());
    let mut sql = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
    let xacts: i64 = sql
        .query_one("SELECT count(DISTINCT xmin::text) FROM outcore_txn WHERE tid > $1", &[&(base as i64)])
        .unwrap()
        .get(0);
    assert_eq!(xacts, 3, "two leaders alone, then the three queued together");
    let load = |blk: u64, at: u64| {
        let mut buf = vec![0u8; 65536];
        f.store.load(id, blk, at, &mut buf).unwrap_or_else(|e| panic!("block {blk} at {at}: {e}"));
        buf[2 * 4096]
    };
    // Each block changed at one tid of its own, read from its own history.
    let mut at = Vec::new();
    for blk in 0..5u64 {
        let changed: Vec<u64> = (base + 1..=base + 5).filter(|t| load(blk, *t) != load(blk, *t - 1)).collect();
        assert_eq!(changed.len(), 1, "block {blk} changed once");
        at.push(changed[0]);
        assert_eq!(load(blk, base), blk as u8 + 1);
        assert_eq!(load(blk, base + 5), 50 + blk as u8);
    }
    at.sort_unstable();
    at.dedup();
    assert_eq!(at.len(), 5, "each commit has its own tid");
    // A group holding two writes of one block: the second's read check fails, the group
    // writes nothing, and alone one of the two lands, the other conflicts; the third lands.
    let head = base + 5;
    let results = grouped(vec![page(4, 7, 1), page(5, 7, 2)], vec![page(0, 5, 7), page(0, 5, 8), page(3, 9, 9)], head);
    assert!(results[..2].iter().all(|r| r.is_ok()), "{results:?}");
    assert!(results[4].is_ok(), "{results:?}");
    let pair = &results[2..4];
    assert_eq!(pair.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(pair.iter().any(|r| matches!(r, Err(e) if e.is_conflict())), "{results:?}");
    let last = f.store.head().unwrap();
    assert_eq!(last, head + 4);
    let mut buf = vec![0u8; 65536];
    f.store.load(id, 0, last, &mut buf).unwrap();
    assert!(buf[5 * 4096] == 7 || buf[5 * 4096] == 8);
    f.store.load(id, 3, last, &mut buf).unwrap();
    assert_eq!(buf[9 * 4096], 9);
}
