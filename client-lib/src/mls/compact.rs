//! Bytes in the client's JSON records as base64 text, where serde writes
//! them as an array of numbers (about 3.6 characters a byte, against 1.33):
//! a send's outbox holds its content and its ciphertext, and is written
//! durably with every send. Records written before, with arrays of
//! numbers, are still read.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::{Deserializer, Serializer, de};

/// Writes `bytes` as base64 text.
pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(bytes))
}

/// Reads base64 text, or an array of numbers as records of earlier
/// versions hold.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_any(Bytes)
}

/// The visitor of either form.
struct Bytes;

impl<'de> de::Visitor<'de> for Bytes {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("base64 text or an array of bytes")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
        STANDARD
            .decode(text)
            .map_err(|_| E::custom("bytes that are not base64"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

/// The same for an optional value (`null` when absent).
pub(super) mod option {
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes `bytes` as base64 text, or `null`.
    pub(in super::super) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::serialize(bytes, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Reads base64 text, an array of numbers, or `null`.
    pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Compact>::deserialize(deserializer)?.map(|c| c.0))
    }

    /// Bytes in either form.
    struct Compact(Vec<u8>);

    impl<'de> serde::Deserialize<'de> for Compact {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            super::deserialize(deserializer).map(Compact)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        #[serde(with = "super")]
        content: Vec<u8>,
        #[serde(default, with = "super::option")]
        sealed: Option<Vec<u8>>,
    }

    #[test]
    fn bytes_are_written_as_base64_and_read_back() {
        let record = Record {
            content: vec![0, 1, 2, 250, 255],
            sealed: Some(vec![9; 40]),
        };
        let text = serde_json::to_string(&record).unwrap();
        assert!(
            text.starts_with(r#"{"content":"AAEC+v8=","sealed":"CQkJ"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record);
        let none = Record {
            content: Vec::new(),
            sealed: None,
        };
        let text = serde_json::to_string(&none).unwrap();
        assert_eq!(text, r#"{"content":"","sealed":null}"#);
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), none);
    }

    #[test]
    fn records_of_earlier_versions_are_read() {
        let old = r#"{"content":[0,1,2,250,255],"sealed":[9,9]}"#;
        let record: Record = serde_json::from_str(old).unwrap();
        assert_eq!(record.content, vec![0, 1, 2, 250, 255]);
        assert_eq!(record.sealed, Some(vec![9, 9]));
        let older: Record = serde_json::from_str(r#"{"content":[7]}"#).unwrap();
        assert_eq!(older.sealed, None);
    }

    #[test]
    fn what_is_neither_is_refused() {
        assert!(serde_json::from_str::<Record>(r#"{"content":"not base64!"}"#).is_err());
        assert!(serde_json::from_str::<Record>(r#"{"content":[256]}"#).is_err());
        assert!(serde_json::from_str::<Record>(r#"{"content":7}"#).is_err());
    }
}
