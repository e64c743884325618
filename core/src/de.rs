//! A serde [`Deserializer`](serde::Deserializer) over the positioned YAML tree.
//!
//! Every error it produces carries the [`Mark`] of the node (or mapping key) it is about,
//! and unknown keys keep the list of keys that were expected so the loader can suggest
//! the nearest one.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};

use crate::source::{Mark, Node, NodeKind, Scalar};

/// A deserialization error at a position.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    /// Where, when known.
    pub mark: Option<Mark>,
    /// What went wrong, in serde's words refined by us.
    pub message: String,
    /// For an unknown key: the key and the keys that are allowed there.
    pub unknown_key: Option<(String, Vec<&'static str>)>,
    /// The value at the position may be a secret written in the clear: neither the message
    /// nor an excerpt of the line may show it.
    pub secret: bool,
}

/// The longest message a deserialization error keeps: serde's messages quote the offending
/// value, which may be a whole file's worth of text on one line.
const MAX_MESSAGE: usize = 240;

/// A message fit for a terminal and a log line: control characters escaped, length bounded.
pub fn clean_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE + 8));
    for (n, c) in message.chars().enumerate() {
        if n >= MAX_MESSAGE {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            mark: None,
            message: clean_message(&msg.to_string()),
            unknown_key: None,
            secret: false,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            mark: None,
            message: clean_message(&format!("unknown key `{field}`")),
            unknown_key: Some((field.to_string(), expected.to_vec())),
            secret: false,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            mark: None,
            message: clean_message(&format!(
                "unknown value `{variant}`, expected one of: {}",
                expected.join(", ")
            )),
            unknown_key: None,
            secret: false,
        }
    }
}

fn at<T>(mark: Mark, r: Result<T, DeError>) -> Result<T, DeError> {
    r.map_err(|mut e| {
        if e.mark.is_none() {
            e.mark = Some(mark);
        }
        e
    })
}

/// Deserializes `T` from a node.
pub fn from_node<T: de::DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node))
}

/// The deserializer for one node.
#[derive(Clone, Copy)]
pub struct NodeDe<'a>(pub &'a Node);

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = self.0;
        let r = match &node.kind {
            NodeKind::Scalar(Scalar::Null) => visitor.visit_unit(),
            NodeKind::Scalar(Scalar::Bool(b)) => visitor.visit_bool(*b),
            NodeKind::Scalar(Scalar::Int(i)) => visitor.visit_i64(*i),
            NodeKind::Scalar(Scalar::Float(f)) => visitor.visit_f64(*f),
            NodeKind::Scalar(Scalar::Str(s)) => visitor.visit_str(s),
            NodeKind::Seq(items) => visitor.visit_seq(Seq { iter: items.iter() }),
            NodeKind::Map(entries) => visitor.visit_map(Map {
                iter: entries.iter(),
                value: None,
            }),
        };
        at(node.mark, r)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Scalar(Scalar::Null) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        at(self.0.mark, visitor.visit_newtype_struct(self))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Plain scalars that look like numbers are still accepted where text is expected
        // (`version: 20` for a string field), but booleans and null are not.
        let r = match &self.0.kind {
            NodeKind::Scalar(Scalar::Int(i)) => visitor.visit_string(i.to_string()),
            _ => return self.deserialize_any(visitor),
        };
        at(self.0.mark, r)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let node = self.0;
        if name == SECRET_REF {
            return secret_ref(node, variants, visitor);
        }
        let r = match &node.kind {
            NodeKind::Scalar(Scalar::Str(s)) => visitor.visit_enum(s.as_str().into_deserializer()),
            NodeKind::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                visitor.visit_enum(Enum { key: k, value: v })
            }
            _ => Err(de::Error::custom(format!(
                "expected a name or a single-key mapping, found {}",
                node.describe()
            ))),
        };
        at(node.mark, r)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// The name of the model's secret reference type: where it is expected, a value written in
/// the clear is refused without being repeated.
const SECRET_REF: &str = "SecretRef";

fn secret_ref<'de, V: Visitor<'de>>(
    node: &Node,
    variants: &'static [&'static str],
    visitor: V,
) -> Result<V::Value, DeError> {
    let refused = |message: String| DeError {
        mark: Some(node.mark),
        message,
        unknown_key: None,
        secret: true,
    };
    match &node.kind {
        NodeKind::Map(entries) if entries.len() == 1 => {
            let (k, v) = &entries[0];
            if !variants.contains(&k.name.as_str()) {
                return Err(refused(format!(
                    "a secret reference names where to read the secret: {}",
                    variants.join(" or ")
                )));
            }
            at(node.mark, visitor.visit_enum(Enum { key: k, value: v })).map_err(|mut e| {
                e.secret = true;
                e
            })
        }
        _ => Err(refused(format!(
            "a secret is written as a reference (`{{env: NAME}}` or `{{file: PATH}}`), never as its value; found {}",
            node.describe()
        ))),
    }
}

struct Seq<'a> {
    iter: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.iter.next() {
            Some(n) => seed.deserialize(NodeDe(n)).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct Map<'a> {
    iter: std::slice::Iter<'a, (crate::source::Key, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                let key_de: de::value::StrDeserializer<'_, DeError> =
                    k.name.as_str().into_deserializer();
                at(k.mark, seed.deserialize(key_de)).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(NodeDe(v)),
            None => Err(de::Error::custom("value without a key")),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct Enum<'a> {
    key: &'a crate::source::Key,
    value: &'a Node,
}

impl<'de, 'a> EnumAccess<'de> for Enum<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let key_de: de::value::StrDeserializer<'_, DeError> =
            self.key.name.as_str().into_deserializer();
        let v = at(self.key.mark, seed.deserialize(key_de))?;
        Ok((v, NodeDe(self.value)))
    }
}

impl<'de> VariantAccess<'de> for NodeDe<'_> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        match &self.0.kind {
            NodeKind::Scalar(Scalar::Null) => Ok(()),
            _ => Err(DeError {
                mark: Some(self.0.mark),
                message: "this value takes no settings".into(),
                unknown_key: None,
                secret: false,
            }),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::parse_yaml;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
        name: Option<String>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    fn parse(s: &str) -> Result<Outer, DeError> {
        from_node(&parse_yaml(0, s).unwrap()[0])
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let e = parse("items:\n  - port: 80\n  - port: eighty\n").unwrap_err();
        let m = e.mark.unwrap();
        assert_eq!((m.line, m.column), (3, 11));
        assert!(e.message.contains("expected u16"), "{}", e.message);
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        let e = parse("items:\n  - port: 80\n    nmae: x\n").unwrap_err();
        let m = e.mark.unwrap();
        assert_eq!((m.line, m.column), (3, 5));
        let (k, expected) = e.unknown_key.unwrap();
        assert_eq!(k, "nmae");
        assert_eq!(expected, vec!["port", "name"]);
    }

    #[test]
    fn missing_key_points_at_the_mapping() {
        let e = parse("items:\n  - name: x\n").unwrap_err();
        let m = e.mark.unwrap();
        assert_eq!((m.line, m.column), (2, 5));
        assert!(e.message.contains("missing field `port`"));
    }

    #[test]
    fn out_of_range_number() {
        let e = parse("items:\n  - port: 70000\n").unwrap_err();
        assert_eq!(e.mark.unwrap().line, 2);
    }
}
