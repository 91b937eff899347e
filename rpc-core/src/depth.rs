//! A bound on how deeply a decoded value may nest.
//!
//! Derived `Deserialize` impls recurse once per level of nesting, so a small hostile payload
//! (postcard encodes `enum Tree { Leaf, Node(Box<Tree>) }` a million levels deep in about a
//! megabyte) would overflow the stack. [`DepthLimited`] wraps a `Deserializer` and everything it
//! hands on (visitors, seq/map/enum/variant accesses and the seeds passed through them), so every
//! nested `deserialize` call comes back through it, whatever the type's `Deserialize` impl does.
//!
//! Counting: each time a visitor is entered with something nested (`visit_seq`, `visit_map`,
//! `visit_enum`, `visit_some`, `visit_newtype_struct`) the depth goes up by one until that call
//! returns. Scalars do not count: `u32` is depth 0, `Vec<u32>` or a struct is 1,
//! `Option<Vec<u32>>` is 2. Going past the limit fails with a custom error *before* the deeper
//! level is entered. That means no more than `max_depth` levels are ever built, so dropping a
//! partly built value cannot recurse any deeper either.
//!
//! Some formats throw away custom error messages. postcard, for example, turns every one into
//! `Error::SerdeDeCustom`. For those, [`deserialize_limited_tracked`] reports separately whether
//! the limit was hit.

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// Decodes a `T` from `inner`, failing past `max_depth` levels of nesting, and says whether a
/// failure came from the depth limit. It does not rely on the error's message, so it also works
/// for formats that throw messages away (postcard does).
///
/// Pass `&mut postcard::Deserializer` to keep the deserializer for `finalize()` afterwards.
pub(crate) fn deserialize_limited_tracked<'de, T, D>(
    inner: D,
    max_depth: usize,
) -> Result<T, LimitedError<D::Error>>
where
    T: de::Deserialize<'de>,
    D: Deserializer<'de>,
{
    let budget = Budget {
        depth: Cell::new(0),
        max: max_depth,
        exceeded: Cell::new(false),
    };
    T::deserialize(DepthLimited {
        inner,
        budget: &budget,
    })
    .map_err(|error| {
        if budget.exceeded.get() {
            LimitedError::TooDeep(error)
        } else {
            LimitedError::Other(error)
        }
    })
}

/// Why a depth-limited decode failed.
#[derive(Debug)]
pub(crate) enum LimitedError<E> {
    /// The value nested past the limit. This holds the format's error for it, which may not
    /// keep the message.
    TooDeep(E),
    /// Any other decoding failure.
    Other(E),
}

#[cfg(test)]
impl<E> LimitedError<E> {
    /// The format's error, whichever kind this is.
    pub(crate) fn into_inner(self) -> E {
        match self {
            LimitedError::TooDeep(error) | LimitedError::Other(error) => error,
        }
    }
}

/// The depth shared by every wrapper of one decode.
struct Budget {
    depth: Cell<usize>,
    max: usize,
    /// Set when the limit is hit, so that it can be reported even if the error has no message.
    exceeded: Cell<bool>,
}

impl Budget {
    /// Goes one level deeper. The level is left again when the returned guard drops.
    fn enter<E: de::Error>(&self) -> Result<Level<'_>, E> {
        let depth = self.depth.get();
        if depth >= self.max {
            self.exceeded.set(true);
            return Err(E::custom(format!(
                "the value is nested deeper than the decode recursion limit of {} levels",
                self.max
            )));
        }
        self.depth.set(depth + 1);
        Ok(Level(self))
    }
}

/// One level of nesting, left when dropped (also when a `Deserialize` impl panics).
struct Level<'a>(&'a Budget);

impl Drop for Level<'_> {
    fn drop(&mut self) {
        self.0.depth.set(self.0.depth.get().saturating_sub(1));
    }
}

/// A `Deserializer` that passes every call to `inner`, with the visitor wrapped so that nesting
/// is counted against the shared budget.
pub(crate) struct DepthLimited<'a, D> {
    inner: D,
    budget: &'a Budget,
}

impl<'a, D> DepthLimited<'a, D> {
    fn visitor<V>(&self, inner: V) -> LimitedVisitor<'a, V> {
        LimitedVisitor {
            inner,
            budget: self.budget,
        }
    }
}

