"""NumPy dtypes from the dtype descriptions the store keeps.

The core's `outcore::Dtype` reads them (see `docs/design/006-python-layer.md`): a type string
(`"<f8"`) for plain dtypes; for structured ones a JSON object with explicit offsets (format 2,
written now) or, for arrays written before, the repr of `dtype.descr` (format 1). The extension
rebuilds the NumPy dtype from names, formats and explicit offsets, so padded and aligned layouts
come back equal to the dtype the array was created with."""

from outcore._outcore import dtype_from_descr as from_descr

__all__ = ["from_descr"]
