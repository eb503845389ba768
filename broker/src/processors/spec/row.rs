//! [`Row`]: the value of a spec's record. JSON, or — for a text source whose first op is
//! `fields` — the picked fields of the line, kept as byte ranges of (a copy of the head of) the
//! line and turned into JSON only when something needs JSON. The per-URL count reads two fields
//! of each line and never builds an object.
//!
//! Invariant: a `Line` row means exactly the JSON object `{name: text}` of its present picks (the
//! words `from..=to` joined by one space, in name order), which is what `into_value` and
//! `Serialize` produce; so which variant a row has never changes a result.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use eddy_processor::Codec;

use super::scan::blanks_of_block;

/// A field pick: `name` gets words `from..=to` (1-based) joined by a space.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pick {
    pub name: String,
    pub from: usize,
    pub to: usize,
}

/// Picks a `Line` row can hold; more go to JSON.
pub(super) const MAX_PICKS: usize = 8;
/// Words a `Line` row is split into at most; a pick beyond goes to JSON.
const MAX_WORDS: usize = 16;

#[derive(Debug, Clone)]
pub(super) enum Row {
    Json(Value),
    Line(Line),
}

#[derive(Debug, Clone)]
pub(super) struct Line {
    /// The line up to the end of its last picked word (a slice of the log's buffer).
    bytes: Bytes,
    /// Sorted by name.
    picks: Arc<[Pick]>,
    /// Per pick, its byte range in `bytes`; empty when the line has none of its words.
    spans: [(u32, u32); MAX_PICKS],
}

/// A line's picked fields, borrowed: what a [`Line`] row reads through, and what the fused
/// aggregate (`fused`) reads straight from the log's bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct LineRef<'a> {
    bytes: &'a [u8],
    picks: &'a [Pick],
    spans: &'a [(u32, u32); MAX_PICKS],
}

impl<'a> LineRef<'a> {
    /// Pick `i`'s bytes (`None` when the line has none of its words).
    pub fn bytes(&self, i: usize) -> Option<&'a [u8]> {
        let (a, b) = *self.spans.get(i)?;
        self.bytes.get(a as usize..b as usize).filter(|w| !w.is_empty())
    }

    /// Pick `i`'s text (`None` when the line has none of its words).
    pub fn text(&self, i: usize) -> Option<Cow<'a, str>> {
        let bytes = self.bytes(i)?;
        // `from_utf8` first: much faster than the lossy decoder on valid text.
        Some(match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        })
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.picks.iter().position(|p| p.name == name)
    }

    /// The row as its JSON object.
    pub fn to_value(self) -> Value {
        let mut out = serde_json::Map::new();
        for (i, pick) in self.picks.iter().enumerate() {
            if let Some(text) = self.text(i) {
                out.insert(pick.name.clone(), Value::String(text.into_owned()));
            }
        }
        Value::Object(out)
    }
}

impl Line {
    fn view(&self) -> LineRef<'_> {
        LineRef { bytes: &self.bytes, picks: &self.picks, spans: &self.spans }
    }
}

impl Row {
    /// A field's value, if present.
    pub fn field(&self, name: &str) -> Option<Cow<'_, Value>> {
        match self {
            Row::Json(v) => v.get(name).map(Cow::Borrowed),
            Row::Line(line) => {
                let view = line.view();
                let text = view.text(view.find(name)?)?;
                Some(Cow::Owned(Value::String(text.into_owned())))
            }
        }
    }

    /// A field's text: strings as they are, other values as JSON.
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        match self {
            Row::Json(v) => match v.get(name)? {
                Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                other => Some(Cow::Owned(other.to_string())),
            },
            Row::Line(line) => {
                let view = line.view();
                view.text(view.find(name)?)
            }
        }
    }

    pub fn into_value(self) -> Value {
        match self {
            Row::Json(v) => v,
            Row::Line(line) => line.view().to_value(),
        }
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Row::Json(v) => v.serialize(s),
            Row::Line(_) => self.clone().into_value().serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Row::Json)
    }
}

/// Text lines decoded as their picked fields (a text source fused with a first `fields` op),
/// and the `fields` op itself.
#[derive(Debug, Clone)]
pub(super) struct FieldsCodec {
    picks: Arc<[Pick]>,
}

