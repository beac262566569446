//! One trail file's content: S3 deliveries `{"Records": [...]}`, bare arrays of records, and
//! saved `aws cloudtrail lookup-events` output (`{"Events": [...]}` whose `CloudTrailEvent`
//! strings hold the records). Records are handed on one at a time as the JSON is read, each
//! straight from the text (`model::trail_json`), so memory does not grow with the file.

use std::fmt;
use std::io::Read;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::model::ParseError;
use crate::model::trail::{TrailRecord, parse_record};
use crate::model::trail_json::{RecordElement, parse_record_text};

/// One thing found in a file: a record read (or why not), or a problem with an element.
// Made and used up at once, record by record: boxing would add an allocation per record.
#[allow(clippy::large_enum_variant)]
enum Item {
    Record(At, Result<TrailRecord, String>),
    Problem(String, String),
}

/// Where an element is (`Records[12]`), spelled out only when something is wrong with it.
struct At {
    array: &'static str,
    index: usize,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}[{}]", self.array, self.index)
    }
}

/// Decompressed bytes above which a file is parsed from a stream instead of from memory.
const IN_MEMORY_LIMIT: usize = 256 * 1024 * 1024;

/// What one file gave, besides its records.
#[derive(Debug, Default)]
pub struct FileRead {
    pub records: u64,
    pub errors: Vec<ParseError>,
}

/// Parses one named file held in memory (gunzipped first when the name ends in `.gz`).
pub fn read_named(file: &str, raw: &[u8], sink: &mut dyn FnMut(TrailRecord)) -> FileRead {
    if !file.ends_with(".gz") {
        return parse_trail_bytes(file, raw, sink);
    }
    // A delivery inflates about tenfold; reserving that saves regrowing the buffer.
    let mut buf = Vec::with_capacity(raw.len().saturating_mul(12).min(IN_MEMORY_LIMIT));
    let mut gz = flate2::read::MultiGzDecoder::new(raw);
    read_content(file, &mut gz, true, &mut buf, sink)
}

/// Reads one file's content from `reader` (inflating already, when `gz`): into `buf` up to
/// [`IN_MEMORY_LIMIT`], parsed from there; past it, from the stream. `buf` is the caller's,
/// so one buffer serves file after file.
pub fn read_content(
    file: &str,
    reader: &mut dyn Read,
    gz: bool,
    buf: &mut Vec<u8>,
    sink: &mut dyn FnMut(TrailRecord),
) -> FileRead {
    buf.clear();
    let read_error = (&mut *reader)
        .take(IN_MEMORY_LIMIT as u64 + 1)
        .read_to_end(buf)
        .err();
    let mut read = match &read_error {
        None if buf.len() > IN_MEMORY_LIMIT => {
            let chained = std::io::Cursor::new(&buf[..]).chain(reader);
            let streamed = Input {
                complete: true,
                streamed: true,
            };
            parse_input(
                file,
                serde_json::Deserializer::from_reader(chained),
                sink,
                streamed,
            )
        }
        // After a damaged gzip stream, read what came before the damage.
        _ => parse_in_memory(file, buf, sink, read_error.is_none()),
    };
    if let Some(e) = read_error {
        let what = if gz {
            "gzip stream is truncated or corrupt"
        } else {
            "read failed"
        };
        read.errors.push(ParseError {
            file: file.to_string(),
            line: None,
            message: format!(
                "{what} ({e}); the {} records before the damage were read",
                read.records
            ),
        });
    }
    read
}

/// Parses one file's (decompressed) content, handing good records to `sink`.
/// Returns how many records were accepted and every problem met, labelled with `file`.
pub fn parse_trail_bytes(file: &str, bytes: &[u8], sink: &mut dyn FnMut(TrailRecord)) -> FileRead {
    parse_in_memory(file, bytes, sink, true)
}

fn parse_in_memory(
    file: &str,
    bytes: &[u8],
    sink: &mut dyn FnMut(TrailRecord),
    complete: bool,
) -> FileRead {
    let input = Input {
        complete,
        streamed: false,
    };
    // Text checked once as a whole is not checked again string by string; text that is not
    // UTF-8 is read from the bytes, so the error names where.
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_input(file, serde_json::Deserializer::from_str(text), sink, input),
        Err(_) => parse_input(
            file,
            serde_json::Deserializer::from_slice(bytes),
            sink,
            input,
        ),
    }
}

/// How the JSON reaches the parser.
#[derive(Debug, Clone, Copy)]
struct Input {
    /// Whether it is whole (a damaged gzip stream ends early; its end-of-input error would
    /// only repeat the gzip error).
    complete: bool,
    /// Read from a stream, not memory: records cannot borrow from it.
    streamed: bool,
}

