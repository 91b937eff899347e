//! How a value is written on the wire when its plain serde form is slow.
//!
//! serde serializes a `Vec<u8>` as a sequence, one call per byte; postcard writes such a
//! sequence exactly as it writes a byte string (a varint length, then the bytes), so the two
//! forms are the same bytes on the wire, and only the speed differs. `#[rpc_gateway]` recognises
//! `Vec<u8>` in argument and reply types (alone, or inside `Option` and `Result<_, E>`) and has
//! them go through [`Bytes`], which writes and reads the bytes in one piece; every other type
//! goes through [`Plain`], its own serde impls. The user's types do not change, and neither does
//! the encoding: a peer built without this sees the same bytes.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, EnumAccess, VariantAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::call::{Handled, ReplyMode, RpcCall};
use crate::deferred::Deferred;
use crate::gateway::{Gateway, GatewayHandle};
use crate::stream::{RpcStream, Streaming};

/// Writes a `T`: one of the formats below.
pub trait WireEncode<T> {
    /// Serializes `value`.
    fn serialize<S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error>;
}

/// Reads a `T`: one of the formats below.
pub trait WireDecode<T> {
    /// Deserializes a `T`.
    fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error>;
}

/// The type's own serde impls.
#[derive(Debug)]
pub struct Plain;

impl<T: Serialize> WireEncode<T> for Plain {
    fn serialize<S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
        value.serialize(serializer)
    }
}

impl<T: DeserializeOwned> WireDecode<T> for Plain {
    fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
        T::deserialize(deserializer)
    }
}

/// A `Vec<u8>` as one byte string.
#[derive(Debug)]
pub struct Bytes;

impl WireEncode<Vec<u8>> for Bytes {
    fn serialize<S: Serializer>(value: &Vec<u8>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }
}

impl WireDecode<Vec<u8>> for Bytes {
    fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    // A format that writes byte strings as sequences hands one back as a sequence.
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

/// A `bytes::Bytes` as one byte string, read without a copy when it is large (the bulk lane):
/// it then shares the buffer the frame arrived in.
#[derive(Debug)]
pub struct SharedBytes;

impl WireEncode<bytes::Bytes> for SharedBytes {
    fn serialize<S: Serializer>(value: &bytes::Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }
}

impl WireDecode<bytes::Bytes> for SharedBytes {
    fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bytes::Bytes, D::Error> {
        deserializer.deserialize_bytes(SharedBytesVisitor)
    }
}

struct SharedBytesVisitor;

impl<'de> Visitor<'de> for SharedBytesVisitor {
    type Value = bytes::Bytes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, bytes: &'de [u8]) -> Result<bytes::Bytes, E> {
        Ok(crate::codec::shared_slice(bytes))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<bytes::Bytes, E> {
        Ok(bytes::Bytes::copy_from_slice(bytes))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<bytes::Bytes, E> {
        Ok(bytes::Bytes::from(bytes))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<bytes::Bytes, A::Error> {
        BytesVisitor.visit_seq(seq).map(bytes::Bytes::from)
    }
}

/// A `#[serde(with = "rpc_core::bulk")]` field of type `bytes::Bytes`: written as one byte
/// string, and read without a copy when it is large and arrived over a transport (it then
/// shares the buffer its frame arrived in), like a `Bytes` argument, reply or stream item.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Block {
///     pub id: u64,
///     #[serde(with = "rpc_core::bulk")]
///     pub data: bytes::Bytes,
/// }
/// ```
pub mod bulk {
    use serde::{Deserializer, Serializer};

    /// Writes the bytes as one byte string.
    pub fn serialize<S: Serializer>(
        value: &bytes::Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }

    /// Reads them, sharing the buffer they arrived in when they are large.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<bytes::Bytes, D::Error> {
        deserializer.deserialize_bytes(super::SharedBytesVisitor)
    }
}

/// An `Option<T>` whose `T` goes through format `F`.
#[derive(Debug)]
pub struct OptionOf<F>(PhantomData<F>);

impl<T, F: WireEncode<T>> WireEncode<Option<T>> for OptionOf<F> {
    fn serialize<S: Serializer>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.serialize_some(&Via::<F, T>::new(value)),
            None => serializer.serialize_none(),
        }
    }
}

impl<T, F: WireDecode<T>> WireDecode<Option<T>> for OptionOf<F> {
    fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
        deserializer.deserialize_option(OptionVisitor::<F, T>(PhantomData))
    }
}

struct OptionVisitor<F, T>(PhantomData<(F, fn() -> T)>);

