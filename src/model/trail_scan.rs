//! Trail files scanned by hand: each record of the `Records` array (or of a bare array) read
//! into [`RecordFields`] straight from the text, every other value checked byte by byte and
//! skipped. The scan accepts only what `serde_json` accepts, and stops at anything else or
//! anything unusual (an escaped key, deep nesting, an element that is not an object, the
//! `Events` of saved lookup-events output), saying how many records it handed on: the caller
//! then reads the file with `serde_json` (`model::trail_json`), which skips those records and
//! reports any problem where it is. Field names and string values go through the same
//! functions as that path, so both read a record alike (`source::trail_file`'s tests hold
//! them equal on arbitrary text).

use std::borrow::Cow;

use super::trail::{Json, RecordFields};
use super::trail_json::{Field, FromName, IdentityField, string_value};

/// The scan met something it leaves to `serde_json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// How far a scan got before it stopped: the records it handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub handed: usize,
}

/// The shape of a file read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScannedShape {
    /// `{"Records": [...]}` (or `null`), other top-level keys skipped.
    Records,
    /// A bare array of records.
    Array,
    /// An object with no `Records` key.
    Unknown,
}

/// One record as scanned, with where it stands (`Records[12]`).
pub struct ScannedRecord<'a> {
    pub array: &'static str,
    pub index: usize,
    pub fields: RecordFields<'a>,
}

/// Nesting the scan goes into before leaving a value to `serde_json` (whose limit is 128).
const MAX_DEPTH: u32 = 96;
/// The nesting of a record's fields: the file's object, `Records`, the record.
const FIELD_DEPTH: u32 = 3;

