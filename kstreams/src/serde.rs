//! Serdes: values to bytes and back, one at a time or a batch at a time.
//!
//! Owns: the [`Serde`] trait, the built-in serdes and [`DefaultSerde`], which picks a serde from a
//! type so that sources, sinks and stores need no serde argument. Built-in integer serdes are
//! big-endian, byte for byte what Kafka's Java serdes write. Deserialization never panics: wrong
//! bytes give a [`SerdeError`] that the caller turns into an error naming the record's origin.

use std::marker::PhantomData;

use crate::error::SerdeError;

/// Turns values of `T` into bytes and back.
///
/// `None` bytes stand for Kafka's null (a null key, or a tombstone value). The batch forms exist so
/// that a serde can amortize work over a batch; their default loops over the single forms. Sources
/// read through [`deserialize_batch`](Self::deserialize_batch), sinks write through
/// [`serialize_batch`](Self::serialize_batch).
///
/// # The batch contract
///
/// A batch form called over `n` items appends to `out`:
/// - on `Ok(())`, exactly `n` outputs, the one of item `j` at position `j`;
/// - on `Err((i, error))`, `i < n` is the first item that failed, and exactly the `i` outputs of
///   the items before it were appended (nothing for item `i` or after it).
///
/// The runtime calls the form again on the items after `i`, so a failing item costs one call and
/// the other items of the batch go on (each failure goes through its error policy). It checks the
/// contract on every call: a serde that breaks it (an index out of range, too many or too few
/// outputs) fails the batch with an [`Error::Config`](crate::Error::Config) naming the serde's
/// source or sink topic; keys are never paired with the wrong values.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a serde for `{T}`",
    label = "this serde does not read or write `{T}`",
    note = "a sink or store serde must match the type of what flows into it"
)]
pub trait Serde<T>: Send + Sync + 'static {
    /// Writes `value`; `Ok(None)` writes a null.
    fn serialize(&self, value: &T) -> Result<Option<Vec<u8>>, SerdeError>;

    /// Reads a value; `bytes` is `None` for a null.
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError>;

    /// As a key serde of a sink: how many leading bytes of `serialized` (a key it wrote) pick
    /// the record's partition; `None` (the default) means all of them. The windowed serdes
    /// return the inner key's length, so a windowed result lands where Java's
    /// `WindowedStreamPartitioner` puts it: in the partition of its key.
    fn partition_key_len(&self, serialized: &[u8]) -> Option<usize> {
        let _ = serialized;
        None
    }

    /// Writes a batch of values, in order, appending to `out`. On error, returns the index of the
    /// first value that failed, with the outputs of the values before it appended (see [the batch
    /// contract](Self#the-batch-contract)).
    fn serialize_batch<'a>(
        &self,
        values: &mut dyn Iterator<Item = &'a T>,
        out: &mut Vec<Option<Vec<u8>>>,
    ) -> Result<(), (usize, SerdeError)>
    where
        T: 'a,
    {
        for (i, v) in values.enumerate() {
            out.push(self.serialize(v).map_err(|e| (i, e))?);
        }
        Ok(())
    }

    /// Reads a batch of values, in order, appending to `out`. On error, returns the index of the
    /// first bytes that failed, with the values before it appended (see [the batch
    /// contract](Self#the-batch-contract)).
    fn deserialize_batch(
        &self,
        bytes: &mut dyn Iterator<Item = Option<&[u8]>>,
        out: &mut Vec<T>,
    ) -> Result<(), (usize, SerdeError)> {
        for (i, b) in bytes.enumerate() {
            out.push(self.deserialize(b).map_err(|e| (i, e))?);
        }
        Ok(())
    }
}