impl<'de, T, F: WireDecode<T>> Visitor<'de> for OptionVisitor<F, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an option")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        F::deserialize(deserializer).map(Some)
    }
}

/// A `Result<T, E>` whose `T` goes through format `F` (and `E` through its own serde impls).
#[derive(Debug)]
pub struct ResultOf<F>(PhantomData<F>);

impl<T, E: Serialize, F: WireEncode<T>> WireEncode<Result<T, E>> for ResultOf<F> {
    fn serialize<S: Serializer>(value: &Result<T, E>, serializer: S) -> Result<S::Ok, S::Error> {
        // As serde writes a `Result`: variant 0 `Ok`, variant 1 `Err`.
        match value {
            Ok(value) => {
                serializer.serialize_newtype_variant("Result", 0, "Ok", &Via::<F, T>::new(value))
            }
            Err(error) => serializer.serialize_newtype_variant("Result", 1, "Err", error),
        }
    }
}

impl<T, E: DeserializeOwned, F: WireDecode<T>> WireDecode<Result<T, E>> for ResultOf<F> {
    fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Result<T, E>, D::Error> {
        deserializer.deserialize_enum(
            "Result",
            &["Ok", "Err"],
            ResultVisitor::<F, T, E>(PhantomData),
        )
    }
}

struct ResultVisitor<F, T, E>(PhantomData<(F, Produces<(T, E)>)>);

/// Marks a type as produced, not owned: `Send` and `Sync` whatever it is.
type Produces<T> = fn() -> T;

impl<'de, T, E, F> Visitor<'de> for ResultVisitor<F, T, E>
where
    F: WireDecode<T>,
    E: DeserializeOwned,
{
    type Value = Result<T, E>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a result")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Result<T, E>, A::Error> {
        match data.variant::<ResultVariant>()? {
            (ResultVariant::Ok, variant) => variant
                .newtype_variant_seed(Seed::<F, T>(PhantomData))
                .map(Ok),
            (ResultVariant::Err, variant) => variant.newtype_variant::<E>().map(Err),
        }
    }
}

enum ResultVariant {
    Ok,
    Err,
}

impl<'de> Deserialize<'de> for ResultVariant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(ResultVariantVisitor)
    }
}

struct ResultVariantVisitor;

impl Visitor<'_> for ResultVariantVisitor {
    type Value = ResultVariant;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`Ok` or `Err`")
    }

    fn visit_u64<E: de::Error>(self, index: u64) -> Result<ResultVariant, E> {
        match index {
            0 => Ok(ResultVariant::Ok),
            1 => Ok(ResultVariant::Err),
            _ => Err(E::invalid_value(
                de::Unexpected::Unsigned(index),
                &"variant index 0 or 1",
            )),
        }
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<ResultVariant, E> {
        match name {
            "Ok" => Ok(ResultVariant::Ok),
            "Err" => Ok(ResultVariant::Err),
            _ => Err(E::unknown_variant(name, &["Ok", "Err"])),
        }
    }
}

/// Deserializes a `T` through format `F`.
struct Seed<F, T>(PhantomData<(F, fn() -> T)>);

impl<'de, T, F: WireDecode<T>> DeserializeSeed<'de> for Seed<F, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        F::deserialize(deserializer)
    }
}

/// A borrowed `T` that serializes through format `F`.
pub struct Via<'a, F, T>(&'a T, PhantomData<F>);

impl<'a, F, T> Via<'a, F, T> {
    /// Wraps `value`.
    pub fn new(value: &'a T) -> Self {
        Via(value, PhantomData)
    }
}

impl<F: WireEncode<T>, T> Serialize for Via<'_, F, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        F::serialize(self.0, serializer)
    }
}

/// A `T` deserialized through format `F`.
pub struct Owned<F, T>(pub T, PhantomData<F>);

impl<'de, F: WireDecode<T>, T> Deserialize<'de> for Owned<F, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        F::deserialize(deserializer).map(|value| Owned(value, PhantomData))
    }
}

/// What the type of an rpc method's argument must be: owned, `Send` and serde (implemented for
/// every such type). `#[rpc_gateway]` checks each argument type against it, spanned on the
/// type, so a type that cannot cross the wire is reported there, in these words, before
/// anything else.
///
/// ```
/// fn crosses_the_wire<T: rpc_core::RpcArgument>() {}
/// crosses_the_wire::<(String, Vec<u8>, Option<u64>)>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of an rpc method: arguments must be owned, `Send`, serde types",
    label = "not an owned, `Send`, serde type",
    note = "derive `serde::Serialize` and `serde::Deserialize` on your own types; use `String` for \
            `Cow<str>`, `Arc<T>` for `Rc<T>`, `Vec<T>` for `&[T]`, an enum of the cases for a \
            closure or a trait object"
)]
pub trait RpcArgument: Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> RpcArgument for T {}

