//! Dtypes: NumPy descr strings, their item size, and the Rust element types views can use.

use crate::error::{Error, Result};

/// Item size in bytes of a NumPy dtype descr: a type string (`"<f8"`, `"|u1"`, `"<U5"`,
/// `"<M8[ns]"`, `"|V16"`) or a structured descr in its Python repr
/// (`"[('x', '<f4'), ('y', '<i8', (3,))]"`, nested lists and `(title, name)` pairs allowed).
/// `None` if the descr cannot be parsed or holds Python objects.
pub fn descr_itemsize(descr: &str) -> Option<u64> {
    let mut p = Parser { s: descr.as_bytes(), i: 0 };
    let n = p.type_spec()?;
    p.ws();
    (p.i == p.s.len()).then_some(n)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A quoted Python string literal.
    fn string(&mut self) -> Option<&str> {
        let q = self.peek()?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        let start = self.i + 1;
        let len = self.s[start..].iter().position(|c| *c == q)?;
        self.i = start + len + 1;
        std::str::from_utf8(&self.s[start..start + len]).ok()
    }

    fn int(&mut self) -> Option<u64> {
        self.ws();
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
    }

    /// A bare type string (at top level) or a quoted one, or a list of fields.
    fn type_spec(&mut self) -> Option<u64> {
        match self.peek()? {
            b'[' => self.fields(),
            b'\'' | b'"' => typestr_itemsize(self.string()?),
            _ => {
                let s = std::str::from_utf8(&self.s[self.i..]).ok()?.trim();
                self.i = self.s.len();
                typestr_itemsize(s)
            }
        }
    }

    fn fields(&mut self) -> Option<u64> {
        self.eat(b'[')?;
        let mut total = 0u64;
        loop {
            if self.eat(b']').is_some() {
                return Some(total);
            }
            total = total.checked_add(self.field()?)?;
            if self.eat(b',').is_none() {
                self.eat(b']')?;
                return Some(total);
            }
        }
    }

    fn field(&mut self) -> Option<u64> {
        self.eat(b'(')?;
        if self.peek()? == b'(' {
            // (title, name)
            self.eat(b'(')?;
            self.string()?;
            self.eat(b',')?;
            self.string()?;
            self.eat(b')')?;
        } else {
            self.string()?;
        }
        self.eat(b',')?;
        let mut size = match self.peek()? {
            b'[' => self.fields()?,
            _ => typestr_itemsize(self.string()?)?,
        };
        if self.eat(b',').is_some() {
            if self.peek()? == b'(' {
                self.eat(b'(')?;
                loop {
                    if self.eat(b')').is_some() {
                        break;
                    }
                    size = size.checked_mul(self.int()?)?;
                    if self.eat(b',').is_none() {
                        self.eat(b')')?;
                        break;
                    }
                }
            } else {
                size = size.checked_mul(self.int()?)?;
            }
        }
        self.eat(b')')?;
        Some(size)
    }
}

/// Item size of a NumPy type string such as `"<f8"`, `"|S10"`, `"<U5"` (characters: 4 bytes
/// each) or `"<m8[s]"`.
fn typestr_itemsize(s: &str) -> Option<u64> {
    let s = s.strip_prefix(['<', '>', '|', '=']).unwrap_or(s);
    let s = match s.find('[') {
        Some(i) if s.ends_with(']') => &s[..i],
        Some(_) => return None,
        None => s,
    };
    let mut chars = s.chars();
    let kind = chars.next()?;
    let n: u64 = chars.as_str().parse().ok()?;
    match kind {
        'b' | 'i' | 'u' | 'f' | 'c' | 'm' | 'M' | 'S' | 'a' | 'V' => Some(n),
        'U' => n.checked_mul(4),
        _ => None,
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A plain Rust element type that typed views can hold: every bit pattern is a valid value.
/// Implemented for the fixed-size integers and floats; sealed.
pub trait Element: sealed::Sealed + Copy + Send + Sync + 'static {
    /// NumPy kind character (`'i'`, `'u'`, `'f'`).
    const KIND: char;

    /// Appends the little-endian bytes of `self` to `out`.
    fn put_le(&self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($($t:ty => $k:literal),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const KIND: char = $k;

            fn put_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

element!(i8 => 'i', i16 => 'i', i32 => 'i', i64 => 'i', u8 => 'u', u16 => 'u', u32 => 'u', u64 => 'u',
    f32 => 'f', f64 => 'f');

/// The little-endian NumPy type string of `T`, e.g. `"<f8"` for `f64` (`"|u1"` for bytes).
pub fn descr_of<T: Element>() -> String {
    let n = std::mem::size_of::<T>();
    if n == 1 {
        format!("|{}1", T::KIND)
    } else {
        format!("<{}{n}", T::KIND)
    }
}

/// Checks that elements of type `T` can be read from an array of dtype `descr`.
pub(crate) fn check_element<T: Element>(descr: &str) -> Result<()> {
    let want = std::mem::size_of::<T>();
    let t = std::any::type_name::<T>();
    let bad =
        || Error::Dtype(format!("array of dtype '{descr}' cannot be viewed as {t} (NumPy '{}')", descr_of::<T>()));
    let (order, rest) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let mut chars = rest.chars();
    let kind = chars.next().ok_or_else(bad)?;
    let n: usize = chars.as_str().parse().map_err(|_| bad())?;
    if kind != T::KIND || n != want {
        return Err(bad());
    }
    if want > 1 && (order == '>' || (order == '=' && cfg!(target_endian = "big"))) {
        return Err(Error::Dtype(format!("array of dtype '{descr}' is big-endian; {t} views need little-endian data")));
    }
    if want > 1 && cfg!(target_endian = "big") {
        return Err(Error::Dtype(format!("typed views of '{descr}' need a little-endian host")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itemsizes() {
        assert_eq!(descr_itemsize("<f8"), Some(8));
        assert_eq!(descr_itemsize("|u1"), Some(1));
        assert_eq!(descr_itemsize("<U5"), Some(20));
        assert_eq!(descr_itemsize("<M8[ns]"), Some(8));
        assert_eq!(descr_itemsize("|V16"), Some(16));
        assert_eq!(descr_itemsize("[('x', '<f4'), ('y', '<i8', (3,))]"), Some(28));
        assert_eq!(descr_itemsize("[('', '<f8')]"), Some(8));
        assert_eq!(
            descr_itemsize("[('a', '|u1'), ('', '|V3'), ('s', [('b', '<i4'), ('c', '<f8', (2, 3))])]"),
            Some(56)
        );
        assert_eq!(descr_itemsize("[(('t', 'a'), '<f4')]"), Some(4));
        assert_eq!(descr_itemsize("|O"), None);
        assert_eq!(descr_itemsize("float"), None);
        assert_eq!(descr_itemsize("[('x', '<f4')"), None);
    }

    #[test]
    fn elements() {
        assert!(check_element::<f64>("<f8").is_ok());
        assert!(check_element::<u8>("|u1").is_ok());
        assert!(check_element::<f32>("<f8").is_err());
        assert!(check_element::<i64>(">i8").is_err());
        assert_eq!(descr_of::<i16>(), "<i2");
    }
}
