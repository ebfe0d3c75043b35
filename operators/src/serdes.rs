//! Turning typed keys and values into bytes and back, like Kafka's `Serde`.
//!
//! Kafka records may carry no key or no value (null). A plain serde rejects null with an error;
//! wrap it in [`NullableSerde`] to read and write nulls as `Option<T>`.

use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A failure to convert between a typed value and bytes.
#[derive(Clone, Debug)]
pub struct SerdeError {
    message: String,
    cause: Option<Arc<dyn Error + Send + Sync>>,
    transient: bool,
}

impl SerdeError {
    pub fn new(message: impl Into<String>) -> Self {
        SerdeError { message: message.into(), cause: None, transient: false }
    }

    /// The bytes may well be fine: what is needed to read them (a schema registry, say) is
    /// unavailable for now, so trying again later can succeed.
    pub fn transient(message: impl Into<String>) -> Self {
        SerdeError { transient: true, ..SerdeError::new(message) }
    }

    pub fn is_transient(&self) -> bool {
        self.transient
    }

    pub fn with_cause(mut self, cause: impl Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }
}

impl fmt::Display for SerdeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl Error for SerdeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn Error + 'static))
    }
}

/// Serializer and deserializer for one type. `topic` is the topic (or store changelog) the bytes
/// belong to, as in Kafka, so a serde may vary its format per topic.
pub trait Serde<T>: Send + Sync {
    fn serialize(&self, topic: &str, value: &T) -> Result<Vec<u8>, SerdeError>;

    fn deserialize(&self, topic: &str, bytes: &[u8]) -> Result<T, SerdeError>;

    /// The value a null key or value stands for. Plain serdes have none.
    fn deserialize_null(&self, topic: &str) -> Result<T, SerdeError> {
        Err(SerdeError::new(format!("unexpected null in topic '{topic}'; use NullableSerde to accept nulls")))
    }

    /// The bytes to produce, or `None` for a Kafka null.
    fn serialize_nullable(&self, topic: &str, value: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        self.serialize(topic, value).map(Some)
    }
}

impl<T, S: Serde<T> + ?Sized> Serde<T> for Arc<S> {
    fn serialize(&self, topic: &str, value: &T) -> Result<Vec<u8>, SerdeError> {
        (**self).serialize(topic, value)
    }

    fn deserialize(&self, topic: &str, bytes: &[u8]) -> Result<T, SerdeError> {
        (**self).deserialize(topic, bytes)
    }

    fn deserialize_null(&self, topic: &str) -> Result<T, SerdeError> {
        (**self).deserialize_null(topic)
    }

    fn serialize_nullable(&self, topic: &str, value: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        (**self).serialize_nullable(topic, value)
    }
}

/// Deserializes optional Kafka bytes, treating a missing key or value as a null.
pub(crate) fn deserialize_optional<T>(
    serde: &dyn Serde<T>,
    topic: &str,
    bytes: Option<&[u8]>,
) -> Result<T, SerdeError> {
    match bytes {
        Some(bytes) => serde.deserialize(topic, bytes),
        None => serde.deserialize_null(topic),
    }
}

/// UTF-8 strings.
#[derive(Clone, Copy, Debug, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, _topic: &str, value: &String) -> Result<Vec<u8>, SerdeError> {
        Ok(value.as_bytes().to_vec())
    }

    fn deserialize(&self, topic: &str, bytes: &[u8]) -> Result<String, SerdeError> {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| SerdeError::new(format!("invalid UTF-8 string in topic '{topic}'")).with_cause(e))
    }
}

/// Raw bytes, passed through unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, _topic: &str, value: &Vec<u8>) -> Result<Vec<u8>, SerdeError> {
        Ok(value.clone())
    }

    fn deserialize(&self, _topic: &str, bytes: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.to_vec())
    }
}

/// 64-bit integers as 8 big-endian bytes, compatible with Kafka's `LongSerializer`.
#[derive(Clone, Copy, Debug, Default)]
pub struct I64Serde;

