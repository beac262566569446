//! Streaming the prepared exposition: headers and sample lines appended piece by piece, so a
//! scrape never holds the whole body.

use std::sync::Arc;

use super::resource::{RESOURCE_FAMILIES, RenderedResource, ResourceFamily};
use crate::exposition::{Family, Format};

/// The per-resource families in one static: the scrape reads it once per resource and family.
static FAMILIES: [&ResourceFamily; RESOURCE_FAMILIES.len()] = RESOURCE_FAMILIES;

/// A resource's rendered sample lines, shared by the cache and the published exposition.
type Chunks = Arc<RenderedResource>;

/// The prepared text of every non-health family.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    /// Per-resource chunks, shared with the cache (not copied), in resource order.
    resources: Vec<Chunks>,
    /// The families after the per-resource ones.
    blocks: Vec<(&'static Family, String)>,
}

impl Exposition {
    pub(super) fn new(resources: Vec<Chunks>, blocks: Vec<(&'static Family, String)>) -> Self {
        Exposition { resources, blocks }
    }

    /// Writes every family: header, then the prepared sample lines.
    pub fn write(&self, format: Format, out: &mut String) {
        let mut cursor = Cursor::default();
        while self.fill(format, &mut cursor, out, usize::MAX) {}
    }

    /// Appends the next part of the exposition to `out` until it holds about `target` bytes;
    /// returns false once everything was written. Lets a scrape stream the body in pieces
    /// instead of holding all of it.
    pub fn fill(
        &self,
        format: Format,
        cursor: &mut Cursor,
        out: &mut String,
        target: usize,
    ) -> bool {
        while out.len() < target {
            if cursor.family < FAMILIES.len() {
                if cursor.resource == 0 && !cursor.header_done {
                    FAMILIES[cursor.family].family.write_header(format, out);
                    cursor.header_done = true;
                }
                match self.resources.get(cursor.resource) {
                    Some(r) => {
                        let name = FAMILIES[cursor.family].family.name;
                        let prefix = r.prefix();
                        for line in r.tails(cursor.family).split_inclusive('\n') {
                            out.push_str(name);
                            out.push('{');
                            out.push_str(prefix);
                            out.push_str(line);
                        }
                        cursor.resource += 1;
                    }
                    None => {
                        cursor.family += 1;
                        cursor.resource = 0;
                        cursor.header_done = false;
                    }
                }
            } else {
                let Some((family, body)) = self.blocks.get(cursor.block) else {
                    return false;
                };
                family.write_header(format, out);
                out.push_str(body);
                cursor.block += 1;
            }
        }
        true
    }

    /// Bytes of prepared sample lines (headers excluded).
    pub fn len(&self) -> usize {
        let resources: usize = self
            .resources
            .iter()
            .map(|r| {
                (0..FAMILIES.len())
                    .map(|i| {
                        let l = r.tails(i);
                        l.len()
                            + l.matches('\n').count()
                                * (FAMILIES[i].family.name.len() + 1 + r.prefix().len())
                    })
                    .sum::<usize>()
            })
            .sum();
        resources + self.blocks.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.blocks.is_empty()
    }
}

/// Where a streamed write of an [`Exposition`] stands.
#[derive(Debug, Default, Clone)]
pub struct Cursor {
    family: usize,
    resource: usize,
    header_done: bool,
    block: usize,
}
