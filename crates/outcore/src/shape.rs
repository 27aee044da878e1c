//! Shapes and sizes: the rules every layer shares. The core owns them; the Python bindings
//! (and through them the pure-Python `RAMArray`) call these instead of restating them.

use outcore_store::{Order, MAX_BLKSIZE, MIN_BLKSIZE};

use crate::error::{Error, Result};

/// Largest array size in bytes: it fits signed 64-bit SQL integers and the address space.
pub const MAX_NBYTES: u64 = i64::MAX as u64;

/// `product(shape) * itemsize`, checked against [`MAX_NBYTES`].
pub fn nbytes_of(shape: &[u64], itemsize: u64) -> Result<u64> {
    shape
        .iter()
        .try_fold(itemsize, |acc, d| acc.checked_mul(*d))
        .filter(|n| *n <= MAX_NBYTES)
        .ok_or_else(|| Error::Shape(format!("shape {shape:?} of {itemsize}-byte items exceeds {MAX_NBYTES} bytes")))
}

/// The major (append) axis of an array of `ndim` dimensions: axis 0 in C order, the last axis
/// in F order (0 for a 0-dimensional array, which cannot be appended to).
pub fn major_axis(order: Order, ndim: usize) -> usize {
    match order {
        Order::C => 0,
        Order::F => ndim.saturating_sub(1),
    }
}

/// The shape after appending values of shape `values` along the major axis of an array of
/// `shape` in `order`: every other dimension must match exactly. `name` names the array in
/// the error (`None`: "an array"). Growth beyond [`MAX_NBYTES`] is left to [`nbytes_of`].
pub fn appended_shape(shape: &[u64], order: Order, values: &[u64], name: Option<&str>) -> Result<Vec<u64>> {
    if shape.is_empty() {
        return Err(Error::Shape(match name {
            Some(n) => format!("cannot append to 0-dimensional array '{n}'"),
            None => "cannot append to a 0-dimensional array".to_string(),
        }));
    }
    let what = name.map_or_else(|| "an array".to_string(), |n| format!("array '{n}'"));
    let major = major_axis(order, shape.len());
    let fits =
        values.len() == shape.len() && values.iter().zip(shape).enumerate().all(|(i, (a, b))| i == major || a == b);
    if !fits {
        let order = match order {
            Order::C => "C",
            Order::F => "F",
        };
        return Err(Error::Shape(format!(
            "cannot append values of shape {values:?} to {what} of shape {shape:?} ({order} order): all dimensions \
             but axis {major} must match"
        )));
    }
    let mut new = shape.to_vec();
    new[major] = new[major]
        .checked_add(values[major])
        .ok_or_else(|| Error::Shape(format!("appending {} to {what} overflows its shape", values[major])))?;
    Ok(new)
}

/// Checks a block size: a power of two in `MIN_BLKSIZE..=MAX_BLKSIZE` (what the store and the
/// pager accept).
pub fn check_blksize(blksize: u64) -> Result<()> {
    if !blksize.is_power_of_two() || !(MIN_BLKSIZE..=MAX_BLKSIZE).contains(&blksize) {
        return Err(Error::InvalidArgument(format!(
            "block size {blksize} must be a power of two in {MIN_BLKSIZE}..={MAX_BLKSIZE}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(nbytes_of(&[2, 3, 4], 8).ok(), Some(192));
        assert_eq!(nbytes_of(&[], 8).ok(), Some(8));
        assert_eq!(nbytes_of(&[0, u64::MAX], 8).ok(), Some(0));
        assert!(nbytes_of(&[1 << 62, 2], 1).is_err());
        assert!(nbytes_of(&[u64::MAX, 2], 8).is_err());
        assert!(check_blksize(4096).is_ok());
        assert!(check_blksize(3 * 4096).is_err());
        assert!(check_blksize(MAX_BLKSIZE * 2).is_err());
    }

    #[test]
    fn appends() {
        assert_eq!(major_axis(Order::C, 3), 0);
        assert_eq!(major_axis(Order::F, 3), 2);
        assert_eq!(major_axis(Order::F, 0), 0);
        assert_eq!(appended_shape(&[4, 3], Order::C, &[2, 3], None).ok(), Some(vec![6, 3]));
        assert_eq!(appended_shape(&[3, 4], Order::F, &[3, 2], Some("M")).ok(), Some(vec![3, 6]));
        let e = appended_shape(&[4, 3], Order::C, &[2, 2], Some("A")).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("to array 'A' of shape [4, 3] (C order): all dimensions but axis 0")));
        let e = appended_shape(&[], Order::C, &[], None).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("cannot append to a 0-dimensional array")));
        assert!(appended_shape(&[u64::MAX, 0], Order::C, &[1, 0], None).is_err());
    }
}
