//! Dtypes: the stored description of an element ([`Dtype`]), its item size, and the Rust
//! element types views can use.
//!
//! # The stored description (`ArrayMeta::dtype`), format 2
//! Written since format 2 (`DTYPE_FORMAT`):
//! - a plain dtype: its NumPy type string, `"<f8"`, `"|u1"`, `"<U5"` (4 bytes a character),
//!   `"<M8[ns]"`, `"|V16"` (unchanged from format 1);
//! - a structured dtype: a JSON object, `{"version": 2, "itemsize": 16, "fields": [...]}`, each
//!   field `{"name": "x", "offset": 0, "dtype": "<f4"}` plus `"shape": [3]` for a sub-array
//!   field and `"title": "t"` for a titled one; the `dtype` of a nested structured field is an
//!   object of the same form without `version`. Offsets are explicit, so padding and aligned
//!   layouts need no padding fields, and any language reads it with a JSON parser.
//!
//! Format 1 (outcore before format 2) stored a structured dtype as the Python repr of NumPy's
//! `dtype.descr` (`"[('x', '<f4'), ('', '|V4'), ('y', '<i8', (3,))]"`, padding as unnamed
//! fields). Such arrays still open: [`Dtype::parse`] reads that text with a small parser kept
//! for it (nothing rewrites it; an array keeps the text it was created with).

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The format of the stored dtype descriptions this version writes (see the module docs);
/// descriptions of formats 1 and 2 are read.
pub const DTYPE_FORMAT: u64 = 2;

/// A dtype as stored: a plain NumPy type string, or a structured dtype of named fields at byte
/// offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dtype {
    /// A NumPy type string such as `"<f8"`.
    Plain(String),
    /// Named fields in items of `itemsize` bytes (bytes no field covers are padding).
    Struct {
        /// Bytes per item.
        itemsize: u64,
        /// The fields, in NumPy's order.
        fields: Vec<Field>,
    },
}

/// A field of a structured [`Dtype`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Field {
    /// Name.
    pub name: String,
    /// NumPy's optional title (another name for the field).
    pub title: Option<String>,
    /// Byte offset in the item.
    pub offset: u64,
    /// The dtype of one element of the field.
    pub dtype: Dtype,
    /// The shape of a sub-array field (empty for a scalar one).
    pub shape: Vec<u64>,
}

impl Field {
    /// A scalar field `name` of `dtype` at byte `offset`.
    pub fn new(name: impl Into<String>, offset: u64, dtype: Dtype) -> Field {
        Field { name: name.into(), title: None, offset, dtype, shape: Vec::new() }
    }

    /// Sets the shape of a sub-array field.
    pub fn shape(mut self, shape: Vec<u64>) -> Field {
        self.shape = shape;
        self
    }

    /// Sets the title.
    pub fn title(mut self, title: Option<String>) -> Field {
        self.title = title;
        self
    }

    /// Bytes of the field: the element size times the sub-array's size.
    pub fn size(&self) -> Option<u64> {
        self.shape.iter().try_fold(self.dtype.itemsize(), |n, d| n.checked_mul(*d))
    }
}

impl Dtype {
    /// The dtype of a stored description: a type string, a format-2 JSON object, or a format-1
    /// Python repr of `dtype.descr`. [`Error::Dtype`] for anything else (object dtypes, text
    /// that does not parse, fields beyond the item, a format newer than [`DTYPE_FORMAT`]).
    pub fn parse(text: &str) -> Result<Dtype> {
        let bad = || Error::Dtype(format!("unsupported dtype description '{text}'"));
        let t = text.trim();
        if t.starts_with('{') {
            let v: Value = serde_json::from_str(t).map_err(|_| bad())?;
            match v.get("version").and_then(Value::as_u64) {
                Some(2) => {}
                Some(n) if n > DTYPE_FORMAT => {
                    return Err(Error::Dtype(format!(
                        "dtype description format {n} is newer than this version of outcore reads (up to \
                         {DTYPE_FORMAT}): '{text}'"
                    )))
                }
                _ => return Err(bad()),
            }
            return from_json(&v).ok_or_else(bad);
        }
        let mut p = Parser { s: t.as_bytes(), i: 0 };
        let d = p.type_spec().ok_or_else(bad)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(bad());
        }
        Ok(d)
    }

    /// Bytes per item (0 for a plain type string that is not one).
    pub fn itemsize(&self) -> u64 {
        match self {
            Dtype::Plain(s) => typestr_itemsize(s).unwrap_or(0),
            Dtype::Struct { itemsize, .. } => *itemsize,
        }
    }

    /// The stored description in the current format ([`DTYPE_FORMAT`]).
    pub fn to_text(&self) -> String {
        match self {
            Dtype::Plain(s) => s.clone(),
            Dtype::Struct { .. } => {
                let mut v = to_json(self);
                if let Value::Object(m) = &mut v {
                    m.insert("version".into(), DTYPE_FORMAT.into());
                }
                v.to_string()
            }
        }
    }

    /// NumPy's `descr` of the dtype as a Python literal, what `.npy` file headers hold
    /// (`'<f8'`, or `[('x', '<f4'), ('', '|V4'), ('y', '<i8', (3,))]` with padding as unnamed
    /// fields). `None` for a structured dtype whose fields overlap or are out of offset order,
    /// which that form cannot say.
    pub fn npy_descr(&self) -> Option<String> {
        match self {
            Dtype::Plain(s) => Some(py_str(s)),
            Dtype::Struct { itemsize, fields } => {
                let mut parts = Vec::new();
                let mut pos = 0u64;
                for f in fields {
                    if f.offset < pos {
                        return None;
                    }
                    if f.offset > pos {
                        parts.push(format!("('', '|V{}')", f.offset - pos));
                    }
                    let name = match &f.title {
                        Some(t) => format!("({}, {})", py_str(t), py_str(&f.name)),
                        None => py_str(&f.name),
                    };
                    let shape = match f.shape.as_slice() {
                        [] => String::new(),
                        [n] => format!(", ({n},)"),
                        dims => format!(", ({})", dims.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
                    };
                    parts.push(format!("({name}, {}{shape})", f.dtype.npy_descr()?));
                    pos = f.offset.checked_add(f.size()?)?;
                }
                if *itemsize > pos {
                    parts.push(format!("('', '|V{}')", itemsize - pos));
                }
                Some(format!("[{}]", parts.join(", ")))
            }
        }
    }
}

