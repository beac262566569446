//! The offline cluster source: a folder of `kubectl get ... -o yaml|json` output.
//!
//! Reads single objects, multi-document YAML, JSON and `kind: List`, recursively. A broken
//! document or object is reported with its file and line and the rest is still read.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::model::{ClusterSnapshot, ParseError, object};

/// Files larger than this are reported and skipped rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Reads every `.yaml`, `.yml` and `.json` file under `dir` into a snapshot.
///
/// Fails only when `dir` itself cannot be read; everything below it is best effort.
pub fn read_kube_dir(dir: &Path) -> std::io::Result<ClusterSnapshot> {
    let mut files = Vec::new();
    let mut snapshot = ClusterSnapshot::default();
    walk(dir, &mut files, &mut snapshot.parse_errors)?;
    for file in files {
        read_file(&file, &mut snapshot);
    }
    snapshot.normalize();
    Ok(snapshot)
}

/// Sorted, recursive listing of the files this source reads.
pub fn walk(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    errors: &mut Vec<ParseError>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect();
    entries.sort_by_key(|e| e.as_ref().map(|e| e.file_name()).ok());
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(ParseError {
                    file: dir.display().to_string(),
                    line: None,
                    message: format!("cannot list: {e}"),
                });
                continue;
            }
        };
        let path = entry.path();
        let is_dir = std::fs::metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_dir {
            if let Err(e) = walk(&path, out, errors) {
                errors.push(ParseError {
                    file: path.display().to_string(),
                    line: None,
                    message: format!("cannot list: {e}"),
                });
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads one file into the snapshot, recording every problem.
pub fn read_file(path: &Path, snapshot: &mut ClusterSnapshot) {
    let file = path.display().to_string();
    let err = |line: Option<usize>, message: String| ParseError {
        file: file.clone(),
        line,
        message,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            snapshot.parse_errors.push(err(
                None,
                format!(
                    "file is {} bytes, over the {MAX_FILE_BYTES}-byte limit; skipped",
                    m.len()
                ),
            ));
            return;
        }
        Ok(_) => {}
        Err(e) => {
            snapshot
                .parse_errors
                .push(err(None, format!("cannot read: {e}")));
            return;
        }
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            snapshot
                .parse_errors
                .push(err(None, format!("cannot read: {e}")));
            return;
        }
    };
    read_bytes(&file, &bytes, snapshot);
}

/// Reads one file's content, labelled `file` in errors; `.json` names are parsed as JSON.
pub fn read_bytes(file: &str, bytes: &[u8], snapshot: &mut ClusterSnapshot) {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            snapshot.parse_errors.push(ParseError {
                file: file.to_string(),
                line: None,
                message: format!("not UTF-8 text: {e}"),
            });
            return;
        }
    };
    let is_json = file.ends_with(".json");
    for doc in parse_documents(text, is_json) {
        match doc {
            Ok(doc) => add_document(file, doc, snapshot),
            Err(DocumentError { line, message }) => snapshot.parse_errors.push(ParseError {
                file: file.to_string(),
                line,
                message,
            }),
        }
    }
}

/// One parsed document and where it starts.
pub struct Document {
    pub line: usize,
    pub value: Value,
    /// Start lines of `items[]` entries, when the document is a List read from YAML.
    pub item_lines: Vec<usize>,
}

/// A document that does not parse: the line in the file (when known) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DocumentError {
    pub line: Option<usize>,
    pub message: String,
}

