//! A store served by userfaultfd while only user-mode faults are handled warns at open and says
//! what to do; local stores (mapped through the page cache) do not.

mod common;

use outcore::pager::{Pager, PagerConfig};
use outcore::Db;

fn user_mode_only() -> std::sync::Arc<Pager> {
    Pager::new(PagerConfig { force_user_mode_only: true, ..PagerConfig::default() }).expect("pager")
}

#[test]
fn a_local_store_needs_no_warning() {
    let f = common::sqlite();
    let db = Db::open(&f.url, common::options().pager(user_mode_only())).expect("open");
    assert_eq!(db.engine_warning(), None);
}

#[test]
fn a_remote_store_under_user_mode_faults_warns_with_the_fix() {
    let Some(f) = common::postgres() else { return };
    let db = Db::open(&f.url, common::options().pager(user_mode_only())).expect("open");
    let w = db.engine_warning().expect("a warning");
    assert!(
        w.contains("EFAULT") && w.contains("vm.unprivileged_userfaultfd=1") && w.contains("/dev/userfaultfd"),
        "{w}"
    );
    let full = Db::open(&f.url, common::options()).expect("open");
    if full.pager().capabilities().kernel_mode_faults {
        assert_eq!(full.engine_warning(), None);
    }
}