/// Passes `deserialize_*` methods to the inner deserializer, wrapping the visitor.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.visitor(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for DepthLimited<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A `Visitor` that counts nesting and wraps whatever nested access or deserializer it is given.
struct LimitedVisitor<'a, V> {
    inner: V,
    budget: &'a Budget,
}

/// Passes `visit_*` methods for plain values straight to the inner visitor.
macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for LimitedVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(formatter)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let _level = self.budget.enter::<D::Error>()?;
        self.inner.visit_some(DepthLimited {
            inner: deserializer,
            budget: self.budget,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        let _level = self.budget.enter::<D::Error>()?;
        self.inner.visit_newtype_struct(DepthLimited {
            inner: deserializer,
            budget: self.budget,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let _level = self.budget.enter::<A::Error>()?;
        self.inner.visit_seq(LimitedAccess {
            inner: seq,
            budget: self.budget,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let _level = self.budget.enter::<A::Error>()?;
        self.inner.visit_map(LimitedAccess {
            inner: map,
            budget: self.budget,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let _level = self.budget.enter::<A::Error>()?;
        self.inner.visit_enum(LimitedAccess {
            inner: data,
            budget: self.budget,
        })
    }
}

/// A `DeserializeSeed` that hands its seed a [`DepthLimited`] deserializer.
struct LimitedSeed<'a, S> {
    inner: S,
    budget: &'a Budget,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for LimitedSeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(DepthLimited {
            inner: deserializer,
            budget: self.budget,
        })
    }
}

/// A seq, map, enum or variant access whose seeds and visitors are wrapped.
struct LimitedAccess<'a, A> {
    inner: A,
    budget: &'a Budget,
}

impl<'a, A> LimitedAccess<'a, A> {
    fn seed<S>(&self, inner: S) -> LimitedSeed<'a, S> {
        LimitedSeed {
            inner,
            budget: self.budget,
        }
    }

    fn visitor<V>(&self, inner: V) -> LimitedVisitor<'a, V> {
        LimitedVisitor {
            inner,
            budget: self.budget,
        }
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for LimitedAccess<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for LimitedAccess<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_value_seed(seed)
    }

    fn next_entry_seed<K: DeserializeSeed<'de>, S: DeserializeSeed<'de>>(
        &mut self,
        key: K,
        value: S,
    ) -> Result<Option<(K::Value, S::Value)>, A::Error> {
        let (key, value) = (self.seed(key), self.seed(value));
        self.inner.next_entry_seed(key, value)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for LimitedAccess<'a, A> {
    type Error = A::Error;
    type Variant = LimitedAccess<'a, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let seed = self.seed(seed);
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            LimitedAccess {
                inner: variant,
                budget: self.budget,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for LimitedAccess<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.visitor(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.visitor(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::de::value::{Error as ValueError, SeqDeserializer};
    use serde::de::{DeserializeOwned, IgnoredAny, IntoDeserializer};
    use serde::{Deserialize, Serialize};

    use super::*;

    const DEPTH_EXCEEDED: &str = "deeper than the decode recursion limit";

    fn deserialize_limited<'de, T, D>(inner: D, max_depth: usize) -> Result<T, D::Error>
    where
        T: de::Deserialize<'de>,
        D: Deserializer<'de>,
    {
        deserialize_limited_tracked(inner, max_depth).map_err(LimitedError::into_inner)
    }

    const LIMIT: usize = 128;

    /// Decodes the way the codec does: from postcard bytes, every byte used.
    fn decode<'de, T: Deserialize<'de>>(
        bytes: &'de [u8],
        max_depth: usize,
    ) -> Result<T, LimitedError<postcard::Error>> {
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let value = deserialize_limited_tracked(&mut de, max_depth)?;
        let rest = de.finalize().map_err(LimitedError::Other)?;
        assert!(rest.is_empty(), "{} bytes left over", rest.len());
        Ok(value)
    }

    fn assert_too_deep<T: std::fmt::Debug>(result: Result<T, LimitedError<postcard::Error>>) {
        match result {
            Err(LimitedError::TooDeep(postcard::Error::SerdeDeCustom)) => {}
            other => panic!("expected the depth error, got {other:?}"),
        }
    }

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        value: &T,
        max_depth: usize,
    ) -> Result<T, LimitedError<postcard::Error>> {
        let bytes = postcard::to_allocvec(value).unwrap();
        decode::<T>(&bytes, max_depth)
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    impl Tree {
        /// `nodes` Nodes around one Leaf: depth `nodes + 1`, as each enum is a level.
        fn deep(nodes: usize) -> Tree {
            let mut tree = Tree::Leaf;
            for _ in 0..nodes {
                tree = Tree::Node(Box::new(tree));
            }
            tree
        }
    }

    /// postcard encodes `nodes` Nodes around a Leaf as that many 1s then a 0.
    fn tree_bytes(nodes: usize) -> Vec<u8> {
        let mut bytes = vec![1u8; nodes];
        bytes.push(0);
        bytes
    }

    #[test]
    fn tree_encoding_is_as_expected() {
        assert_eq!(
            postcard::to_allocvec(&Tree::deep(3)).unwrap(),
            tree_bytes(3)
        );
    }

    #[test]
    fn tree_within_the_limit_decodes() {
        for nodes in [0, 1, 100, LIMIT - 1] {
            let tree = Tree::deep(nodes);
            assert_eq!(round_trip(&tree, LIMIT).unwrap(), tree, "{nodes} nodes");
        }
    }

    #[test]
    fn tree_past_the_limit_fails() {
        assert_too_deep(round_trip(&Tree::deep(LIMIT), LIMIT));
        assert_too_deep(round_trip(&Tree::deep(200), LIMIT));
    }

    #[test]
    fn million_deep_tree_fails_without_overflowing_the_stack() {
        let bytes = tree_bytes(1_000_000);
        assert_too_deep(decode::<Tree>(&bytes, LIMIT));
    }

    #[test]
    fn message_names_the_limit() {
        // serde's own value deserializers keep custom messages, unlike postcard.
        let value: Vec<Vec<u8>> = vec![vec![1]];
        let de: SeqDeserializer<_, ValueError> = value.into_deserializer();
        let error = deserialize_limited::<Vec<Vec<u8>>, _>(de, 1).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(DEPTH_EXCEEDED), "{message}");
        assert!(message.contains(" 1 "), "{message}");
        assert_eq!(
            message,
            "the value is nested deeper than the decode recursion limit of 1 levels"
        );
    }

    #[test]
    fn ignored_any_is_counted() {
        let value: Vec<Vec<u8>> = vec![vec![1], vec![2, 3]];
        let de: SeqDeserializer<_, ValueError> = value.clone().into_deserializer();
        assert!(deserialize_limited::<IgnoredAny, _>(de, 2).is_ok());
        let de: SeqDeserializer<_, ValueError> = value.into_deserializer();
        let message = deserialize_limited::<IgnoredAny, _>(de, 1)
            .unwrap_err()
            .to_string();
        assert!(message.contains(DEPTH_EXCEEDED), "{message}");
    }

    #[test]
    fn other_errors_are_not_reported_as_too_deep() {
        // A Node with no inner tree: the input ends early.
        match decode::<Tree>(&[1], LIMIT) {
            Err(LimitedError::Other(postcard::Error::DeserializeUnexpectedEnd)) => {}
            other => panic!("expected an end-of-input error, got {other:?}"),
        }
        let mut de = postcard::Deserializer::from_bytes(&[1]);
        assert_eq!(
            deserialize_limited::<Tree, _>(&mut de, LIMIT).unwrap_err(),
            postcard::Error::DeserializeUnexpectedEnd
        );
    }

    #[test]
    fn nested_sequences_are_counted() {
        let value: Vec<Vec<Vec<u8>>> = vec![vec![vec![1, 2], vec![]], vec![vec![3]]];
        assert_eq!(round_trip(&value, 3).unwrap(), value);
        assert_too_deep(round_trip(&value, 2));
        assert_eq!(round_trip(&7u32, 0).unwrap(), 7);
        assert_too_deep(round_trip(&Vec::<u32>::new(), 0));
    }

    #[test]
    fn options_and_newtypes_are_counted() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Wrapper(u32);

        let value = Some(vec![1u32, 2]);
        assert_eq!(round_trip(&value, 2).unwrap(), value);
        assert_too_deep(round_trip(&value, 1));
        // None enters nothing.
        assert_eq!(round_trip(&None::<Vec<u32>>, 0).unwrap(), None);
        assert_eq!(round_trip(&Wrapper(5), 1).unwrap(), Wrapper(5));
        assert_too_deep(round_trip(&Wrapper(5), 0));
    }

    #[test]
    fn siblings_do_not_add_up() {
        let value: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8]).collect();
        assert_eq!(round_trip(&value, 2).unwrap(), value);
    }

    /// A list of lists with a hand-written `Deserialize`: its own visitor recurses through
    /// `next_element_seed` with its own seed, never through a derived impl.
    #[derive(Debug, PartialEq)]
    struct Chain {
        depth: usize,
    }

    struct ChainSeed {
        level: usize,
    }

    struct ChainVisitor {
        level: usize,
    }

    impl<'de> DeserializeSeed<'de> for ChainSeed {
        type Value = Chain;

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Chain, D::Error> {
            assert!(!deserializer.is_human_readable());
            deserializer.deserialize_seq(ChainVisitor { level: self.level })
        }
    }

    impl<'de> Visitor<'de> for ChainVisitor {
        type Value = Chain;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a chain")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Chain, A::Error> {
            let level = self.level + 1;
            match seq.next_element_seed(ChainSeed { level })? {
                Some(inner) => Ok(inner),
                None => Ok(Chain { depth: level }),
            }
        }
    }

    impl<'de> Deserialize<'de> for Chain {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Chain, D::Error> {
            ChainSeed { level: 0 }.deserialize(deserializer)
        }
    }

    /// postcard: a list of one list of one list ... of an empty list.
    fn chain_bytes(depth: usize) -> Vec<u8> {
        let mut bytes = vec![1u8; depth - 1];
        bytes.push(0);
        bytes
    }

    #[test]
    fn custom_deserialize_impl_is_limited() {
        assert_eq!(
            postcard::to_allocvec(&vec![vec![Vec::<u8>::new()]]).unwrap(),
            chain_bytes(3)
        );
        assert_eq!(
            decode::<Chain>(&chain_bytes(LIMIT), LIMIT).unwrap(),
            Chain { depth: LIMIT }
        );
        assert_too_deep(decode::<Chain>(&chain_bytes(LIMIT + 1), LIMIT));
        assert_too_deep(decode::<Chain>(&chain_bytes(1_000_000), LIMIT));
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Shape {
        Empty,
        Circle(f64),
        Rect(u32, u32),
        Named { name: String, sides: Option<u8> },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Everything<'a> {
        name: String,
        #[serde(borrow)]
        borrowed: &'a str,
        bytes: Vec<u8>,
        map: BTreeMap<String, Vec<i64>>,
        shapes: Vec<Shape>,
        maybe: Option<Box<Everything<'a>>>,
        pair: (char, bool),
        big: u128,
        small: i128,
        unit: (),
    }

    #[test]
    fn values_within_the_limit_round_trip() {
        let inner = Everything {
            name: "inner".into(),
            borrowed: "b",
            bytes: vec![],
            map: BTreeMap::new(),
            shapes: vec![Shape::Empty],
            maybe: None,
            pair: ('x', false),
            big: 0,
            small: -1,
            unit: (),
        };
        let value = Everything {
            name: "outer ✓".into(),
            borrowed: "borrowed from the input",
            bytes: vec![0, 1, 255],
            map: BTreeMap::from([("a".into(), vec![-1, 2]), ("b".into(), vec![])]),
            shapes: vec![
                Shape::Empty,
                Shape::Circle(1.5),
                Shape::Rect(3, 4),
                Shape::Named {
                    name: "tri".into(),
                    sides: Some(3),
                },
            ],
            maybe: Some(Box::new(inner)),
            pair: ('é', true),
            big: u128::MAX,
            small: i128::MIN,
            unit: (),
        };
        let bytes = postcard::to_allocvec(&value).unwrap();
        let decoded: Everything<'_> = decode(&bytes, LIMIT).unwrap();
        assert_eq!(decoded, value);
        // The borrowed field points into the input: 'de is carried through the wrappers.
        let range = bytes.as_ptr_range();
        assert!(range.contains(&decoded.borrowed.as_ptr()));
    }
}
