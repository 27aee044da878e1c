//! Bounded memory: scanning 8 GiB of views with a 512 MiB budget keeps the process's peak
//! resident memory under budget + 128 MiB, and every page read is correct. The only test of
//! this binary, so the peak (VmHWM) is this scan's.

mod common;

use common::*;

fn vm_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn scan_8gib_with_512mib_budget() {
    let budget: u64 = 512 << 20;
    let total: u64 = 8 << 30;
    let p = pager(budget);
    let src = MemSource::sparse();
    let nblk = total / BS as u64;
    let f = p.open_file(src.clone(), BS, total).unwrap();
    // Two views over halves plus one over everything: eviction must clear all of them.
    let half = nblk / 2;
    let a = f.map(0..half).unwrap();
    let b = f.map(half..nblk).unwrap();
    let whole = f.map(0..nblk).unwrap();
    let base = vm_kib("VmRSS:");
    for (v, first) in [(&a, 0u64), (&b, half)] {
        let n = v.len() / BS;
        for i in 0..n {
            for page in (0..BS / 4096).step_by(1) {
                let got = rd64(v, i * BS + page * 4096);
                assert_eq!(got, sparse_word(first + i as u64, page), "block {} page {page}", first + i as u64);
            }
        }
    }
    // A second pass through another view, sampled.
    for i in (0..nblk as usize).step_by(7) {
        assert_eq!(rd64(&whole, i * BS + 4096 * 3), sparse_word(i as u64, 3));
    }
    let hwm = vm_kib("VmHWM:") * 1024;
    let st = p.stats();
    eprintln!("base RSS {} MiB, peak {} MiB, stats {st:?}", base >> 10, hwm >> 20);
    assert!(st.evictions > 0);
    assert!(eventually(|| p.stats().bytes_resident <= budget), "{:?}", p.stats());
    assert!(hwm < budget + (128 << 20), "peak RSS {} MiB over budget {} MiB + 128 MiB", hwm >> 20, budget >> 20);
}
