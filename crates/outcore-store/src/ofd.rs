//! Open file description locks (`fcntl(2)` `F_OFD_*`): byte-range locks that belong to one open
//! file description (so two descriptors of one process compete too) and go away with it, or
//! with the process. The SQLite reader registry and PostgreSQL's group-commit table use them.

use std::fs::File;

use nix::fcntl::{fcntl, FcntlArg};

/// A `struct flock` for an OFD lock request on `[start, start+len)`.
pub(crate) fn flock(kind: libc::c_short, start: u64, len: u64) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start as libc::off_t,
        l_len: len as libc::off_t,
        l_pid: 0, // required by OFD locks
    }
}

/// Sets (or clears, with `F_UNLCK`) an OFD lock of `kind` on `[start, start+len)` of `fd`;
/// `wait` blocks until granted. Returns false when a request that does not wait conflicts.
pub(crate) fn lock(fd: &File, kind: libc::c_short, start: u64, len: u64, wait: bool) -> std::io::Result<bool> {
    let l = flock(kind, start, len);
    loop {
        let arg = if wait { FcntlArg::F_OFD_SETLKW(&l) } else { FcntlArg::F_OFD_SETLK(&l) };
        match fcntl(fd, arg) {
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) if !wait => return Ok(false),
            Err(e) => return Err(std::io::Error::from(e)),
        }
    }
}