/// A Python string literal of `s`.
fn py_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The JSON value of a dtype (without `version`).
fn to_json(d: &Dtype) -> Value {
    match d {
        Dtype::Plain(s) => Value::String(s.clone()),
        Dtype::Struct { itemsize, fields } => {
            let fields = fields
                .iter()
                .map(|f| {
                    let mut m = Map::new();
                    m.insert("name".into(), f.name.clone().into());
                    m.insert("offset".into(), f.offset.into());
                    m.insert("dtype".into(), to_json(&f.dtype));
                    if !f.shape.is_empty() {
                        m.insert("shape".into(), f.shape.clone().into());
                    }
                    if let Some(t) = &f.title {
                        m.insert("title".into(), t.clone().into());
                    }
                    Value::Object(m)
                })
                .collect();
            let mut m = Map::new();
            m.insert("itemsize".into(), (*itemsize).into());
            m.insert("fields".into(), Value::Array(fields));
            Value::Object(m)
        }
    }
}

/// The dtype of a JSON value: a type string, or an object of `itemsize` and `fields` whose
/// fields lie within the item.
fn from_json(v: &Value) -> Option<Dtype> {
    if let Some(s) = v.as_str() {
        typestr_itemsize(s)?;
        return Some(Dtype::Plain(s.to_string()));
    }
    let itemsize = v.get("itemsize")?.as_u64()?;
    let mut fields = Vec::new();
    for f in v.get("fields")?.as_array()? {
        let shape = match f.get("shape") {
            None => Vec::new(),
            Some(s) => s.as_array()?.iter().map(Value::as_u64).collect::<Option<_>>()?,
        };
        let title = match f.get("title") {
            None => None,
            Some(t) => Some(t.as_str()?.to_string()),
        };
        let field = Field::new(f.get("name")?.as_str()?, f.get("offset")?.as_u64()?, from_json(f.get("dtype")?)?)
            .shape(shape)
            .title(title);
        if field.offset.checked_add(field.size()?)? > itemsize {
            return None;
        }
        fields.push(field);
    }
    (itemsize > 0).then_some(Dtype::Struct { itemsize, fields })
}

/// Item size in bytes of a stored dtype description (see [`Dtype::parse`]); `None` if it does
/// not parse or holds Python objects.
pub fn descr_itemsize(descr: &str) -> Option<u64> {
    Dtype::parse(descr).ok().map(|d| d.itemsize())
}

