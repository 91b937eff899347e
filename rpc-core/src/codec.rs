//! The one place values are encoded and decoded (postcard), with errors a user can act on.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::depth::{self, LimitedError};
use crate::error::RpcError;

/// How deeply a decoded value may nest unless a service says otherwise
/// (`RpcServiceBuilder::max_decode_depth`).
pub const DEFAULT_MAX_DECODE_DEPTH: usize = 128;

/// Room the first encoding buffer has for the value; most invocations and replies fit.
const INITIAL_CAPACITY: usize = 128;

/// Encodes `value`; `context` says what it is, for the error ("encoding the reply of ...").
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    context: impl FnOnce() -> String,
) -> Result<Bytes, RpcError> {
    postcard::to_extend(value, Vec::with_capacity(INITIAL_CAPACITY))
        .map(Bytes::from)
        .map_err(|error| RpcError::Serialization {
            context: context(),
            reason: reason(error),
        })
}

/// Appends `value`'s encoding to `out`; on failure `out` is left as it was.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut BytesMut,
    context: impl FnOnce() -> String,
) -> Result<(), RpcError> {
    let start = out.len();
    postcard::serialize_with_flavor(value, Append(&mut *out)).map_err(|error| {
        out.truncate(start);
        RpcError::Serialization {
            context: context(),
            reason: reason(error),
        }
    })
}

/// A postcard output that appends to a buffer, copying byte slices whole.
struct Append<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes a value that must use every byte: trailing bytes mean that the two sides disagree
/// about the type. A value nested more than `max_depth` levels deep (sequences, maps, enums,
/// options, newtypes) is refused before it can exhaust the stack, whatever the type's
/// `Deserialize` impl does: bytes from a peer decide the nesting.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    max_depth: usize,
    context: impl FnOnce() -> String,
) -> Result<T, RpcError> {
    let failed = |reason: String| RpcError::Serialization {
        context: context(),
        reason,
    };
    let mut deserializer = postcard::Deserializer::from_bytes(bytes);
    match depth::deserialize_limited_tracked::<T, _>(&mut deserializer, max_depth) {
        Ok(value) => match deserializer.finalize() {
            Ok([]) => Ok(value),
            Ok(rest) => Err(failed(format!(
                "{} bytes left over after the value: the two sides disagree about its type",
                rest.len()
            ))),
            Err(error) => Err(failed(reason(error))),
        },
        Err(LimitedError::TooDeep(_)) => Err(failed(format!(
            "the value is nested more than {max_depth} levels deep, the recursion limit \
             (max_decode_depth); refused before decoding it"
        ))),
        Err(LimitedError::Other(error)) => Err(failed(reason(error))),
    }
}

/// [`decode`] from bytes a `Bytes` owns: a large byte string inside (a `bytes::Bytes`
/// argument, reply or stream item, or a field marked `#[serde(with = "rpc_core::bulk")]`)
/// becomes a slice of `bytes` instead of a copy (see [`shared_slice`]).
pub(crate) fn decode_shared<T: DeserializeOwned>(
    bytes: &Bytes,
    max_depth: usize,
    context: impl FnOnce() -> String,
) -> Result<T, RpcError> {
    let previous = SOURCE.with(|source| source.replace(Some(bytes.clone())));
    let decoded = decode(bytes, max_depth, context);
    SOURCE.with(|source| source.replace(previous));
    decoded
}

/// A byte string at least this long is shared with the buffer it was decoded from (when
/// that buffer is a `Bytes`); a shorter one is copied, so that a small value kept for long
/// does not pin a large buffer.
pub(crate) const SHARE_AT_LEAST: usize = 32 * 1024;

thread_local! {
    /// The buffer [`decode_shared`] is decoding, for [`shared_slice`].
    static SOURCE: std::cell::RefCell<Option<Bytes>> = const { std::cell::RefCell::new(None) };
}

/// `bytes` as a `Bytes`: a slice of the buffer being decoded when it lies inside it and is
/// at least [`SHARE_AT_LEAST`] long, else a copy.
pub(crate) fn shared_slice(bytes: &[u8]) -> Bytes {
    if bytes.len() >= SHARE_AT_LEAST {
        let shared = SOURCE.with(|source| {
            let source = source.borrow();
            let source = source.as_ref()?;
            let range = source.as_ptr_range();
            let inside = range.start <= bytes.as_ptr() && bytes.as_ptr_range().end <= range.end;
            inside.then(|| source.slice_ref(bytes))
        });
        if let Some(shared) = shared {
            return shared;
        }
    }
    Bytes::copy_from_slice(bytes)
}

/// postcard's explanation, made specific where postcard's own text is not.
fn reason(error: postcard::Error) -> String {
    match error {
        postcard::Error::SerdeSerCustom => crate::reference::take_failure().unwrap_or_else(|| {
            "a `Serialize` implementation returned an error (the codec does not keep its message)"
                .to_owned()
        }),
        postcard::Error::SerdeDeCustom => crate::reference::take_failure().unwrap_or_else(|| {
            "a `Deserialize` implementation rejected the data (the codec does not keep its message)"
                .to_owned()
        }),
        postcard::Error::SerializeSeqLengthUnknown => {
            "a sequence was serialized without a known length, which the wire format needs"
                .to_owned()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Owned, SharedBytes, Via};

    /// The bulk lane's one copy is the encoding: a large byte string decodes as a slice of
    /// the buffer it arrived in, a small one as its own copy.
    #[test]
    fn large_byte_strings_decode_without_a_copy() {
        for (size, shared) in [
            (SHARE_AT_LEAST, true),
            (SHARE_AT_LEAST - 1, false),
            (10, false),
        ] {
            let value = Bytes::from(vec![3u8; size]);
            let frame = encode(&Via::<SharedBytes, Bytes>::new(&value), String::new).unwrap();
            let decoded: Owned<SharedBytes, Bytes> =
                decode_shared(&frame, DEFAULT_MAX_DECODE_DEPTH, String::new).unwrap();
            assert_eq!(decoded.0, value);
            let inside = frame.as_ptr_range().contains(&decoded.0.as_ptr());
            assert_eq!(inside, shared, "{size} bytes");
        }
        // Decoding from a plain slice always copies.
        let value = Bytes::from(vec![3u8; SHARE_AT_LEAST]);
        let frame = encode(&Via::<SharedBytes, Bytes>::new(&value), String::new).unwrap();
        let copied: Owned<SharedBytes, Bytes> =
            decode(&frame, DEFAULT_MAX_DECODE_DEPTH, String::new).unwrap();
        assert!(!frame.as_ptr_range().contains(&copied.0.as_ptr()));
    }
}