/// Parses a file's documents; a bad one gives its [`DocumentError`] and the others still parse.
pub fn parse_documents(text: &str, is_json: bool) -> Vec<Result<Document, DocumentError>> {
    if is_json {
        return vec![
            serde_json::from_str::<Value>(text)
                .map(|value| Document {
                    line: 1,
                    value,
                    item_lines: Vec::new(),
                })
                .map_err(|e| DocumentError {
                    line: Some(e.line()),
                    message: format!("invalid JSON: {e}"),
                }),
        ];
    }
    split_yaml_documents(text)
        .into_iter()
        .map(|(start, chunk)| {
            let value: Value = serde_saphyr::from_str(&chunk).map_err(|e| yaml_error(&e, start))?;
            let item_lines = if value.get("kind").and_then(Value::as_str) == Some("List") {
                list_item_lines(&chunk, start)
            } else {
                Vec::new()
            };
            // Point object-level messages at the document's first line of content.
            let content = chunk
                .lines()
                .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .unwrap_or(0);
            Ok(Document {
                line: start + content,
                value,
                item_lines,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct SpannedList {
    #[serde(default)]
    items: Vec<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
}

fn list_item_lines(chunk: &str, start: usize) -> Vec<usize> {
    serde_saphyr::from_str::<SpannedList>(chunk)
        .map(|l| {
            l.items
                .iter()
                .map(|s| start + s.referenced.line() as usize - 1)
                .collect()
        })
        .unwrap_or_default()
}

/// The absolute line and a one-line message from a serde-saphyr error inside a chunk starting
/// at `start`.
fn yaml_error(e: &serde_saphyr::Error, start: usize) -> DocumentError {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // Drop serde-saphyr's own "line N column M: " (relative to the chunk) for ours.
    let (column, message) = match first.strip_prefix("line ") {
        Some(rest) => match rest.split_once(": ") {
            Some((pos, msg)) => (pos.split_once("column ").map(|(_, c)| c.to_string()), msg),
            None => (None, first),
        },
        None => (None, first),
    };
    let line = e.location().map(|l| start + l.line() as usize - 1);
    let message = match column {
        Some(c) => format!("invalid YAML (column {c}): {message}"),
        None => format!("invalid YAML: {message}"),
    };
    DocumentError {
        line: line.or(Some(start)),
        message,
    }
}

/// Splits YAML text at document markers (`---` / `...` at column 0), keeping each
/// document's first line number so errors point into the original file.
pub fn split_yaml_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    let flush = |current: &mut String, start: usize, docs: &mut Vec<(usize, String)>| {
        let has_content = current.lines().any(|l| {
            !l.trim().is_empty() && !l.trim_start().starts_with('#') && !l.starts_with('%')
        });
        if has_content {
            docs.push((start, std::mem::take(current)));
        } else {
            current.clear();
        }
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_start || is_end {
            flush(&mut current, start, &mut docs);
            start = n + 1;
            if is_start && !line[3..].trim().is_empty() {
                // Content after `---` on the same line belongs to the document; blank out
                // the marker so columns stay true.
                start = n;
                current.push_str("   ");
                current.push_str(&line[3..]);
                current.push('\n');
            }
            continue;
        }
        if current.is_empty() {
            start = n;
        }
        current.push_str(line);
        current.push('\n');
    }
    flush(&mut current, start, &mut docs);
    docs
}

fn add_document(file: &str, doc: Document, snapshot: &mut ClusterSnapshot) {
    if is_list(&doc.value) || doc.value.is_array() {
        let items = doc
            .value
            .get("items")
            .and_then(Value::as_array)
            .or(doc.value.as_array());
        for (i, item) in items.into_iter().flatten().enumerate() {
            let line = doc.item_lines.get(i).copied().unwrap_or(doc.line);
            add_value(file, line, &format!("items[{i}]"), item, snapshot);
        }
    } else {
        add_value(file, doc.line, "", &doc.value, snapshot);
    }
}

/// `kind: List` from kubectl, or `<Kind>List` from the API, with an `items` array.
fn is_list(v: &Value) -> bool {
    v.get("items").is_some_and(Value::is_array)
        && v.get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
}

/// Adds one value, unpacking lists nested inside lists.
fn add_value(file: &str, line: usize, path: &str, value: &Value, snapshot: &mut ClusterSnapshot) {
    if is_list(value) {
        for (i, item) in value["items"].as_array().into_iter().flatten().enumerate() {
            let inner = if path.is_empty() {
                format!("items[{i}]")
            } else {
                format!("{path}.items[{i}]")
            };
            add_value(file, line, &inner, item, snapshot);
        }
    } else {
        add_object(file, line, path, value, snapshot);
    }
}

fn add_object(file: &str, line: usize, path: &str, value: &Value, snapshot: &mut ClusterSnapshot) {
    snapshot.objects += 1;
    if let (Some(api), Some(kind)) = (
        value.get("apiVersion").and_then(Value::as_str),
        value.get("kind").and_then(Value::as_str),
    ) {
        let (group, _) = object::split_api_version(api);
        *snapshot
            .object_kinds
            .entry((group.to_string(), kind.to_string()))
            .or_default() += 1;
    }
    let classified = object::classify(value);
    for message in classified.errors {
        let message = if path.is_empty() {
            message
        } else {
            format!("{path}: {message}")
        };
        snapshot.parse_errors.push(ParseError {
            file: file.to_string(),
            line: Some(line),
            message,
        });
    }
    for o in classified.objects {
        snapshot.insert(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_keeps_lines() {
        let text = "# header\n---\na: 1\n---\n\n---\nb: 2\n...\n--- c: 3\n";
        let docs = split_yaml_documents(text);
        let starts: Vec<_> = docs.iter().map(|d| d.0).collect();
        assert_eq!(starts, vec![3, 7, 9]);
        assert!(docs[2].1.contains("c: 3"));
    }

    #[test]
    fn a_broken_document_does_not_hide_the_next() {
        let text = "a: [1\n---\nb: 2\n";
        let docs = parse_documents(text, false);
        assert_eq!(docs.len(), 2);
        let DocumentError { line, message: msg } = docs[0].as_ref().err().unwrap();
        assert_eq!(*line, Some(1));
        assert!(msg.starts_with("invalid YAML"), "{msg}");
        assert_eq!(docs[1].as_ref().unwrap().value["b"], 2);
        assert_eq!(docs[1].as_ref().unwrap().line, 3);
    }

    #[test]
    fn yaml_error_lines_are_absolute() {
        let text = "a: 1\n---\nok: 1\nbad: [x\n";
        let docs = parse_documents(text, false);
        let DocumentError { line, .. } = docs[1].as_ref().err().unwrap();
        assert!(matches!(line, Some(4) | Some(5)), "{line:?}");
    }

    #[test]
    fn list_item_lines_are_found() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: A\n  x: 1\n- kind: B\n";
        let docs = parse_documents(text, false);
        let d = docs[0].as_ref().unwrap();
        assert_eq!(d.item_lines, vec![4, 6]);
    }
}