/// What the reply type of an rpc method must be: owned, `Send` and serde, like an
/// [`RpcArgument`].
///
/// ```
/// fn can_reply<T: rpc_core::RpcReply>() {}
/// can_reply::<Result<Vec<String>, String>>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the reply of an rpc method: replies must be owned, `Send`, serde types",
    label = "not an owned, `Send`, serde type",
    note = "derive `serde::Serialize` and `serde::Deserialize` on your own types; for errors, \
            return `Result<T, E>` with a serde error type such as `String` or an enum of yours"
)]
pub trait RpcReply: Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> RpcReply for T {}

// The probes: generated code writes `(&Probe::<T, F>::NEW).encode(..)` (and `decode`, `reply`,
// `defer`, `ask`) for the user's concrete `T`. When `T` can cross the wire, method resolution
// finds the `Can*` impl on `Probe` and the call goes through format `F`. When it cannot, it finds
// the `Cannot*` impl on `&Probe`, which compiles and never runs: the gateway's `RpcArgument` or
// `RpcReply` bound has already failed the build, with the one error the user should read, and
// nothing else fails after it.

/// Selects format `F` for `T` when `T` can cross the wire.
#[derive(Debug)]
pub struct Probe<T, F>(PhantomData<(Produces<T>, F)>);

impl<T, F> Probe<T, F> {
    /// The probe.
    pub const NEW: Self = Probe(PhantomData);
}

const UNREACHABLE: &str = "a type that cannot cross the wire fails the build before this runs";

/// Encodes a `T` in format `F`.
pub trait CanEncode<T> {
    /// Serializes `value`.
    fn encode<S: Serializer>(&self, value: &T, serializer: S) -> Result<S::Ok, S::Error>;
}

impl<T, F: WireEncode<T>> CanEncode<T> for Probe<T, F> {
    fn encode<S: Serializer>(&self, value: &T, serializer: S) -> Result<S::Ok, S::Error> {
        F::serialize(value, serializer)
    }
}

/// Stands in for [`CanEncode`]; never runs.
pub trait CannotEncode<T> {
    /// Never runs.
    fn encode<S: Serializer>(&self, _: &T, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(UNREACHABLE))
    }
}

impl<T, F> CannotEncode<T> for &Probe<T, F> {}

/// Decodes a `T` in format `F`.
pub trait CanDecode<T> {
    /// Deserializes a `T`.
    fn decode<'de, D: Deserializer<'de>>(&self, deserializer: D) -> Result<T, D::Error>;
}

impl<T, F: WireDecode<T>> CanDecode<T> for Probe<T, F> {
    fn decode<'de, D: Deserializer<'de>>(&self, deserializer: D) -> Result<T, D::Error> {
        F::deserialize(deserializer)
    }
}

/// Stands in for [`CanDecode`]; never runs.
pub trait CannotDecode<T> {
    /// Never runs.
    fn decode<'de, D: Deserializer<'de>>(&self, _: D) -> Result<T, D::Error> {
        Err(de::Error::custom(UNREACHABLE))
    }
}

impl<T, F> CannotDecode<T> for &Probe<T, F> {}

/// Replies with a `T`, written in format `F`.
pub trait CanReply<T> {
    /// The reply of an ask that returned `value`.
    fn reply(&self, mode: ReplyMode, value: T) -> Handled;
    /// The reply of a method that returned a [`Deferred`].
    fn defer(&self, mode: ReplyMode, deferred: Deferred<T>) -> Handled;
    /// The reply of a method that returned an [`RpcStream`] of `T`.
    fn stream(&self, mode: ReplyMode, stream: RpcStream<T>) -> Handled;
}

impl<T: Send + 'static, F: WireEncode<T>> CanReply<T> for Probe<T, F> {
    fn reply(&self, mode: ReplyMode, value: T) -> Handled {
        mode.value_as::<T, F>(value)
    }

    fn stream(&self, mode: ReplyMode, stream: RpcStream<T>) -> Handled {
        mode.stream_as::<T, F>(stream)
    }

    fn defer(&self, mode: ReplyMode, deferred: Deferred<T>) -> Handled {
        mode.deferred_as::<T, F>(deferred)
    }
}