/// The reader of format-1 structured descriptions: the Python repr of `dtype.descr`, nested
/// lists and `(title, name)` pairs allowed; unnamed fields are padding.
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
    fn string(&mut self) -> Option<String> {
        let q = self.peek()?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        let start = self.i + 1;
        let len = self.s[start..].iter().position(|c| *c == q)?;
        self.i = start + len + 1;
        std::str::from_utf8(&self.s[start..start + len]).ok().map(str::to_string)
    }

    fn int(&mut self) -> Option<u64> {
        self.ws();
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
    }

    /// A plain type string (bare at top level, or quoted), or a list of fields.
    fn type_spec(&mut self) -> Option<Dtype> {
        let s = match self.peek()? {
            b'[' => return self.fields(),
            b'\'' | b'"' => self.string()?,
            _ => {
                let s = std::str::from_utf8(&self.s[self.i..]).ok()?.trim().to_string();
                self.i = self.s.len();
                s
            }
        };
        typestr_itemsize(&s)?;
        Some(Dtype::Plain(s))
    }

    fn fields(&mut self) -> Option<Dtype> {
        self.eat(b'[')?;
        let mut fields = Vec::new();
        let mut offset = 0u64;
        loop {
            if self.eat(b']').is_some() {
                break;
            }
            let f = self.field(offset)?;
            offset = offset.checked_add(f.size()?)?;
            if !f.name.is_empty() {
                fields.push(f); // unnamed fields are padding
            }
            if self.eat(b',').is_none() {
                self.eat(b']')?;
                break;
            }
        }
        Some(Dtype::Struct { itemsize: offset, fields })
    }

    /// `(name, dtype)`, `((title, name), dtype)`, optionally with a shape: `, 3` or `, (2, 3)`.
    fn field(&mut self, offset: u64) -> Option<Field> {
        self.eat(b'(')?;
        let (title, name) = if self.peek()? == b'(' {
            self.eat(b'(')?;
            let title = self.string()?;
            self.eat(b',')?;
            let name = self.string()?;
            self.eat(b')')?;
            (Some(title), name)
        } else {
            (None, self.string()?)
        };
        self.eat(b',')?;
        let dtype = match self.peek()? {
            b'[' => self.fields()?,
            _ => {
                let s = self.string()?;
                typestr_itemsize(&s)?;
                Dtype::Plain(s)
            }
        };
        let mut shape = Vec::new();
        if self.eat(b',').is_some() {
            if self.peek()? == b'(' {
                self.eat(b'(')?;
                loop {
                    if self.eat(b')').is_some() {
                        break;
                    }
                    shape.push(self.int()?);
                    if self.eat(b',').is_none() {
                        self.eat(b')')?;
                        break;
                    }
                }
            } else {
                shape.push(self.int()?);
            }
        }
        self.eat(b')')?;
        Some(Field::new(name, offset, dtype).shape(shape).title(title))
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

    /// A structured dtype with padding, a sub-array, a title and a nested struct.
    fn sample() -> Dtype {
        let inner = Dtype::Struct {
            itemsize: 52,
            fields: vec![
                Field::new("b", 0, Dtype::Plain("<i4".into())),
                Field::new("c", 4, Dtype::Plain("<f8".into())).shape(vec![2, 3]),
            ],
        };
        Dtype::Struct {
            itemsize: 64,
            fields: vec![
                Field::new("a", 0, Dtype::Plain("|u1".into())).title(Some("t".into())),
                Field::new("v", 4, Dtype::Plain("<i2".into())).shape(vec![2]),
                Field::new("s", 8, inner),
            ],
        }
    }

    #[test]
    fn format_2_round_trips_as_json() {
        let d = sample();
        let text = d.to_text();
        assert!(text.starts_with('{') && text.contains("\"version\":2"), "{text}");
        assert_eq!(Dtype::parse(&text).ok(), Some(d.clone()));
        assert_eq!(descr_itemsize(&text), Some(64));
        assert_eq!(Dtype::parse("<f8").ok().map(|d| d.to_text()), Some("<f8".to_string()));
        // Fields beyond the item, a newer format and malformed objects are refused.
        let beyond = text.replace("\"itemsize\":64", "\"itemsize\":56");
        assert!(Dtype::parse(&beyond).is_err());
        let newer = text.replace("\"version\":2", "\"version\":3");
        assert!(Dtype::parse(&newer).is_err_and(|e| e.to_string().contains("format 3 is newer")));
        assert!(Dtype::parse("{\"version\": 2}").is_err());
        assert!(Dtype::parse(
            "{\"version\": 2, \"itemsize\": 8, \"fields\": [{\"name\": \"o\", \"offset\": 0, \"dtype\": \"|O\"}]}"
        )
        .is_err());
    }

    #[test]
    fn format_1_reads_as_the_same_dtype() {
        let legacy = "[(('t', 'a'), '|u1'), ('', '|V3'), ('v', '<i2', (2,)), ('', '|V0'), \
                      ('s', [('b', '<i4'), ('c', '<f8', (2, 3))]), ('', '|V4')]";
        let legacy = legacy.replace(", ('', '|V0')", "");
        assert_eq!(Dtype::parse(&legacy).ok(), Some(sample()));
        // The `.npy` descr is format 1's text again.
        let npy = "[(('t', 'a'), '|u1'), ('', '|V3'), ('v', '<i2', (2,)), ('s', [('b', '<i4'), ('c', '<f8', (2, 3))]), ('', '|V4')]";
        assert_eq!(sample().npy_descr().as_deref(), Some(npy));
        assert_eq!(Dtype::parse("<f8").ok().and_then(|d| d.npy_descr()), Some("'<f8'".to_string()));
        let overlapping = Dtype::Struct {
            itemsize: 8,
            fields: vec![
                Field::new("x", 0, Dtype::Plain("<f8".into())),
                Field::new("y", 0, Dtype::Plain("<i8".into())),
            ],
        };
        assert_eq!(overlapping.npy_descr(), None);
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
