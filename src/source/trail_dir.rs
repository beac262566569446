//! The offline CloudTrail source: a folder of trail files, read recursively.
//!
//! Three shapes: S3 deliveries `{"Records": [...]}` (`.json` or `.json.gz`), bare arrays of
//! records, and saved `aws cloudtrail lookup-events` output (`{"Events": [...]}` whose
//! `CloudTrailEvent` strings hold the records). Records are handed on one at a time as the
//! JSON is read, so memory does not grow with the archive.

use std::fmt;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::model::ParseError;
use crate::model::trail::{TrailRecord, parse_record};

/// Decompressed bytes above which a file is parsed from a stream instead of from memory.
const IN_MEMORY_LIMIT: usize = 256 * 1024 * 1024;

/// What reading a folder gave, besides the records.
#[derive(Debug, Default)]
pub struct TrailDirReport {
    pub files: usize,
    pub records: u64,
    pub errors: Vec<ParseError>,
}

/// Reads every trail file under `dir`, calling `sink` for each good record.
///
/// Fails only when `dir` cannot be listed; everything below it is best effort.
pub fn read_trail_dir(
    dir: &Path,
    sink: &mut dyn FnMut(TrailRecord),
) -> std::io::Result<TrailDirReport> {
    let mut files = Vec::new();
    let mut report = TrailDirReport::default();
    list(dir, &mut files, &mut report.errors)?;
    let mut progress = Progress::new(files.len());
    for file in &files {
        read_file(file, sink, &mut report);
        report.files += 1;
        progress.tick(report.files, report.records);
    }
    progress.done(report.files, report.records);
    Ok(report)
}

fn list(dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<ParseError>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if std::fs::metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            // Digest files prove integrity; they hold no events.
            if name == "CloudTrail-Digest" {
                continue;
            }
            if let Err(e) = list(&path, out, errors) {
                errors.push(ParseError {
                    file: path.display().to_string(),
                    line: None,
                    message: format!("cannot list: {e}"),
                });
            }
        } else if name.ends_with(".json") || name.ends_with(".json.gz") {
            out.push(path);
        }
    }
    Ok(())
}

/// One thing found in a file: a record (with its position) or a problem with one.
enum Item {
    Record(String, Value),
    Problem(String, String),
}

fn read_file(path: &Path, sink: &mut dyn FnMut(TrailRecord), report: &mut TrailDirReport) {
    let file = path.display().to_string();
    let problem = |message: String| ParseError {
        file: file.clone(),
        line: None,
        message,
    };
    let opened = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            report.errors.push(problem(format!("cannot open: {e}")));
            return;
        }
    };
    let gz = path.extension().and_then(|e| e.to_str()) == Some("gz");
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            opened,
        )))
    } else {
        Box::new(std::io::BufReader::new(opened))
    };

    // Read into memory up to the limit (fast path); past it, parse from the stream.
    let mut buf = Vec::new();
    let read_error = (&mut reader)
        .take(IN_MEMORY_LIMIT as u64 + 1)
        .read_to_end(&mut buf)
        .err();
    let (records, errors) = match &read_error {
        None if buf.len() > IN_MEMORY_LIMIT => {
            let chained = std::io::Cursor::new(buf).chain(reader);
            parse_input(
                &file,
                serde_json::Deserializer::from_reader(chained),
                sink,
                true,
            )
        }
        // After a damaged gzip stream, read what came before the damage.
        _ => parse_input(
            &file,
            serde_json::Deserializer::from_slice(&buf),
            sink,
            read_error.is_none(),
        ),
    };
    report.records += records;
    report.errors.extend(errors);
    if let Some(e) = read_error {
        let what = if gz {
            "gzip stream is truncated or corrupt"
        } else {
            "read failed"
        };
        report.errors.push(problem(format!(
            "{what} ({e}); the {records} records before the damage were read"
        )));
    }
}

/// Parses one named file held in memory (gunzipped first when the name ends in `.gz`).
pub fn read_named(
    file: &str,
    raw: &[u8],
    sink: &mut dyn FnMut(TrailRecord),
) -> (u64, Vec<ParseError>) {
    if !file.ends_with(".gz") {
        return parse_trail_bytes(file, raw, sink);
    }
    let mut buf = Vec::new();
    let damaged = flate2::read::MultiGzDecoder::new(raw)
        .read_to_end(&mut buf)
        .err();
    let (records, mut errors) = parse_input(
        file,
        serde_json::Deserializer::from_slice(&buf),
        sink,
        damaged.is_none(),
    );
    if let Some(e) = damaged {
        errors.push(ParseError {
            file: file.to_string(),
            line: None,
            message: format!(
                "gzip stream is truncated or corrupt ({e}); the {records} records before the damage were read"
            ),
        });
    }
    (records, errors)
}