impl Serde<i64> for I64Serde {
    fn serialize(&self, _topic: &str, value: &i64) -> Result<Vec<u8>, SerdeError> {
        Ok(value.to_be_bytes().to_vec())
    }

    fn deserialize(&self, topic: &str, bytes: &[u8]) -> Result<i64, SerdeError> {
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| {
            SerdeError::new(format!("expected 8 bytes for an i64 in topic '{topic}', got {}", bytes.len()))
        })?;
        Ok(i64::from_be_bytes(bytes))
    }
}

/// JSON through `serde_json`.
pub struct JsonSerde<T> {
    // fn() -> T keeps the serde Send + Sync whatever T is: it never holds a T.
    _type: PhantomData<fn() -> T>,
}

impl<T> JsonSerde<T> {
    pub fn new() -> Self {
        JsonSerde { _type: PhantomData }
    }
}

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T: Serialize + DeserializeOwned> Serde<T> for JsonSerde<T> {
    fn serialize(&self, topic: &str, value: &T) -> Result<Vec<u8>, SerdeError> {
        serde_json::to_vec(value)
            .map_err(|e| SerdeError::new(format!("cannot encode JSON for topic '{topic}'")).with_cause(e))
    }

    fn deserialize(&self, topic: &str, bytes: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(bytes)
            .map_err(|e| SerdeError::new(format!("invalid JSON in topic '{topic}'")).with_cause(e))
    }
}

/// Wraps a serde so Kafka nulls read as `None` and `None` is produced as a null (a tombstone when
/// used for values).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullableSerde<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for NullableSerde<S> {
    fn serialize(&self, topic: &str, value: &Option<T>) -> Result<Vec<u8>, SerdeError> {
        match value {
            Some(value) => self.0.serialize(topic, value),
            None => Err(SerdeError::new(format!("cannot write a null as bytes for topic '{topic}'"))),
        }
    }

    fn deserialize(&self, topic: &str, bytes: &[u8]) -> Result<Option<T>, SerdeError> {
        self.0.deserialize(topic, bytes).map(Some)
    }

    fn deserialize_null(&self, _topic: &str) -> Result<Option<T>, SerdeError> {
        Ok(None)
    }

    fn serialize_nullable(&self, topic: &str, value: &Option<T>) -> Result<Option<Vec<u8>>, SerdeError> {
        value.as_ref().map(|value| self.0.serialize(topic, value)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i64_is_big_endian_like_kafka_long_serializer() {
        assert_eq!(I64Serde.serialize("t", &258).unwrap(), vec![0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(I64Serde.deserialize("t", &[0, 0, 0, 0, 0, 0, 1, 2]).unwrap(), 258);
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        assert!(I64Serde.deserialize("t", &[1, 2, 3]).is_err());
        assert!(StringSerde.deserialize("t", &[0xff, 0xfe]).is_err());
        assert!(JsonSerde::<Vec<u32>>::new().deserialize("t", b"{not json").is_err());
    }

    #[test]
    fn plain_serdes_reject_null_and_nullable_accepts_it() {
        assert!(StringSerde.deserialize_null("t").is_err());
        let nullable = NullableSerde(StringSerde);
        assert_eq!(nullable.deserialize_null("t").unwrap(), None);
        assert_eq!(nullable.serialize_nullable("t", &None).unwrap(), None);
        assert_eq!(nullable.serialize_nullable("t", &Some("a".to_owned())).unwrap(), Some(b"a".to_vec()));
    }

    #[test]
    fn json_round_trips() {
        let serde = JsonSerde::<Vec<String>>::new();
        let bytes = serde.serialize("t", &vec!["a".to_owned()]).unwrap();
        assert_eq!(bytes, br#"["a"]"#.to_vec());
        assert_eq!(serde.deserialize("t", &bytes).unwrap(), vec!["a".to_owned()]);
    }
}
