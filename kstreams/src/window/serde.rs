//! The wire format of windowed keys: byte for byte Java's `TimeWindowedSerde` and
//! `SessionWindowedSerde`, so a Java consumer reads kstreams' windowed outputs.

use super::{SessionWindowed, Window, Windowed};
use crate::error::SerdeError;
use crate::serde::{DefaultSerde, Serde};

fn inner_bytes<K, S: Serde<K>>(inner: &S, key: &K) -> Result<Vec<u8>, SerdeError> {
    inner
        .serialize(key)?
        .ok_or_else(|| SerdeError::new("the key of a windowed key cannot be null"))
}

fn split_tail(bytes: Option<&[u8]>, tail: usize) -> Result<(&[u8], &[u8]), SerdeError> {
    let bytes = bytes.ok_or_else(|| SerdeError::new("null where a windowed key was expected"))?;
    let split = bytes.len().checked_sub(tail).ok_or_else(|| {
        SerdeError::new(format!(
            "{} bytes where a windowed key needs at least {tail} (key, then window times)",
            bytes.len()
        ))
    })?;
    Ok(bytes.split_at(split))
}

fn be_i64(bytes: &[u8]) -> Result<i64, SerdeError> {
    let array = <[u8; 8]>::try_from(bytes)
        .map_err(|_| SerdeError::new("a window time is not 8 bytes long"))?;
    Ok(i64::from_be_bytes(array))
}

/// The serde of [`Windowed<K>`] keys (Java's `TimeWindowedSerde`): the inner key's bytes, then
/// the window start as 8 big-endian bytes.
///
/// The bytes do not hold the window's end: a deserializer made
/// [`with_window_size`](Self::with_window_size) computes `end = start + size` (`i64::MAX` on
/// overflow); without a size, `end = i64::MAX`, as Java's deserializer without one.
///
/// ```
/// use kstreams::serde::{Serde, StringSerde};
/// use kstreams::window::{TimeWindowedSerde, Window, Windowed};
/// let serde = TimeWindowedSerde::new(StringSerde).with_window_size(60_000);
/// let key = Windowed { key: "a".to_string(), window: Window { start: 60_000, end: 120_000 } };
/// let bytes = serde.serialize(&key).unwrap().unwrap();
/// assert_eq!(bytes, [b'a', 0, 0, 0, 0, 0, 0, 0xea, 0x60]);
/// assert_eq!(serde.deserialize(Some(&bytes)).unwrap(), key);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeWindowedSerde<S> {
    inner: S,
    window_size: Option<i64>,
}

impl<S> TimeWindowedSerde<S> {
    /// The serde of windowed keys whose inner key is written by `inner`; deserialized windows
    /// end at `i64::MAX` (no size known).
    pub fn new(inner: S) -> Self {
        TimeWindowedSerde {
            inner,
            window_size: None,
        }
    }

    /// The same serde, deserializing windows of `size_ms` milliseconds.
    #[must_use]
    pub fn with_window_size(mut self, size_ms: i64) -> Self {
        self.window_size = Some(size_ms);
        self
    }

    /// The inner key's serde.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<K, S: Serde<K>> Serde<Windowed<K>> for TimeWindowedSerde<S> {
    fn serialize(&self, value: &Windowed<K>) -> Result<Option<Vec<u8>>, SerdeError> {
        let mut out = inner_bytes(&self.inner, &value.key)?;
        out.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(Some(out))
    }

    /// The inner key: all but the 8 bytes of the window start.
    fn partition_key_len(&self, serialized: &[u8]) -> Option<usize> {
        Some(serialized.len().saturating_sub(8))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Windowed<K>, SerdeError> {
        let (key, tail) = split_tail(bytes, 8)?;
        let start = be_i64(tail)?;
        let end = match self.window_size {
            Some(size) => start.checked_add(size).unwrap_or(i64::MAX),
            None => i64::MAX,
        };
        Ok(Windowed {
            key: self.inner.deserialize(Some(key))?,
            window: Window { start, end },
        })
    }
}

/// The serde of [`SessionWindowed<K>`] keys (Java's `SessionWindowedSerde`): the inner key's
/// bytes, then the session's end, then its start, 8 big-endian bytes each.
///
/// ```
/// use kstreams::serde::{Serde, StringSerde};
/// use kstreams::window::{SessionWindowed, SessionWindowedSerde, Window};
/// let serde = SessionWindowedSerde::new(StringSerde);
/// let key = SessionWindowed { key: "a".to_string(), window: Window { start: 1, end: 2 } };
/// let bytes = serde.serialize(&key).unwrap().unwrap();
/// assert_eq!(bytes, [b'a', 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
/// assert_eq!(serde.deserialize(Some(&bytes)).unwrap(), key);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionWindowedSerde<S> {
    inner: S,
}

impl<S> SessionWindowedSerde<S> {
    /// The serde of session-windowed keys whose inner key is written by `inner`.
    pub fn new(inner: S) -> Self {
        SessionWindowedSerde { inner }
    }

    /// The inner key's serde.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<K, S: Serde<K>> Serde<SessionWindowed<K>> for SessionWindowedSerde<S> {
    fn serialize(&self, value: &SessionWindowed<K>) -> Result<Option<Vec<u8>>, SerdeError> {
        let mut out = inner_bytes(&self.inner, &value.key)?;
        out.extend_from_slice(&value.window.end.to_be_bytes());
        out.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(Some(out))
    }

    /// The inner key: all but the 16 bytes of the session's end and start.
    fn partition_key_len(&self, serialized: &[u8]) -> Option<usize> {
        Some(serialized.len().saturating_sub(16))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<SessionWindowed<K>, SerdeError> {
        let (key, tail) = split_tail(bytes, 16)?;
        let end = be_i64(&tail[..8])?;
        let start = be_i64(&tail[8..])?;
        Ok(SessionWindowed {
            key: self.inner.deserialize(Some(key))?,
            window: Window { start, end },
        })
    }
}

impl<K: DefaultSerde> DefaultSerde for Windowed<K> {
    type Serde = TimeWindowedSerde<K::Serde>;
}

impl<K: DefaultSerde> DefaultSerde for SessionWindowed<K> {
    type Serde = SessionWindowedSerde<K::Serde>;
}