/// Types with a serde chosen by default, so sources, sinks and stores of them need no serde argument.
///
/// Implemented for `String`, `Vec<u8>`, `i32`, `i64`, `u32`, `u64`, `f64`, `()` and `Option<T>` of
/// those. For your own types, use [`Json`] explicitly or implement this trait (the [`json_serde!`]
/// macro does it for a type that implements serde's `Serialize` and `Deserialize`).
///
/// [`json_serde!`]: crate::json_serde
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no default serde",
    label = "kstreams does not know how to turn `{Self}` into bytes",
    note = "built-in serdes cover String, Vec<u8>, i32, i64, u32, u64, f64, () and Option of those",
    note = "a borrowed value (`&str`, `&[u8]`, `&T`) has no serde: keys and values are owned, so pass a `String`, a `Vec<u8>` or a `T`",
    note = "for a type of your own that derives serde's traits, write `kstreams::json_serde!(YourType);`, or pass a serde explicitly"
)]
pub trait DefaultSerde: Sized + 'static {
    /// The serde used when none is given.
    type Serde: Serde<Self> + Default;
}

fn null_error(what: &str) -> SerdeError {
    SerdeError::new(format!(
        "null where a {what} was expected (use Option<{what}> to accept nulls)"
    ))
}

/// UTF-8 strings (Java's `StringSerde`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(Some(value.as_bytes().to_vec()))
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<String, SerdeError> {
        let bytes = bytes.ok_or_else(|| null_error("String"))?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(SerdeError::new(format!(
                "invalid UTF-8 at byte {} of {}",
                e.valid_up_to(),
                bytes.len()
            ))),
        }
    }
}

/// Bytes as they are (Java's `ByteArraySerde`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(Some(value.clone()))
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.ok_or_else(|| null_error("Vec<u8>"))?.to_vec())
    }
}

macro_rules! big_endian_serde {
    ($(#[$doc:meta] $name:ident => $ty:ty),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Serde<$ty> for $name {
            fn serialize(&self, value: &$ty) -> Result<Option<Vec<u8>>, SerdeError> {
                Ok(Some(value.to_be_bytes().to_vec()))
            }
            fn deserialize(&self, bytes: Option<&[u8]>) -> Result<$ty, SerdeError> {
                let bytes = bytes.ok_or_else(|| null_error(stringify!($ty)))?;
                let array = <[u8; core::mem::size_of::<$ty>()]>::try_from(bytes).map_err(|_| {
                    SerdeError::new(format!(
                        "{} bytes where a {} needs {}",
                        bytes.len(),
                        stringify!($ty),
                        core::mem::size_of::<$ty>()
                    ))
                })?;
                Ok(<$ty>::from_be_bytes(array))
            }
        }

        impl DefaultSerde for $ty {
            type Serde = $name;
        }
    )*};
}

big_endian_serde! {
    /// 4-byte big-endian signed integers (Java's `IntegerSerde`).
    I32Serde => i32,
    /// 8-byte big-endian signed integers (Java's `LongSerde`).
    I64Serde => i64,
    /// 4-byte big-endian unsigned integers (the same bytes as Java's `IntegerSerde` for 0..2^31).
    U32Serde => u32,
    /// 8-byte big-endian unsigned integers (the same bytes as Java's `LongSerde` for 0..2^63).
    U64Serde => u64,
    /// 8-byte big-endian IEEE 754 doubles (Java's `DoubleSerde`).
    F64Serde => f64,
}

/// The unit type: always written as null, reads any bytes (Java's `VoidSerde` writes null too).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSerde;

impl Serde<()> for UnitSerde {
    fn serialize(&self, _: &()) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(None)
    }
    fn deserialize(&self, _: Option<&[u8]>) -> Result<(), SerdeError> {
        Ok(())
    }
}

/// `None` is Kafka's null; `Some(v)` is `v` written by the inner serde.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionSerde<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for OptionSerde<S> {
    fn serialize(&self, value: &Option<T>) -> Result<Option<Vec<u8>>, SerdeError> {
        match value {
            Some(v) => self.0.serialize(v),
            None => Ok(None),
        }
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        match bytes {
            Some(b) => self.0.deserialize(Some(b)).map(Some),
            None => Ok(None),
        }
    }
}

/// JSON through serde (`serde_json`).
///
/// ```
/// use kstreams::serde::{Json, Serde};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Point { x: i32, y: i32 }
/// let bytes = Json::<Point>::new().serialize(&Point { x: 1, y: 2 }).unwrap();
/// assert_eq!(bytes.as_deref(), Some(&br#"{"x":1,"y":2}"#[..]));
/// assert!(Json::<Point>::new().deserialize(Some(b"{\"x\":1")).is_err());
/// ```
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// The JSON serde of `T`.
    pub const fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Json::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Json<T> {}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