fn parse_input<'de, R: serde_json::de::Read<'de>>(
    file: &str,
    mut de: serde_json::Deserializer<R>,
    sink: &mut dyn FnMut(TrailRecord),
    input: Input,
) -> FileRead {
    let mut records = 0u64;
    let mut errors = Vec::new();
    let problem = |line: Option<usize>, message: String| ParseError {
        file: file.to_string(),
        line,
        message,
    };
    let result = {
        let mut on_item = |item: Item| match item {
            Item::Record(at, record) => match record {
                Ok(r) => {
                    records += 1;
                    sink(r);
                }
                Err(msg) => errors.push(problem(None, format!("{at}: {msg}"))),
            },
            Item::Problem(pos, msg) => errors.push(problem(None, format!("{pos}: {msg}"))),
        };
        parse_shapes(&mut de, input.streamed, &mut on_item)
    };
    match result {
        Ok(Shape::Unknown) => errors.push(problem(
            None,
            "not a CloudTrail file: no Records or Events array and not an array of records".into(),
        )),
        Ok(_) => {}
        Err(e) if !input.complete && e.is_eof() => {}
        Err(e) => errors.push(problem(
            Some(e.line()),
            format!("invalid JSON (column {}): {e}", e.column()),
        )),
    }
    FileRead { records, errors }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Records,
    Events,
    Array,
    Unknown,
}

fn parse_shapes<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    streamed: bool,
    on_item: &mut dyn FnMut(Item),
) -> Result<Shape, serde_json::Error> {
    let shape = (&mut *de).deserialize_any(TopVisitor { on_item, streamed })?;
    de.end()?;
    Ok(shape)
}

struct TopVisitor<'a> {
    on_item: &'a mut dyn FnMut(Item),
    streamed: bool,
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CloudTrail file")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Shape, A::Error> {
        RecordsSeed {
            on_item: self.on_item,
            array: "",
            wrapped: false,
            streamed: self.streamed,
        }
        .visit_elements(seq)?;
        Ok(Shape::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut shape = Shape::Unknown;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "Records" => {
                    map.next_value_seed(RecordsSeed {
                        on_item: &mut *self.on_item,
                        array: "Records",
                        wrapped: false,
                        streamed: self.streamed,
                    })?;
                    shape = Shape::Records;
                }
                "Events" => {
                    map.next_value_seed(RecordsSeed {
                        on_item: &mut *self.on_item,
                        array: "Events",
                        wrapped: true,
                        streamed: self.streamed,
                    })?;
                    shape = Shape::Events;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(shape)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Unknown)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Unknown)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Unknown)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Unknown)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Unknown)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Unknown)
    }
}

/// The elements of `Records` / `Events` / a bare array, handed on one by one.
struct RecordsSeed<'a> {
    on_item: &'a mut dyn FnMut(Item),
    array: &'static str,
    /// `Events[]` of lookup-events: each element wraps the record as a JSON string.
    wrapped: bool,
    streamed: bool,
}

impl<'de> RecordsSeed<'_> {
    fn visit_elements<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let at = At {
                array: self.array,
                index,
            };
            index += 1;
            let item = if self.wrapped {
                match seq.next_element::<Value>()? {
                    Some(element) => unwrap_event(at, &element),
                    None => return Ok(()),
                }
            } else if self.streamed {
                // A stream cannot lend its text: each record is copied out, then read.
                match seq.next_element::<Box<RawValue>>()? {
                    Some(raw) => Item::Record(at, parse_record_text(raw.get())),
                    None => return Ok(()),
                }
            } else {
                match seq.next_element::<RecordElement<'de>>()? {
                    Some(element) => Item::Record(at, element.into_record()),
                    None => return Ok(()),
                }
            };
            (self.on_item)(item);
        }
    }
}

/// A lookup-events entry: its `CloudTrailEvent` string (or, as some tools save it, object).
fn unwrap_event(at: At, element: &Value) -> Item {
    match element.get("CloudTrailEvent") {
        Some(Value::String(s)) => match serde_json::from_str::<RecordElement>(s) {
            Ok(record) => Item::Record(at, record.into_record()),
            Err(e) => Item::Problem(
                format!("{at}.CloudTrailEvent"),
                format!("is not JSON ({e}); skipped"),
            ),
        },
        Some(record @ Value::Object(_)) => Item::Record(at, parse_record(record)),
        _ => Item::Problem(
            at.to_string(),
            "lookup-events entry without a CloudTrailEvent string; skipped".into(),
        ),
    }
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of CloudTrail records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.visit_elements(seq)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}
