//! Formats for keys and values where they meet a topic: sources decode, sinks encode.
//!
//! Built in: [`Json`] (any serde type; a null key or value reads as JSON `null`), [`Raw`]
//! (bytes as they are) and [`Utf8`] (text). State, tables and changelogs inside the processor
//! always use JSON, so a table's changelog can be read by any JSON consumer.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Turns one key or value into bytes and back. `None` is a null key or value in the log.
pub trait Codec<T>: Send + Sync + 'static {
    /// Fails with a short reason (the record is then set aside).
    fn encode(&self, value: &T) -> Result<Option<Vec<u8>>, String>;
    /// [`encode`](Self::encode) given the value itself (a sink owns its records), so that a
    /// codec whose value already holds its bytes may hand them over instead of copying.
    fn encode_owned(&self, value: T) -> Result<Option<Vec<u8>>, String> {
        self.encode(&value)
    }
    /// Fails with a short reason; the record is then set aside, never a panic.
    fn decode(&self, bytes: Option<&[u8]>) -> Result<T, String>;
    /// [`decode`](Self::decode) given the log's own buffer, so that a codec may keep a slice
    /// of it (a reference count) instead of copying.
    fn decode_bytes(&self, bytes: Option<&Bytes>) -> Result<T, String> {
        self.decode(bytes.map(|b| &b[..]))
    }
}

/// serde JSON. A null in the log decodes as JSON `null`, so `()` and `Option<T>` accept it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T: Serialize + DeserializeOwned> Codec<T> for Json {
    fn encode(&self, value: &T) -> Result<Option<Vec<u8>>, String> {
        // Fails only for types JSON cannot express (maps with non-string keys, say).
        serde_json::to_vec(value).map(Some).map_err(|e| e.to_string())
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<T, String> {
        serde_json::from_slice(bytes.unwrap_or(b"null")).map_err(|e| e.to_string())
    }
}

/// The bytes as they are. As a `Bytes` codec a null reads as empty; as `Option<Bytes>` it is
/// kept apart.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec<Bytes> for Raw {
    fn encode(&self, value: &Bytes) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(value.to_vec()))
    }

    fn encode_owned(&self, value: Bytes) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(value.into()))
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<Bytes, String> {
        Ok(Bytes::copy_from_slice(bytes.unwrap_or_default()))
    }
}

impl Codec<Option<Bytes>> for Raw {
    fn encode(&self, value: &Option<Bytes>) -> Result<Option<Vec<u8>>, String> {
        Ok(value.as_ref().map(|b| b.to_vec()))
    }

    fn encode_owned(&self, value: Option<Bytes>) -> Result<Option<Vec<u8>>, String> {
        Ok(value.map(Vec::from))
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<Option<Bytes>, String> {
        Ok(bytes.map(Bytes::copy_from_slice))
    }

    fn decode_bytes(&self, bytes: Option<&Bytes>) -> Result<Option<Bytes>, String> {
        Ok(bytes.cloned())
    }
}

/// UTF-8 text. A null is an error (use `Json` with `Option<String>` to accept nulls).
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Codec<String> for Utf8 {
    fn encode(&self, value: &String) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(value.as_bytes().to_vec()))
    }

    fn encode_owned(&self, value: String) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(value.into_bytes()))
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<String, String> {
        let bytes = bytes.ok_or_else(|| "null where text was expected".to_owned())?;
        String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
    }
}

/// Ignores the bytes: for a key or value the processor does not look at (it reads as `()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ignore;

impl Codec<()> for Ignore {
    fn encode(&self, _: &()) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }

    fn decode(&self, _: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }
}

/// The canonical state encoding of keys and values (tables, changelogs, snapshots): JSON.
pub(crate) fn state_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

pub(crate) fn from_state_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_from_the_log_are_not_copied() {
        let from_log = Bytes::from_static(b"a record value");
        let got = Codec::<Option<Bytes>>::decode_bytes(&Raw, Some(&from_log)).unwrap();
        assert_eq!(got.as_ref().map(|b| b.as_ptr()), Some(from_log.as_ptr()));
        assert_eq!(Codec::<Option<Bytes>>::decode_bytes(&Raw, None).unwrap(), None);
    }

    #[test]
    fn owned_text_and_bytes_are_encoded_without_copying() {
        let text = "a key".to_owned();
        let at = text.as_ptr();
        let encoded = Utf8.encode_owned(text).unwrap().unwrap();
        assert_eq!((encoded.as_ptr(), &encoded[..]), (at, &b"a key"[..]));
        let bytes = Bytes::from(b"a value".to_vec());
        let at = bytes.as_ptr();
        let encoded = Codec::<Option<Bytes>>::encode_owned(&Raw, Some(bytes)).unwrap().unwrap();
        assert_eq!((encoded.as_ptr(), &encoded[..]), (at, &b"a value"[..]));
        assert_eq!(Codec::<Option<Bytes>>::encode_owned(&Raw, None).unwrap(), None);
        // Codecs without their own encode_owned encode as encode does.
        assert_eq!(Json.encode_owned(vec![1, 2]).unwrap(), Json.encode(&vec![1, 2]).unwrap());
    }
}