impl<T> Serde<T> for Json<T>
where
    T: ::serde::Serialize + ::serde::de::DeserializeOwned + 'static,
{
    fn serialize(&self, value: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        serde_json::to_vec(value)
            .map(Some)
            .map_err(|e| SerdeError::new(format!("cannot write JSON: {e}")))
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        let bytes = bytes.ok_or_else(|| null_error("JSON value"))?;
        serde_json::from_slice(bytes).map_err(|e| SerdeError::new(format!("invalid JSON: {e}")))
    }
}

impl DefaultSerde for String {
    type Serde = StringSerde;
}
impl DefaultSerde for Vec<u8> {
    type Serde = BytesSerde;
}
impl DefaultSerde for () {
    type Serde = UnitSerde;
}
impl<T: DefaultSerde> DefaultSerde for Option<T> {
    type Serde = OptionSerde<T::Serde>;
}

/// Gives a type that implements serde's `Serialize` and `Deserialize` the [`Json`] serde by default.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Order { id: u64, amount: f64 }
/// kstreams::json_serde!(Order);
/// fn needs_default<T: kstreams::serde::DefaultSerde>() {}
/// needs_default::<Order>();
/// ```
#[macro_export]
macro_rules! json_serde {
    ($($ty:ty),+ $(,)?) => {$(
        impl $crate::serde::DefaultSerde for $ty {
            type Serde = $crate::serde::Json<$ty>;
        }
    )+};
}

/// The default serde of `T`.
pub fn default_serde<T: DefaultSerde>() -> T::Serde {
    T::Serde::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian_like_java() {
        assert_eq!(I32Serde.serialize(&1).unwrap(), Some(vec![0, 0, 0, 1]));
        assert_eq!(
            I32Serde.serialize(&-2).unwrap(),
            Some(vec![0xff, 0xff, 0xff, 0xfe])
        );
        assert_eq!(
            I64Serde.serialize(&258).unwrap(),
            Some(vec![0, 0, 0, 0, 0, 0, 1, 2])
        );
        assert_eq!(U32Serde.deserialize(Some(&[0, 0, 1, 0])).unwrap(), 256);
        assert_eq!(
            U64Serde
                .deserialize(Some(&[0, 0, 0, 0, 0, 0, 0, 7]))
                .unwrap(),
            7
        );
        // Java's DoubleSerializer writes Double.doubleToLongBits big-endian.
        assert_eq!(
            F64Serde.serialize(&1.5).unwrap(),
            Some(1.5f64.to_bits().to_be_bytes().to_vec())
        );
    }

    #[test]
    fn wrong_lengths_and_nulls_are_errors_not_panics() {
        let e = I64Serde.deserialize(Some(&[1, 2, 3])).unwrap_err();
        assert_eq!(e.message(), "3 bytes where a i64 needs 8");
        assert!(I32Serde.deserialize(None).is_err());
        assert!(StringSerde.deserialize(Some(&[0x66, 0xff])).is_err());
        assert!(
            StringSerde
                .deserialize(None)
                .unwrap_err()
                .message()
                .contains("Option")
        );
    }

    #[test]
    fn option_maps_none_to_null() {
        let s = OptionSerde(StringSerde);
        assert_eq!(s.serialize(&None).unwrap(), None);
        assert_eq!(s.deserialize(None).unwrap(), None);
        assert_eq!(s.deserialize(Some(b"x")).unwrap(), Some("x".to_string()));
    }

    #[test]
    fn batch_forms_report_the_failing_index() {
        let input: Vec<Option<&[u8]>> =
            vec![Some(&[0, 0, 0, 1]), Some(&[0, 0]), Some(&[0, 0, 0, 3])];
        let mut out = Vec::new();
        let err = I32Serde
            .deserialize_batch(&mut input.into_iter(), &mut out)
            .unwrap_err();
        assert_eq!(err.0, 1);
        assert_eq!(out, vec![1]);
    }
}
