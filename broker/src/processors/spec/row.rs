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

/// A field pick: `name` gets words `from..=to` (1-based) joined by a space.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pick {
    pub name: String,
    pub from: usize,
    pub to: usize,
}

/// Picks a `Line` row can hold; more go to JSON.
const MAX_PICKS: usize = 8;
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

impl Line {
    fn text(&self, i: usize) -> Option<Cow<'_, str>> {
        let (a, b) = self.spans[i];
        let bytes = self.bytes.get(a as usize..b as usize).filter(|w| !w.is_empty())?;
        // `from_utf8` first: much faster than the lossy decoder on valid text.
        Some(match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        })
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.picks.iter().position(|p| p.name == name)
    }
}

impl Row {
    /// A field's value, if present.
    pub fn field(&self, name: &str) -> Option<Cow<'_, Value>> {
        match self {
            Row::Json(v) => v.get(name).map(Cow::Borrowed),
            Row::Line(line) => {
                let text = line.text(line.find(name)?)?;
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
            Row::Line(line) => line.text(line.find(name)?),
        }
    }

    pub fn into_value(self) -> Value {
        match self {
            Row::Json(v) => v,
            Row::Line(line) => {
                let mut out = serde_json::Map::new();
                for (i, pick) in line.picks.iter().enumerate() {
                    if let Some(text) = line.text(i) {
                        out.insert(pick.name.clone(), Value::String(text.into_owned()));
                    }
                }
                Value::Object(out)
            }
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

    /// Splits `line` on runs of ASCII blanks (space, tab, CR, LF, FF — awk's default field
    /// separator splits on space, tab and newline) and keeps each pick's words; a pick with no
    /// words is left out. One pass, stopping after the last word picked.
    pub fn split(&self, line: &Bytes) -> Row {
        let last = self.picks.iter().map(|p| p.to).max().unwrap_or(0);
        let mut words = [(0u32, 0u32); MAX_WORDS];
        let mut count = 0;
        let mut i = 0;
        while count < last.min(MAX_WORDS) {
            while i < line.len() && line[i].is_ascii_whitespace() {
                i += 1;
            }
            if i == line.len() {
                break;
            }
            let start = i;
            while i < line.len() && !line[i].is_ascii_whitespace() {
                i += 1;
            }
            match (u32::try_from(start), u32::try_from(i)) {
                (Ok(a), Ok(b)) => words[count] = (a, b),
                _ => return Row::Json(self.split_to_json(line)),
            }
            count += 1;
        }
        if self.picks.len() > MAX_PICKS || (last > MAX_WORDS && count == MAX_WORDS) {
            return Row::Json(self.split_to_json(line));
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
                return Row::Json(self.split_to_json(line));
            }
            *span = (first.0, last.1);
            end = end.max(last.1 as usize);
        }
        Row::Line(Line { bytes: line.slice(..end), picks: self.picks.clone(), spans })
    }

    /// The picks as a JSON object, joining words by one space whatever separated them.
    fn split_to_json(&self, line: &[u8]) -> Value {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
        #[test]
        fn fields_are_picked_as_awk_splits(
            words in prop::collection::vec(
                (prop::collection::vec(prop::sample::select(b"ab/\xc3\xa9\xff[]".to_vec()), 1..5),
                 prop::sample::select(vec![" ", "  ", "\t", " \t ", "\r\n"])),
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