/// Parses one file's (decompressed) content, handing good records to `sink`.
/// Returns how many records were accepted and every problem met, labelled with `file`.
pub fn parse_trail_bytes(
    file: &str,
    bytes: &[u8],
    sink: &mut dyn FnMut(TrailRecord),
) -> (u64, Vec<ParseError>) {
    parse_input(
        file,
        serde_json::Deserializer::from_slice(bytes),
        sink,
        true,
    )
}

/// `complete`: whether the input is whole (a damaged gzip stream ends early; its
/// end-of-input error would only repeat the gzip error).
fn parse_input<'de, R: serde_json::de::Read<'de>>(
    file: &str,
    mut de: serde_json::Deserializer<R>,
    sink: &mut dyn FnMut(TrailRecord),
    complete: bool,
) -> (u64, Vec<ParseError>) {
    let mut records = 0u64;
    let mut errors = Vec::new();
    let problem = |line: Option<usize>, message: String| ParseError {
        file: file.to_string(),
        line,
        message,
    };
    let result = {
        let mut on_item = |item: Item| match item {
            Item::Record(pos, value) => match parse_record(&value) {
                Ok(r) => {
                    records += 1;
                    sink(r);
                }
                Err(msg) => errors.push(problem(None, format!("{pos}: {msg}"))),
            },
            Item::Problem(pos, msg) => errors.push(problem(None, format!("{pos}: {msg}"))),
        };
        parse_shapes(&mut de, &mut on_item)
    };
    match result {
        Ok(Shape::Unknown) => errors.push(problem(
            None,
            "not a CloudTrail file: no Records or Events array and not an array of records".into(),
        )),
        Ok(_) => {}
        Err(e) if !complete && e.is_eof() => {}
        Err(e) => errors.push(problem(
            Some(e.line()),
            format!("invalid JSON (column {}): {e}", e.column()),
        )),
    }
    (records, errors)
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
    on_item: &mut dyn FnMut(Item),
) -> Result<Shape, serde_json::Error> {
    let shape = (&mut *de).deserialize_any(TopVisitor { on_item })?;
    de.end()?;
    Ok(shape)
}

struct TopVisitor<'a> {
    on_item: &'a mut dyn FnMut(Item),
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CloudTrail file")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Shape, A::Error> {
        RecordsSeed {
            on_item: self.on_item,
            prefix: "",
            wrapped: false,
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
                        prefix: "Records",
                        wrapped: false,
                    })?;
                    shape = Shape::Records;
                }
                "Events" => {
                    map.next_value_seed(RecordsSeed {
                        on_item: &mut *self.on_item,
                        prefix: "Events",
                        wrapped: true,
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
    prefix: &'static str,
    /// `Events[]` of lookup-events: each element wraps the record as a JSON string.
    wrapped: bool,
}

impl<'de> RecordsSeed<'_> {
    fn visit_elements<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while let Some(element) = seq.next_element::<Value>()? {
            let pos = format!("{}[{i}]", self.prefix);
            i += 1;
            if !self.wrapped {
                (self.on_item)(Item::Record(pos, element));
                continue;
            }
            match element.get("CloudTrailEvent") {
                Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                    Ok(record) => (self.on_item)(Item::Record(pos, record)),
                    Err(e) => (self.on_item)(Item::Problem(
                        format!("{pos}.CloudTrailEvent"),
                        format!("is not JSON ({e}); skipped"),
                    )),
                },
                // Some tools save the record already parsed.
                Some(record @ Value::Object(_)) => {
                    (self.on_item)(Item::Record(pos, record.clone()))
                }
                _ => (self.on_item)(Item::Problem(
                    pos,
                    "lookup-events entry without a CloudTrailEvent string; skipped".into(),
                )),
            }
        }
        Ok(())
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

/// Progress on stderr, only when it is a terminal, at most a few times a second.
/// Progress on stderr while a terminal watches (files or objects, and records).
pub(crate) struct Progress {
    enabled: bool,
    total: usize,
    last: Instant,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            total,
            last: Instant::now(),
        }
    }

    pub(crate) fn tick(&mut self, files: usize, records: u64) {
        if self.enabled && self.last.elapsed() > Duration::from_millis(250) {
            self.last = Instant::now();
            eprint!(
                "\rreading trail files: {files}/{} files, {records} records",
                self.total
            );
        }
    }

    pub(crate) fn done(&self, files: usize, records: u64) {
        if self.enabled && self.total > 0 {
            eprintln!(
                "\rread trail files: {files}/{} files, {records} records   ",
                self.total
            );
        }
    }
}
