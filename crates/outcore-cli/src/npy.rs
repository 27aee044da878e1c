//! NumPy `.npy` files: a header (magic, version, a Python dict literal with `descr`,
//! `fortran_order` and `shape`, padded to 64 bytes) followed by the raw bytes, which are exactly
//! an outcore array's byte file. Written and read block by block.

use anyhow::{anyhow, bail, Context, Result};
use outcore::store::{ArrayMeta, Order};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Where a file is written before it is renamed into place.
pub fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    file.with_file_name(name)
}

/// The header of an array with `meta`.
pub fn header(meta: &ArrayMeta) -> Vec<u8> {
    let descr = outcore::Dtype::parse(&meta.dtype)
        .ok()
        .and_then(|d| d.npy_descr())
        .unwrap_or_else(|| format!("'{}'", meta.dtype));
    let shape = match meta.shape.len() {
        1 => format!("({},)", meta.shape[0]),
        _ => format!("({})", meta.shape.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    };
    let fortran = if meta.order == Order::F { "True" } else { "False" };
    let dict = format!("{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}");
    // Version 1 has a 2-byte header length, version 2 a 4-byte one.
    let (version, lenbytes) = if dict.len() + 12 < 65_535 { (1u8, 2usize) } else { (2u8, 4usize) };
    let pre = 6 + 2 + lenbytes;
    let total = (pre + dict.len() + 1).div_ceil(64) * 64;
    let hlen = total - pre;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY");
    out.extend_from_slice(&[version, 0]);
    if lenbytes == 2 {
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Write the array of `meta` to `path`: the header, then each block as `load(blk, buf)` fills
/// it (`buf` is the block's part of the array: the last one may be shorter). Synced to disk.
pub fn write(path: &Path, meta: &ArrayMeta, mut load: impl FnMut(u64, &mut [u8]) -> Result<()>) -> Result<()> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    w.write_all(&header(meta))?;
    let bs = meta.blksize;
    let mut buf = vec![0u8; bs as usize];
    for blk in 0..meta.nblocks() {
        load(blk, &mut buf)?;
        let n = (meta.nbytes - blk * bs).min(bs) as usize;
        w.write_all(&buf[..n]).with_context(|| format!("writing {}", path.display()))?;
    }
    let f = w.into_inner().map_err(|e| anyhow!("writing {}: {}", path.display(), e.error()))?;
    f.sync_all()?;
    Ok(())
}

/// An open `.npy` file.
pub struct Source {
    /// The file.
    pub file: File,
    /// The dtype descr (a type string, or a structured descr's Python literal).
    pub descr: String,
    /// Column-major data.
    pub fortran_order: bool,
    /// The shape.
    pub shape: Vec<u64>,
    /// Where the data starts.
    pub data_offset: u64,
}

/// Open a `.npy` file and parse its header.
pub fn open(path: &Path) -> Result<Source> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let bad = |why: &str| anyhow!("{} is not a .npy file NumPy writes: {why}", path.display());
    let mut pre = [0u8; 8];
    file.read_exact(&mut pre).map_err(|_| bad("too short"))?;
    if &pre[..6] != b"\x93NUMPY" {
        bail!(bad("no NumPy magic"));
    }
    let (hlen, pre_len) = match pre[6] {
        1 => {
            let mut l = [0u8; 2];
            file.read_exact(&mut l)?;
            (u16::from_le_bytes(l) as usize, 10)
        }
        2 | 3 => {
            let mut l = [0u8; 4];
            file.read_exact(&mut l)?;
            (u32::from_le_bytes(l) as usize, 12)
        }
        v => bail!(bad(&format!("unknown version {v}"))),
    };
    let mut h = vec![0u8; hlen];
    file.read_exact(&mut h).map_err(|_| bad("truncated header"))?;
    let h = String::from_utf8(h).map_err(|_| bad("header is not text"))?;
    let descr = value_of(&h, "descr").ok_or_else(|| bad("no descr"))?;
    let descr =
        if let Some(s) = descr.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) { s.to_string() } else { descr };
    let fortran_order = match value_of(&h, "fortran_order").as_deref() {
        Some("True") => true,
        Some("False") => false,
        _ => bail!(bad("no fortran_order")),
    };
    let shape_text = value_of(&h, "shape").ok_or_else(|| bad("no shape"))?;
    let shape = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<u64>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad("bad shape"))?;
    if descr.contains('O') && !descr.starts_with('[') {
        bail!("{}: object arrays hold Python objects, not bytes", path.display());
    }
    Ok(Source { file, descr, fortran_order, shape, data_offset: (pre_len + hlen) as u64 })
}

/// The text of `key`'s value in a Python dict literal: a quoted string, a bracketed or
/// parenthesized group (nesting and quotes respected), or a bare word.
fn value_of(dict: &str, key: &str) -> Option<String> {
    let k1 = format!("'{key}'");
    let k2 = format!("\"{key}\"");
    let at = dict.find(&k1).map(|i| i + k1.len()).or_else(|| dict.find(&k2).map(|i| i + k2.len()))?;
    let rest = dict[at..].trim_start().strip_prefix(':')?.trim_start();
    let b = rest.as_bytes();
    let end = match *b.first()? {
        q @ (b'\'' | b'"') => rest[1..].find(q as char)? + 2,
        b'[' | b'(' => {
            let (mut depth, mut quote) = (0i32, None::<u8>);
            let mut end = None;
            for (i, &c) in b.iter().enumerate() {
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None => match c {
                        b'\'' | b'"' => quote = Some(c),
                        b'[' | b'(' => depth += 1,
                        b']' | b')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(i + 1);
                                break;
                            }
                        }
                        _ => {}
                    },
                }
            }
            end?
        }
        _ => rest.find([',', '}']).unwrap_or(rest.len()),
    };
    Some(rest[..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        for (dtype, shape, order) in [
            ("<f8", vec![3u64, 4], Order::C),
            ("|u1", vec![10], Order::F),
            ("[('x', '<f4'), ('y', '<i8', (3,))]", vec![2, 2, 2], Order::C),
            ("<f4", vec![], Order::C),
        ] {
            let meta = ArrayMeta::new(dtype, shape.clone(), order, 0);
            let h = header(&meta);
            assert_eq!(h.len() % 64, 0);
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("a.npy");
            std::fs::write(&p, &h).unwrap();
            let s = open(&p).unwrap();
            assert_eq!((s.descr.as_str(), s.shape, s.fortran_order), (dtype, shape, order == Order::F));
            assert_eq!(s.data_offset, h.len() as u64);
        }
    }
}
