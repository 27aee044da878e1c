//! The data file of a local store (`<store>.blocks`): block extents, uncompressed and aligned
//! to their block size, that views map `MAP_PRIVATE`. The file only grows (a mapping beyond its
//! end would fault with SIGBUS); space is reused extent by extent, and a committed extent is
//! never overwritten, trimmed or punched while a snapshot may map it (the registry decides).

use crate::error::{Error, Result};
use nix::fcntl::{fallocate, FallocateFlags};
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Alignment of direct I/O: offsets, lengths and buffer addresses (the page size; a multiple
/// of every logical block size in use).
const ALIGN: usize = 4096;

/// Bytes one direct write moves (the size of the bounce buffer).
const DIRECT_CHUNK: usize = 2 << 20;

/// Aligned runs shorter than this are written through the page cache.
const DIRECT_MIN: usize = 256 << 10;

/// The open data file.
#[derive(Debug)]
pub(crate) struct DataFile {
    path: PathBuf,
    file: Arc<File>,
    /// The same file opened `O_DIRECT` (none where the file system refuses it).
    direct: Option<Direct>,
}

/// Direct writes: a second descriptor and an aligned bounce buffer.
#[derive(Debug)]
struct Direct {
    file: File,
    /// `DIRECT_CHUNK + ALIGN` bytes, used from the first aligned address.
    bounce: Mutex<Vec<u8>>,
    /// Cleared when a direct write fails for alignment (the page cache serves from then on).
    usable: AtomicBool,
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
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path)
            .ok()
            .map(|file| Direct { file, bounce: Mutex::new(Vec::new()), usable: AtomicBool::new(true) });
        Ok(DataFile { path: path.to_path_buf(), file: Arc::new(file), direct })
    }

    /// Open the existing data file at `path` for reading only.
    pub fn open_read_only(path: &Path) -> Result<DataFile> {
        let file = File::open(path).map_err(|source| Error::Io {
            op: "open the data file",
            path: path.display().to_string(),
            source,
        })?;
        Ok(DataFile { path: path.to_path_buf(), file: Arc::new(file), direct: None })
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

    /// Write `data` at `off` into an extent no snapshot maps yet (a staged extent): the
    /// page-aligned middle of a large write goes around the page cache (`O_DIRECT`, through an
    /// aligned bounce buffer), so ingest writes each byte once and fills no page-cache memory;
    /// the kernel keeps the page cache coherent (it drops cached pages of the range and maps
    /// the new bytes into views on their next fault). The unaligned head and tail, small writes,
    /// and file systems without direct I/O take the page cache.
    pub fn write_new(&self, off: u64, data: &[u8]) -> Result<()> {
        let Some(d) = self.direct.as_ref().filter(|d| d.usable.load(Ordering::Relaxed)) else {
            return self.write_at(off, data);
        };
        let start = (off as usize).next_multiple_of(ALIGN) - off as usize;
        let end = ((off as usize + data.len()) / ALIGN * ALIGN).saturating_sub(off as usize);
        if end < start + DIRECT_MIN {
            return self.write_at(off, data);
        }
        self.write_at(off, &data[..start])?;
        let mut bounce = d.bounce.lock();
        if bounce.is_empty() {
            bounce.resize(DIRECT_CHUNK + ALIGN, 0);
        }
        let skip = bounce.as_ptr().align_offset(ALIGN);
        let buf = &mut bounce[skip..skip + DIRECT_CHUNK];
        let mut at = start;
        while at < end {
            let n = (end - at).min(DIRECT_CHUNK);
            buf[..n].copy_from_slice(&data[at..at + n]);
            match d.file.write_all_at(&buf[..n], off + at as u64) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    // Alignment this file system does not accept: the page cache from now on.
                    d.usable.store(false, Ordering::Relaxed);
                    drop(bounce);
                    return self.write_at(off + at as u64, &data[at..]);
                }
                Err(e) => return Err(self.err("write a block extent")(e)),
            }
            at += n;
        }
        drop(bounce);
        self.write_at(off + end as u64, &data[end..])
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
