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
use crate::model::trail::{TrailRecord, parse_record, record_from_fields};
use crate::model::trail_json::{RecordElement, parse_record_text};
use crate::model::trail_scan::{self as trail_scan, ScannedShape, Stopped};

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
    let mut buf = TextBuffer::with_capacity(raw.len().saturating_mul(12).min(IN_MEMORY_LIMIT));
    let mut gz = flate2::read::MultiGzDecoder::new(raw);
    read_content(file, &mut gz, true, &mut buf, sink)
}

/// What a file's text is read into, kept from file to file. Its bytes stay initialized once
/// zeroed, so the next file is read straight over them (`read_to_end` into a cleared `Vec`
/// would zero them again: a twentieth of the time spent on gzipped deliveries).
#[derive(Debug, Default)]
pub struct TextBuffer {
    bytes: Vec<u8>,
    filled: usize,
}

impl TextBuffer {
    fn with_capacity(n: usize) -> Self {
        TextBuffer {
            bytes: vec![0; n],
            filled: 0,
        }
    }

    fn text(&self) -> &[u8] {
        &self.bytes[..self.filled]
    }

    /// Reads `reader` to its end, or to `most` bytes.
    fn fill(&mut self, reader: &mut dyn Read, most: usize) -> std::io::Result<()> {
        self.filled = 0;
        loop {
            if self.filled == self.bytes.len() {
                if self.filled >= most {
                    return Ok(());
                }
                let grown = (self.bytes.len() * 2).max(64 * 1024).min(most);
                self.bytes.resize(grown, 0);
            }
            match reader.read(&mut self.bytes[self.filled..]) {
                Ok(0) => return Ok(()),
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reads one file's content from `reader` (inflating already, when `gz`): into `buf` up to
/// [`IN_MEMORY_LIMIT`], parsed from there; past it, from the stream. `buf` is the caller's,
/// so one buffer serves file after file.
pub fn read_content(
    file: &str,
    reader: &mut dyn Read,
    gz: bool,
    buf: &mut TextBuffer,
    sink: &mut dyn FnMut(TrailRecord),
) -> FileRead {
    let read_error = buf.fill(reader, IN_MEMORY_LIMIT + 1).err();
    let buf = buf.text();
    let mut read = match &read_error {
        None if buf.len() > IN_MEMORY_LIMIT => {
            let chained = std::io::Cursor::new(buf).chain(reader);
            let streamed = Input {
                complete: true,
                streamed: true,
                scanned: 0,
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
    let mut input = Input {
        complete,
        streamed: false,
        scanned: 0,
    };
    // Text checked once as a whole is not checked again string by string; text that is not
    // UTF-8 is read from the bytes, so the error names where.
    let Ok(text) = std::str::from_utf8(bytes) else {
        let de = serde_json::Deserializer::from_slice(bytes);
        return parse_input(file, de, sink, input);
    };
    // The hand-written scan reads well-formed files; whatever it stops at, serde_json reads
    // again from the start, past the records the scan handed on, and says what is wrong.
    let mut read = FileRead::default();
    let scanned = trail_scan::scan_file(text, &mut |r| {
        let at = At {
            array: r.array,
            index: r.index,
        };
        read.take(file, Item::Record(at, record_from_fields(&r.fields)), sink);
    });
    match scanned {
        Ok(shape) => read.finish(file, Ok(shape.into()), input),
        Err(Stopped { handed }) => {
            input.scanned = handed;
            let rest = parse_input(file, serde_json::Deserializer::from_str(text), sink, input);
            read.records += rest.records;
            read.errors.extend(rest.errors);
        }
    }
    read
}

/// How the JSON reaches the parser.
#[derive(Debug, Clone, Copy)]
struct Input {
    /// Whether it is whole (a damaged gzip stream ends early; its end-of-input error would
    /// only repeat the gzip error).
    complete: bool,
    /// Read from a stream, not memory: records cannot borrow from it.
    streamed: bool,
    /// Elements the hand-written scan already handed on: skipped here.
    scanned: usize,
}

impl FileRead {
    /// Counts a record and hands it on, or keeps the problem with the element.
    fn take(&mut self, file: &str, item: Item, sink: &mut dyn FnMut(TrailRecord)) {
        let message = match item {
            Item::Record(_, Ok(r)) => {
                self.records += 1;
                sink(r);
                return;
            }
            Item::Record(at, Err(msg)) => format!("{at}: {msg}"),
            Item::Problem(pos, msg) => format!("{pos}: {msg}"),
        };
        self.errors.push(ParseError {
            file: file.to_string(),
            line: None,
            message,
        });
    }

    /// Notes what the file as a whole was or why it could not be read to its end.
    fn finish(&mut self, file: &str, result: Result<Shape, serde_json::Error>, input: Input) {
        let problem = |line: Option<usize>, message: String| ParseError {
            file: file.to_string(),
            line,
            message,
        };
        match result {
            Ok(Shape::Unknown) => self.errors.push(problem(
                None,
                "not a CloudTrail file: no Records or Events array and not an array of records"
                    .into(),
            )),
            Ok(_) => {}
            Err(e) if !input.complete && e.is_eof() => {}
            Err(e) => self.errors.push(problem(
                Some(e.line()),
                format!("invalid JSON (column {}): {e}", e.column()),
            )),
        }
    }
}

fn parse_input<'de, R: serde_json::de::Read<'de>>(
    file: &str,
    mut de: serde_json::Deserializer<R>,
    sink: &mut dyn FnMut(TrailRecord),
    input: Input,
) -> FileRead {
    let mut read = FileRead::default();
    let mut skip = input.scanned;
    let result = parse_shapes(&mut de, input.streamed, &mut |item| {
        if skip > 0 {
            skip -= 1;
        } else {
            read.take(file, item, sink);
        }
    });
    read.finish(file, result, input);
    read
}

impl From<ScannedShape> for Shape {
    fn from(shape: ScannedShape) -> Shape {
        match shape {
            ScannedShape::Records => Shape::Records,
            ScannedShape::Array => Shape::Array,
            ScannedShape::Unknown => Shape::Unknown,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What reading gave: the records and every problem, as the caller sees them.
    fn read_with(read: impl FnOnce(&mut dyn FnMut(TrailRecord)) -> FileRead) -> String {
        let mut records = Vec::new();
        let read = read(&mut |r| records.push(r));
        format!("{records:#?}\n{:#?}\n{}", read.errors, read.records)
    }

    /// The scan (with serde_json after wherever it stops) against serde_json alone.
    fn both_ways(text: &str) -> (String, String) {
        let scanned = read_with(|sink| parse_in_memory("t.json", text.as_bytes(), sink, true));
        let input = Input {
            complete: true,
            streamed: false,
            scanned: 0,
        };
        let de = serde_json::Deserializer::from_str(text);
        let plain = read_with(|sink| parse_input("t.json", de, sink, input));
        (scanned, plain)
    }

    const UA: &str = "aws-controllers-k8s/ec2.services.k8s.aws-1.2.0 (GitCommit/x; BuildDate/y; CRDKind/SecurityGroup; CRDVersion/v1alpha1)";

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            "\\PC{0,8}".prop_map(Value::String),
            "[\"\\\\/\u{1}\n\té€😀a]{0,6}".prop_map(Value::String),
            Just(Value::String("2024-01-05T08:00:00Z".into())),
            Just(Value::String(UA.into())),
            Just(Value::String("111122223333".into())),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("accountId".to_string()),
                        Just("type".to_string()),
                        Just("key".to_string()),
                        Just("value".to_string()),
                        Just("ARN".to_string()),
                        "[a-z]{1,4}",
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn record() -> impl Strategy<Value = Value> {
        let names = prop_oneof![
            Just("eventID"),
            Just("eventTime"),
            Just("eventSource"),
            Just("eventName"),
            Just("awsRegion"),
            Just("recipientAccountId"),
            Just("userIdentity"),
            Just("errorCode"),
            Just("sharedEventID"),
            Just("userAgent"),
            Just("requestParameters"),
            Just("resources"),
            Just("other"),
        ];
        let identity = prop_oneof![
            value(),
            ("\\PC{0,3}", "[A-Za-z]{0,3}").prop_map(
                |(a, t)| serde_json::json!({"accountId": a, "type": t, "x": {"type": 1}})
            ),
        ];
        let fields = prop::collection::btree_map(names, value(), 0..13);
        let object = (fields, identity, any::<bool>()).prop_map(|(fields, identity, whole)| {
            let mut m: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            // Mostly records with an id and a time, so every other field reaches the record.
            if whole {
                m.insert("eventID".into(), Value::String("e-1".into()));
                m.insert(
                    "eventTime".into(),
                    Value::String("2024-01-05T08:00:00Z".into()),
                );
                m.insert("userIdentity".into(), identity);
            }
            Value::Object(m)
        });
        prop_oneof![8 => object, 1 => value()]
    }

    /// A trail file's text: one of the shapes, compact or pretty.
    fn file_text() -> impl Strategy<Value = String> {
        let records = prop::collection::vec(record(), 0..5);
        (records, 0u8..5, any::<bool>()).prop_map(|(records, shape, pretty)| {
            let doc = match shape {
                0 => serde_json::json!({ "Records": records }),
                1 => serde_json::json!({ "a": [1, {"b": "c"}], "Records": records, "z": null }),
                2 => Value::Array(records),
                3 => serde_json::json!({ "Records": null }),
                _ => serde_json::json!({ "Records": records, "Events": [] }),
            };
            if pretty {
                serde_json::to_string_pretty(&doc).unwrap()
            } else {
                doc.to_string()
            }
        })
    }

    /// A text edit that may break the JSON: none, a cut, a byte inserted, a byte removed, a
    /// key spelled with an escape.
    fn damaged(text: String, how: u8, at: usize, byte: u8) -> Vec<u8> {
        let mut bytes = text.into_bytes();
        let at = at % (bytes.len() + 1);
        match how {
            0 => bytes.truncate(at),
            1 => bytes.insert(at, byte),
            2 if at < bytes.len() => _ = bytes.remove(at),
            3 => {
                let text = String::from_utf8(bytes).unwrap();
                bytes = text
                    .replacen("\"eventID\"", "\"event\\u0049D\"", 1)
                    .into_bytes();
            }
            _ => {}
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn a_scanned_file_reads_as_serde_json_reads_it(
            text in file_text(),
            how in 0u8..8,
            at in any::<usize>(),
            byte in prop::sample::select(b"\"\\{}[],: \n\x01\x7f0-etn".to_vec()),
        ) {
            let bytes = damaged(text, how, at, byte);
            let Ok(text) = std::str::from_utf8(&bytes) else { return Ok(()) };
            let (scanned, plain) = both_ways(text);
            prop_assert_eq!(scanned, plain, "{}", text);
        }
    }

    #[test]
    fn the_scan_reads_a_delivery_to_its_end() {
        let text = format!(
            r#"{{"Records":[{{"eventID":"e1","eventTime":"2024-01-05T08:00:00Z","userAgent":"{UA}","userIdentity":{{"type":"AssumedRole","accountId":"111122223333","sessionContext":{{"x":[1,2.5e3,-0,true,false,null]}}}},"requestParameters":{{"vpcId":"vpc-1"}},"resources":[{{"ARN":"arn:aws:ec2:eu-west-2:1:security-group/sg-1"}}]}}]}}"#
        );
        let mut handed = Vec::new();
        let shape =
            trail_scan::scan_file(&text, &mut |r| handed.push(record_from_fields(&r.fields)));
        assert_eq!(shape, Ok(ScannedShape::Records));
        let record = handed.pop().unwrap().unwrap();
        assert_eq!(record.caller_account.as_deref(), Some("111122223333"));
        assert_eq!(record.request_values.len(), 2);
        let (scanned, plain) = both_ways(&text);
        assert_eq!(scanned, plain);
    }

    #[test]
    fn the_scan_stops_where_serde_json_must_read() {
        let cases = [
            (r#"{"Records":[{"eventID":"a"},{"eventID":"b"},7]}"#, 2),
            (r#"{"Records":[{"eventID":"a"},{"event\u0049D":"b"}]}"#, 1),
            (r#"{"Records":[{"eventID":"a"}],"Events":[]}"#, 1),
            (r#"{"Records":[{"eventID":"a"},{"eventID":"b",}]}"#, 1),
            (r#"{"Records":[{"eventID":"a"}]} x"#, 1),
            ("{\"Records\":[{\"eventID\":\"a\u{1}\"}]}", 0),
            (r#"{"Records":[{"eventID":"a","x":01}]}"#, 0),
        ];
        for (text, handed) in cases {
            let stopped = trail_scan::scan_file(text, &mut |_| {});
            assert_eq!(stopped, Err(Stopped { handed }), "{text}");
            let (scanned, plain) = both_ways(text);
            assert_eq!(scanned, plain, "{text}");
        }
    }
}