impl FieldsCodec {
    pub fn new(mut picks: Vec<Pick>) -> Self {
        picks.sort_by(|a, b| a.name.cmp(&b.name));
        Self { picks: picks.into() }
    }

    /// The picks, sorted by name.
    pub fn picks(&self) -> &[Pick] {
        &self.picks
    }

    /// Splits `line` on runs of ASCII blanks (space, tab, CR, LF, FF — awk's default field
    /// separator splits on space, tab and newline) and keeps each pick's words; a pick with no
    /// words is left out. One pass, stopping after the last word picked.
    pub fn split(&self, line: &Bytes) -> Row {
        match self.spans(line) {
            Some((spans, end)) => {
                Row::Line(Line { bytes: line.slice(..end), picks: self.picks.clone(), spans })
            }
            None => Row::Json(self.split_to_json(line)),
        }
    }

    /// Each pick's byte range in `line` (empty when the line has none of its words) and the
    /// end of the last picked word; `None` when the picks do not fit a [`Line`] row (then
    /// [`split_to_json`](Self::split_to_json) says what they are).
    pub fn spans(&self, line: &[u8]) -> Option<([(u32, u32); MAX_PICKS], usize)> {
        let last = self.picks.iter().map(|p| p.to).max().unwrap_or(0);
        let mut words = [(0u32, 0u32); MAX_WORDS];
        let count = split_words(line, &mut words[..last.min(MAX_WORDS)])?;
        if self.picks.len() > MAX_PICKS || (last > MAX_WORDS && count == MAX_WORDS) {
            return None;
        }
        let mut spans = [(0u32, 0u32); MAX_PICKS];
        let mut end = 0;
        for (span, pick) in spans.iter_mut().zip(self.picks.iter()) {
            let chosen = words.get(pick.from - 1..pick.to.min(count)).unwrap_or_default();
            let (Some(first), Some(last)) = (chosen.first(), chosen.last()) else { continue };
            // Several words are one range only when single spaces separate them.
            let spaced =
                chosen.windows(2).all(|w| w[1].0 == w[0].1 + 1 && line[w[0].1 as usize] == b' ');
            if !spaced {
                return None;
            }
            *span = (first.0, last.1);
            end = end.max(last.1 as usize);
        }
        Some((spans, end))
    }

    /// A borrowed row over `line` and its [`spans`](Self::spans).
    pub fn view<'a>(&'a self, line: &'a [u8], spans: &'a [(u32, u32); MAX_PICKS]) -> LineRef<'a> {
        LineRef { bytes: line, picks: &self.picks, spans }
    }

    /// The picks as a JSON object, joining words by one space whatever separated them.
    pub fn split_to_json(&self, line: &[u8]) -> Value {
        let words: Vec<&[u8]> =
            line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).collect();
        let mut out = serde_json::Map::new();
        for pick in self.picks.iter() {
            let chosen = words.get(pick.from - 1..pick.to.min(words.len())).unwrap_or_default();
            if !chosen.is_empty() {
                let joined = chosen.join(&b' ');
                let text = String::from_utf8_lossy(&joined).into_owned();
                out.insert(pick.name.clone(), Value::String(text));
            }
        }
        Value::Object(out)
    }
}