/// Scans a whole file's text, handing each record to `on_record` in order.
pub fn scan_file<'a>(
    text: &'a str,
    on_record: &mut dyn FnMut(ScannedRecord<'a>),
) -> Result<ScannedShape, Stopped> {
    let mut scanner = Scanner::new(text);
    let mut handed = 0;
    let mut count = |r: ScannedRecord<'a>| {
        handed += 1;
        on_record(r);
    };
    scanner.file(&mut count).map_err(|Stop| Stopped { handed })
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// Where a string's content ends: its first `"`, `\`, or control character (JSON allows
/// none inside a string). Sixteen bytes at a time, each a flag in a mask: the compiler turns
/// the inner loop into vector compares.
fn string_end(bytes: &[u8]) -> Option<usize> {
    let ends = |b: u8| (b == b'"') | (b == b'\\') | (b < 0x20);
    let mut chunks = bytes.chunks_exact(16);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let mask = chunk
            .iter()
            .enumerate()
            .fold(0u32, |mask, (j, &b)| mask | (u32::from(ends(b)) << j));
        if mask != 0 {
            return Some(at + mask.trailing_zeros() as usize);
        }
        at += 16;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| ends(b))
        .map(|p| at + p)
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// The next byte that is not white space, consumed.
    fn token(&mut self) -> Result<u8, Stop> {
        self.skip_space();
        let b = self.peek().ok_or(Stop)?;
        self.pos += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), Stop> {
        if self.token()? == want {
            Ok(())
        } else {
            Err(Stop)
        }
    }

    /// A string after its opening quote, through its closing one: its content as written,
    /// and whether it holds an escape.
    fn string(&mut self) -> Result<(&'a str, bool), Stop> {
        let start = self.pos;
        let mut escaped = false;
        loop {
            let rest = &self.bytes[self.pos..];
            let i = string_end(rest).ok_or(Stop)?;
            self.pos += i + 1;
            match rest[i] {
                b'"' => {
                    let content = self.text.get(start..self.pos - 1).ok_or(Stop)?;
                    return Ok((content, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return Err(Stop),
            }
        }
    }

    /// An escape after its backslash. Of `\u` only the four hex digits are checked, as
    /// `serde_json` does when it skips a string; a value read is unescaped by `serde_json`.
    fn escape(&mut self) -> Result<(), Stop> {
        match self.peek().ok_or(Stop)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
            b'u' => {
                let hex = self.bytes.get(self.pos + 1..self.pos + 5).ok_or(Stop)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(Stop);
                }
                self.pos += 5;
            }
            _ => return Err(Stop),
        }
        Ok(())
    }

    /// The rest of `true`, `false` or `null` after its first letter.
    fn literal(&mut self, rest: &[u8]) -> Result<(), Stop> {
        if self.bytes.get(self.pos..self.pos + rest.len()) != Some(rest) {
            return Err(Stop);
        }
        self.pos += rest.len();
        Ok(())
    }

    fn digits(&mut self) -> bool {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos > start
    }

    /// A number from its first character: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Result<(), Stop> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => _ = self.digits(),
            _ => return Err(Stop),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.digits() {
                return Err(Stop);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !self.digits() {
                return Err(Stop);
            }
        }
        Ok(())
    }

    /// Checks and skips one value nested `depth` deep.
    fn skip_value(&mut self, depth: u32) -> Result<(), Stop> {
        match self.token()? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.deeper(depth)?;
                self.members(|s, _| s.skip_value(depth + 1))
            }
            b'[' => {
                self.deeper(depth)?;
                self.elements(|s| s.skip_value(depth + 1))
            }
            b't' => self.literal(b"rue"),
            b'f' => self.literal(b"alse"),
            b'n' => self.literal(b"ull"),
            b'-' | b'0'..=b'9' => {
                self.pos -= 1;
                self.number()
            }
            _ => Err(Stop),
        }
    }

    /// Whether a container may open one level below `depth`.
    fn deeper(&self, depth: u32) -> Result<(), Stop> {
        if depth < MAX_DEPTH { Ok(()) } else { Err(Stop) }
    }

    /// The text of the next value, checked (what `serde_json`'s `RawValue` holds).
    fn value_text(&mut self, depth: u32) -> Result<&'a str, Stop> {
        self.skip_space();
        let start = self.pos;
        self.skip_value(depth)?;
        self.text.get(start..self.pos).ok_or(Stop)
    }

    /// A field read as `model::trail_json` reads it: a string, else absent. A string without
    /// escapes is its content as written, which is what `string_value` makes of it.
    fn string_field(&mut self, depth: u32) -> Result<Option<Cow<'a, str>>, Stop> {
        self.skip_space();
        let start = self.pos;
        if self.peek() == Some(b'"') {
            self.pos += 1;
            let (content, escaped) = self.string()?;
            if !escaped {
                return Ok(Some(Cow::Borrowed(content)));
            }
        } else {
            self.skip_value(depth)?;
        }
        Ok(string_value(self.text.get(start..self.pos).ok_or(Stop)?))
    }

    /// The members of an object after its `{`; `on_member` reads or skips each value.
    fn members(
        &mut self,
        mut on_member: impl FnMut(&mut Self, Key<'a>) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        match self.token()? {
            b'}' => return Ok(()),
            b'"' => {}
            _ => return Err(Stop),
        }
        loop {
            let (name, escaped) = self.string()?;
            self.expect(b':')?;
            on_member(self, Key { name, escaped })?;
            match self.token()? {
                b',' => self.expect(b'"')?,
                b'}' => return Ok(()),
                _ => return Err(Stop),
            }
        }
    }

    /// The elements of an array after its `[`; `on_element` reads or skips each.
    fn elements(
        &mut self,
        mut on_element: impl FnMut(&mut Self) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        self.skip_space();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            on_element(self)?;
            match self.token()? {
                b',' => {}
                b']' => return Ok(()),
                _ => return Err(Stop),
            }
        }
    }

    /// The whole text: one object or array, then only white space.
    fn file(&mut self, on_record: &mut dyn FnMut(ScannedRecord<'a>)) -> Result<ScannedShape, Stop> {
        let shape = match self.token()? {
            b'[' => {
                self.records("", on_record)?;
                ScannedShape::Array
            }
            b'{' => {
                let mut shape = ScannedShape::Unknown;
                self.members(|s, key| match key.plain()? {
                    "Records" => {
                        s.records_value(on_record)?;
                        shape = ScannedShape::Records;
                        Ok(())
                    }
                    "Events" => Err(Stop),
                    _ => s.skip_value(1),
                })?;
                shape
            }
            _ => return Err(Stop),
        };
        self.skip_space();
        if self.pos == self.bytes.len() {
            Ok(shape)
        } else {
            Err(Stop)
        }
    }

    /// The value of `Records`: an array of records, or `null`.
    fn records_value(&mut self, on_record: &mut dyn FnMut(ScannedRecord<'a>)) -> Result<(), Stop> {
        match self.token()? {
            b'[' => self.records("Records", on_record),
            b'n' => self.literal(b"ull"),
            _ => Err(Stop),
        }
    }

    fn records(
        &mut self,
        array: &'static str,
        on_record: &mut dyn FnMut(ScannedRecord<'a>),
    ) -> Result<(), Stop> {
        let mut index = 0;
        self.elements(|s| {
            s.expect(b'{')?;
            let fields = s.record()?;
            on_record(ScannedRecord {
                array,
                index,
                fields,
            });
            index += 1;
            Ok(())
        })
    }

    /// A record's fields, after its `{`.
    fn record(&mut self) -> Result<RecordFields<'a>, Stop> {
        let mut f = RecordFields::default();
        self.members(|s, key| {
            let text = match Field::named(key.plain()?) {
                Field::Text(text) => text,
                Field::UserIdentity => {
                    (f.caller_account, f.caller_type) = s.identity()?;
                    return Ok(());
                }
                Field::RequestParameters => {
                    f.request_parameters = Some(Json::Text(s.value_text(FIELD_DEPTH)?));
                    return Ok(());
                }
                Field::Resources => {
                    f.resources = Some(Json::Text(s.value_text(FIELD_DEPTH)?));
                    return Ok(());
                }
                Field::Other => return s.skip_value(FIELD_DEPTH),
            };
            *f.text_slot(text) = s.string_field(FIELD_DEPTH)?;
            Ok(())
        })?;
        Ok(f)
    }

    /// `userIdentity`'s `accountId` and `type` when it is an object; nothing when `null`.
    /// Any other value is left to `serde_json` (real records always hold an object).
    #[allow(clippy::type_complexity)]
    fn identity(&mut self) -> Result<(Option<Cow<'a, str>>, Option<Cow<'a, str>>), Stop> {
        match self.token()? {
            b'{' => {}
            b'n' => return self.literal(b"ull").map(|()| (None, None)),
            _ => return Err(Stop),
        }
        let (mut account, mut kind) = (None, None);
        self.members(|s, key| {
            match IdentityField::named(key.plain()?) {
                IdentityField::AccountId => account = s.string_field(FIELD_DEPTH + 1)?,
                IdentityField::Type => kind = s.string_field(FIELD_DEPTH + 1)?,
                IdentityField::Other => s.skip_value(FIELD_DEPTH + 1)?,
            }
            Ok(())
        })?;
        Ok((account, kind))
    }
}

/// An object member's name as written.
#[derive(Clone, Copy)]
struct Key<'a> {
    name: &'a str,
    escaped: bool,
}

impl<'a> Key<'a> {
    /// The name, when it holds no escape: `serde_json` would unescape one before matching it,
    /// so such a name is left to it.
    fn plain(self) -> Result<&'a str, Stop> {
        if self.escaped {
            Err(Stop)
        } else {
            Ok(self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_string_ends_at_its_first_quote_backslash_or_control_byte(
            bytes in prop::collection::vec(prop::sample::select(b"ab\"\\\x00\x1f\x20\x7f\xff\n".to_vec()), 0..80),
        ) {
            let plain = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(string_end(&bytes), plain);
        }
    }
}
