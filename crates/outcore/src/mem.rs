//! Views over pager memory: one of the two modules of the core with `unsafe` code (the other is
//! `fork.rs`; see docs/ARCHITECTURE.md, "Where `unsafe` lives").
//!
//! Each guard owns a pager [`View`] (a shared mapping of whole blocks of an array's page
//! cache) and hands out slices or `ndarray` views borrowing the guard. Bounds and alignment are
//! checked when a guard is built; the element types are plain numbers (every bit pattern is a
//! valid value, see [`Element`]).
//!
//! # Aliasing
//! Like two `memmap2::MmapMut` of one file, views of the same array in one connection alias
//! each other (they share the page cache), and a transaction boundary (commit, abort, sync) or
//! a resize of the connection may change the bytes under a view (blocks others changed reload
//! from the new snapshot; shrunk areas read zeros). Keep the borrowed slices and `ndarray`
//! views short-lived and do not hold two overlapping mutable ones at once.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ptr::NonNull;

use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn, ShapeBuilder};
use outcore_pager::View;

use crate::dtype::Element;
use crate::error::{Error, Result};

/// The bytes of `values` in their stored (little-endian) form: borrowed on little-endian
/// hosts, converted on others.
pub(crate) fn element_bytes<T: Element>(values: &[T]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: `T: Element` is a primitive integer or float: no padding, every byte
        // initialized; `size_of_val` bytes from its start are exactly the slice's memory, and
        // `u8` has alignment 1. The borrow keeps `values` alive.
        std::borrow::Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        })
    } else {
        let mut bytes = Vec::with_capacity(std::mem::size_of_val(values));
        for v in values {
            v.put_le(&mut bytes);
        }
        std::borrow::Cow::Owned(bytes)
    }
}

/// The checked layout of a guard: memory `[offset, offset + span)` of `view`.
#[derive(Debug)]
struct Raw {
    view: Option<View>,
    offset: usize,
    span: usize,
}

impl Raw {
    fn new(view: Option<View>, offset: usize, span: usize, align: usize) -> Result<Raw> {
        let len = view.as_ref().map_or(0, View::len);
        let end = offset.checked_add(span).filter(|e| *e <= len);
        if end.is_none() || (span > 0 && view.is_none()) {
            return Err(Error::OutOfRange(format!("{span} bytes at offset {offset} exceed a view of {len} bytes")));
        }
        if let Some(v) = &view {
            if (v.as_ptr() as usize).wrapping_add(offset) % align != 0 {
                return Err(Error::InvalidArgument(format!("offset {offset} is not aligned to {align} bytes")));
            }
        }
        Ok(Raw { view, offset, span })
    }

    /// Start of the memory, or a dangling aligned pointer when it is empty.
    fn ptr<T>(&self) -> *mut T {
        match &self.view {
            Some(v) if self.span > 0 => v.as_ptr().wrapping_add(self.offset).cast(),
            _ => NonNull::<T>::dangling().as_ptr(),
        }
    }
}

/// Read-only bytes of an array, loaded on first touch. See the [crate docs](crate#aliasing) on aliasing.
#[derive(Debug)]
pub struct BytesView {
    raw: Raw,
}

/// Writable bytes of an array: writes are tracked and committed with the transaction.
#[derive(Debug)]
pub struct BytesViewMut {
    raw: Raw,
}

impl BytesView {
    pub(crate) fn new(view: Option<View>, offset: usize, len: usize) -> Result<Self> {
        Ok(BytesView { raw: Raw::new(view, offset, len, 1)? })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `Raw::new` checked that [offset, offset + span) lies in the mapping, which
        // stays mapped while `self.raw.view` lives (at least as long as the returned borrow);
        // an empty span uses a dangling, aligned pointer, valid for zero bytes.
        unsafe { std::slice::from_raw_parts(self.raw.ptr::<u8>(), self.raw.span) }
    }
}