impl Codec<Row> for FieldsCodec {
    fn encode(&self, value: &Row) -> Result<Option<Vec<u8>>, String> {
        serde_json::to_vec(value).map(Some).map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Row, String> {
        Ok(self.split(&Bytes::copy_from_slice(bytes.unwrap_or_default())))
    }
    fn decode_bytes(&self, bytes: Option<&Bytes>) -> Result<Row, String> {
        Ok(self.split(bytes.unwrap_or(&Bytes::new())))
    }
}

/// Splits `line` into its first `words.len()` words (runs of non-blanks), as byte ranges;
/// returns how many it found (`None` for a line too long for `u32` positions).
///
/// A mask of the blanks of each 64-byte block (16 bytes at a time with SSE2 where there is
/// SSE2, else eight at a time), then word starts and ends from the mask's edges — no branch
/// per byte, which is what a byte loop mispredicts at every word boundary.
fn split_words(line: &[u8], words: &mut [(u32, u32)]) -> Option<usize> {
    u32::try_from(line.len()).ok()?;
    let (mut count, mut open, mut prev_blank) = (0, 0u32, true);
    if words.is_empty() {
        return Some(0);
    }
    for (b, block) in line.chunks(64).enumerate() {
        let base = (b * 64) as u32;
        let blank = blanks_of_block(block);
        let before = (blank << 1) | u64::from(prev_blank);
        let mut edges = (!blank & before) | (blank & !before);
        while edges != 0 {
            let at = edges.trailing_zeros();
            edges &= edges - 1;
            if blank & (1 << at) == 0 {
                open = base + at;
            } else {
                words[count] = (open, base + at);
                count += 1;
                if count == words.len() {
                    return Some(count);
                }
            }
        }
        prev_blank = blank >> 63 == 1;
    }
    if !prev_blank {
        // The line ends in a word whose block was full (no padding closed it).
        words[count] = (open, line.len() as u32);
        count += 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::scan::is_blank;
    use super::*;

    /// awk's fields, the slow and obvious way.
    fn reference(line: &[u8], picks: &[Pick]) -> Value {
        let words: Vec<&[u8]> =
            line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).collect();
        let mut out = serde_json::Map::new();
        for p in picks {
            let chosen = words.get(p.from - 1..p.to.min(words.len())).unwrap_or_default();
            if !chosen.is_empty() {
                let joined = chosen.join(&b' ');
                out.insert(p.name.clone(), Value::String(String::from_utf8_lossy(&joined).into()));
            }
        }
        Value::Object(out)
    }

    proptest! {
        /// The word splitter against the obvious byte loop, on lines of any length (blocks of
        /// 64 bytes cut through words and runs of blanks) and any bytes.
        #[test]
        fn words_split_as_a_byte_loop_splits(
            line in prop::collection::vec(
                prop::sample::select(b" \t\n\r\x0c\x0b\x00\x01\x1f!ab\x7f\x80\xff".to_vec()),
                0..300),
            want in 0usize..40,
        ) {
            let mut reference = Vec::new();
            let mut i = 0;
            while i < line.len() && reference.len() < want {
                if is_blank(line[i]) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < line.len() && !is_blank(line[i]) {
                    i += 1;
                }
                reference.push((start as u32, i as u32));
            }
            let mut words = vec![(0, 0); want];
            let count = split_words(&line, &mut words).unwrap();
            prop_assert_eq!(&words[..count], &reference[..]);
        }

        #[test]
        fn fields_are_picked_as_awk_splits(
            words in prop::collection::vec(
                (prop::collection::vec(prop::sample::select(b"ab/\xc3\xa9\xff[]\x0b\x01\x1f!\x7f\x80\x0c".to_vec()), 1..5),
                 prop::sample::select(vec![" ", "  ", "\t", " \t ", "\r\n", "\x0c"])),
                0..40),
            lead in prop::sample::select(vec!["", " ", "\t"]),
            ranges in prop::collection::vec((1usize..40, 0usize..4), 1..10),
        ) {
            let mut line = lead.as_bytes().to_vec();
            for (w, sep) in &words {
                line.extend_from_slice(w);
                line.extend_from_slice(sep.as_bytes());
            }
            let picks: Vec<Pick> = ranges
                .iter()
                .enumerate()
                .map(|(i, (from, extra))| Pick { name: format!("f{i}"), from: *from, to: from + extra })
                .collect();
            let want = reference(&line, &picks);
            let row = FieldsCodec::new(picks.clone()).split(&Bytes::from(line.clone()));
            for p in &picks {
                prop_assert_eq!(row.field(&p.name).map(Cow::into_owned), want.get(&p.name).cloned());
                prop_assert_eq!(
                    row.text(&p.name).map(Cow::into_owned),
                    want.get(&p.name).and_then(Value::as_str).map(str::to_owned)
                );
            }
            prop_assert_eq!(serde_json::to_vec(&row).unwrap(), serde_json::to_vec(&want).unwrap());
            prop_assert_eq!(row.into_value(), want);
        }
    }
}