/// Stands in for [`CanReply`]; never runs.
pub trait CannotReply<T> {
    /// Never runs.
    fn reply(&self, _: ReplyMode, _: T) -> Handled {
        Handled::NoReply
    }
    /// Never runs.
    fn defer(&self, _: ReplyMode, _: Deferred<T>) -> Handled {
        Handled::NoReply
    }
    /// Never runs.
    fn stream(&self, _: ReplyMode, _: RpcStream<T>) -> Handled {
        Handled::NoReply
    }
}

impl<T, F> CannotReply<T> for &Probe<T, F> {}

/// Asks for a `T`, read in format `F`.
pub trait CanAsk<T> {
    /// Sends the ask: see [`GatewayHandle::ask`].
    fn ask<G: Gateway>(
        &self,
        handle: &GatewayHandle<G>,
        method: usize,
        invocation: G::Invocation,
    ) -> RpcCall<T>;

    /// Opens a stream of `T`: see [`GatewayHandle::stream_as`].
    fn stream<G: Gateway>(
        &self,
        handle: &GatewayHandle<G>,
        method: usize,
        invocation: G::Invocation,
    ) -> Streaming<T>;
}

impl<T: 'static, F: WireDecode<T>> CanAsk<T> for Probe<T, F> {
    fn ask<G: Gateway>(
        &self,
        handle: &GatewayHandle<G>,
        method: usize,
        invocation: G::Invocation,
    ) -> RpcCall<T> {
        handle.ask_as::<T, F>(method, invocation)
    }

    fn stream<G: Gateway>(
        &self,
        handle: &GatewayHandle<G>,
        method: usize,
        invocation: G::Invocation,
    ) -> Streaming<T> {
        handle.stream_as::<T, F>(method, invocation)
    }
}

/// Stands in for [`CanAsk`]; never runs.
pub trait CannotAsk<T> {
    /// Never runs.
    fn ask<G: Gateway>(&self, _: &GatewayHandle<G>, _: usize, _: G::Invocation) -> RpcCall<T> {
        unreachable!("{UNREACHABLE}")
    }
    /// Never runs.
    fn stream<G: Gateway>(&self, _: &GatewayHandle<G>, _: usize, _: G::Invocation) -> Streaming<T> {
        unreachable!("{UNREACHABLE}")
    }
}

impl<T, F> CannotAsk<T> for &Probe<T, F> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<F: WireEncode<T>, T>(value: &T) -> Vec<u8> {
        postcard::to_allocvec(&Via::<F, T>::new(value)).expect("encode")
    }

    fn decode<F: WireDecode<T>, T>(bytes: &[u8]) -> T {
        postcard::from_bytes::<Owned<F, T>>(bytes)
            .expect("decode")
            .0
    }

    /// The fast forms write the very bytes serde's own impls write, and read them back.
    #[test]
    fn byte_forms_are_the_plain_encoding() {
        let bytes: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let plain = postcard::to_allocvec(&bytes).expect("encode");
        assert_eq!(encode::<Bytes, _>(&bytes), plain);
        assert_eq!(decode::<Bytes, Vec<u8>>(&plain), bytes);

        for value in [Some(bytes.clone()), Some(Vec::new()), None] {
            let plain = postcard::to_allocvec(&value).expect("encode");
            assert_eq!(encode::<OptionOf<Bytes>, _>(&value), plain);
            assert_eq!(decode::<OptionOf<Bytes>, Option<Vec<u8>>>(&plain), value);
        }

        let results: [Result<Vec<u8>, String>; 2] = [Ok(bytes.clone()), Err("no".into())];
        for value in results {
            let plain = postcard::to_allocvec(&value).expect("encode");
            assert_eq!(encode::<ResultOf<Bytes>, _>(&value), plain);
            assert_eq!(
                decode::<ResultOf<Bytes>, Result<Vec<u8>, String>>(&plain),
                value
            );
        }

        let nested: Result<Option<Vec<u8>>, u32> = Ok(Some(vec![1, 2, 3]));
        let plain = postcard::to_allocvec(&nested).expect("encode");
        assert_eq!(encode::<ResultOf<OptionOf<Bytes>>, _>(&nested), plain);
        assert_eq!(
            decode::<ResultOf<OptionOf<Bytes>>, Result<Option<Vec<u8>>, u32>>(&plain),
            nested
        );
    }

    #[test]
    fn a_bad_result_variant_is_an_error() {
        assert!(
            postcard::from_bytes::<Owned<ResultOf<Bytes>, Result<Vec<u8>, u8>>>(&[2, 0]).is_err()
        );
        // A length longer than the input.
        assert!(postcard::from_bytes::<Owned<Bytes, Vec<u8>>>(&[200, 1, 0]).is_err());
    }
}