impl BytesViewMut {
    pub(crate) fn new(view: Option<View>, offset: usize, len: usize) -> Result<Self> {
        Ok(BytesViewMut { raw: Raw::new(view, offset, len, 1)? })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: as in `BytesView::as_slice`.
        unsafe { std::slice::from_raw_parts(self.raw.ptr::<u8>(), self.raw.span) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `BytesView::as_slice`; the mapping is writable (`MAP_SHARED`,
        // `PROT_READ | PROT_WRITE`) and the `&mut self` borrow makes this the only slice handed
        // out by this guard.
        unsafe { std::slice::from_raw_parts_mut(self.raw.ptr::<u8>(), self.raw.span) }
    }
}

/// Shape and strides (in elements) of a typed guard.
#[derive(Debug)]
struct Typed<T> {
    raw: Raw,
    shape: Vec<usize>,
    strides: Vec<usize>,
    _t: PhantomData<T>,
}

impl<T: Element> Typed<T> {
    fn new(view: Option<View>, offset: usize, shape: Vec<usize>, strides: Vec<usize>) -> Result<Self> {
        let size = std::mem::size_of::<T>();
        let empty = shape.contains(&0);
        let span = if empty {
            Some(0)
        } else {
            let last = shape
                .iter()
                .zip(&strides)
                .try_fold(0usize, |acc, (n, s)| (n - 1).checked_mul(*s).and_then(|x| acc.checked_add(x)));
            last.and_then(|l| l.checked_add(1)).and_then(|n| n.checked_mul(size)).filter(|b| *b <= isize::MAX as usize)
        }
        .ok_or_else(|| Error::Shape(format!("view of shape {shape:?} with strides {strides:?} is too large")))?;
        let view = if empty { None } else { view };
        Ok(Typed { raw: Raw::new(view, offset, span, std::mem::align_of::<T>())?, shape, strides, _t: PhantomData })
    }

    fn view(&self) -> ArrayViewD<'_, T> {
        let shape = IxDyn(&self.shape).strides(IxDyn(&self.strides));
        // SAFETY: `Typed::new` checked that every element reachable from the start with the
        // non-negative strides lies within [offset, offset + span), inside the mapping (which
        // lives as long as `self`), that the span fits `isize`, and that the start is aligned
        // for `T`; `T: Element` accepts every bit pattern. Empty arrays use a dangling aligned
        // pointer, which ndarray allows.
        unsafe { ArrayViewD::from_shape_ptr(shape, self.raw.ptr::<T>()) }
    }

    fn view_mut(&mut self) -> ArrayViewMutD<'_, T> {
        let shape = IxDyn(&self.shape).strides(IxDyn(&self.strides));
        // SAFETY: as in `view`; the mapping is writable, the strides of an array layout never
        // make two indices overlap, and `&mut self` makes this the only view of this guard.
        unsafe { ArrayViewMutD::from_shape_ptr(shape, self.raw.ptr::<T>()) }
    }
}

/// A read-only typed view of (part of) an array, loaded on first touch. Holds its mapping;
/// see the [crate docs](crate#aliasing) on aliasing.
#[derive(Debug)]
pub struct ArrayGuard<T: Element> {
    typed: Typed<T>,
}

/// A writable typed view of (part of) an array: writes are tracked and committed with the
/// transaction.
#[derive(Debug)]
pub struct ArrayGuardMut<T: Element> {
    typed: Typed<T>,
}

impl<T: Element> ArrayGuard<T> {
    pub(crate) fn new(view: Option<View>, offset: usize, shape: Vec<usize>, strides: Vec<usize>) -> Result<Self> {
        Ok(ArrayGuard { typed: Typed::new(view, offset, shape, strides)? })
    }

    /// The `ndarray` view.
    pub fn view(&self) -> ArrayViewD<'_, T> {
        self.typed.view()
    }
}

impl<T: Element> ArrayGuardMut<T> {
    pub(crate) fn new(view: Option<View>, offset: usize, shape: Vec<usize>, strides: Vec<usize>) -> Result<Self> {
        Ok(ArrayGuardMut { typed: Typed::new(view, offset, shape, strides)? })
    }

    /// The `ndarray` view.
    pub fn view(&self) -> ArrayViewD<'_, T> {
        self.typed.view()
    }

    /// The writable `ndarray` view.
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, T> {
        self.typed.view_mut()
    }
}
