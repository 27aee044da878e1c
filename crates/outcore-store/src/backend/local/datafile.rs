//! The data file of a local store (`<store>.blocks`): block extents, uncompressed and aligned
//! to their block size, that views map `MAP_PRIVATE`. The file only grows (a mapping beyond its
//! end would fault with SIGBUS); space is reused extent by extent, and a committed extent is
//! never overwritten, trimmed or punched while a snapshot may map it (the registry decides).

use crate::error::{Error, Result};
use nix::fcntl::{fallocate, FallocateFlags};
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The open data file.
#[derive(Debug)]
pub(crate) struct DataFile {
    path: PathBuf,
    file: Arc<File>,
}

impl DataFile {
    /// Open (creating) the data file at `path`.
    pub fn open(path: &Path) -> Result<DataFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| Error::Io { op: "open the data file", path: path.display().to_string(), source })?;
        Ok(DataFile { path: path.to_path_buf(), file: Arc::new(file) })
    }

    fn err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io { op, path: self.path.display().to_string(), source }
    }

    /// The file, for mapping.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Read `buf.len()` bytes at `off`.
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, off).map_err(self.err("read a block extent"))
    }

    /// Write `data` at `off`.
    pub fn write_at(&self, off: u64, data: &[u8]) -> Result<()> {
        self.file.write_all_at(data, off).map_err(self.err("write a block extent"))
    }

    /// Copy `len` bytes from `from` to `to` within the file, in the kernel (`copy_file_range`).
    pub fn copy_from(&self, from: u64, to: u64, len: u64) -> Result<()> {
        let (mut a, mut b, mut left) = (from as i64, to as i64, len as usize);
        let fail = |source: std::io::Error| Error::Io {
            op: "copy a block extent",
            path: self.path.display().to_string(),
            source,
        };
        while left > 0 {
            let n = nix::fcntl::copy_file_range(self.file.as_fd(), Some(&mut a), self.file.as_fd(), Some(&mut b), left)
                .map_err(|e| fail(e.into()))?;
            if n == 0 {
                return Err(fail(std::io::ErrorKind::UnexpectedEof.into()));
            }
            left -= n;
        }
        Ok(())
    }

    /// Make `[off, off+len)` read zeros and release its disk space. Only for extents nobody maps.
    pub fn punch(&self, off: u64, len: u64) -> Result<()> {
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        fallocate(self.file.as_fd(), flags, off as i64, len as i64).map_err(|e| Error::Io {
            op: "free a block extent",
            path: self.path.display().to_string(),
            source: e.into(),
        })
    }

    /// Reserve disk space for `[off, off+len)` (so that later writes there cannot fail for space).
    pub fn reserve(&self, off: u64, len: u64) -> Result<()> {
        fallocate(self.file.as_fd(), FallocateFlags::FALLOC_FL_KEEP_SIZE, off as i64, len as i64).map_err(|e| {
            Error::Io { op: "reserve space in the data file", path: self.path.display().to_string(), source: e.into() }
        })
    }

    /// Grow the file to at least `end` bytes (sparse; never shrinks).
    pub fn ensure_len(&self, end: u64) -> Result<()> {
        let len = self.file.metadata().map_err(self.err("read the data file size"))?.len();
        if len < end {
            self.file.set_len(end).map_err(self.err("grow the data file"))?;
        }
        Ok(())
    }

    /// Make written extents durable (`fdatasync`). A failure fails the commit: the kernel may
    /// have dropped the dirty pages, so a retry cannot be trusted.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(self.err("sync the data file"))
    }
}
