//! Crash tests: `OUTCORE_FAILPOINT=<name>` makes the process abort at that point, as if it was
//! killed there (its locks go with it, its connections close). Points: `commit-before-home`
//! (SQLite: a commit's redo is durable, its bytes not home yet), `group-leader-before-send`
//! and `group-leader-after-reply` (PostgreSQL: a group-commit leader with other processes'
//! commits in its group, before the group goes to the server, or after the server committed
//! it and before the members are told).

/// Aborts the process if `OUTCORE_FAILPOINT` names `name` (after saying so on stderr).
pub(crate) fn failpoint(name: &str) {
    if std::env::var_os("OUTCORE_FAILPOINT").is_some_and(|v| v == name) {
        eprintln!("outcore: failpoint {name}: aborting");
        std::process::abort();
    }
}
