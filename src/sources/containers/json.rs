//! Bounded JSON decoding for the Docker and Wings answers.
//!
//! A body is already bounded in bytes while it streams in; this bounds what decoding it may
//! build. Decoding into `serde_json::Value` or into `Vec`s of structs lets a small body become a
//! large heap: a 16 MiB body of `[{},{},…]` is 5.6 million elements (836 MB decoded as container
//! summaries), a 32 MiB `[0,0,…]` 16 million values. Here every element kept (a container, a
//! server, a label, an environment variable, a port) is counted against one budget per decoded
//! body ([`with_budget`]), everything else is skipped without being stored (`IgnoredAny`), and
//! scalars are read leniently (a number where a string was expected, and the reverse), as the
//! Wings and Docker versions in the field write them.

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

thread_local! {
    static ITEMS_LEFT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Decodes `body` keeping at most `items` elements in all; past that the decode fails with an
/// error naming the budget.
pub(crate) fn with_budget<T: DeserializeOwned>(
    body: &[u8],
    items: usize,
) -> Result<T, serde_json::Error> {
    ITEMS_LEFT.with(|c| c.set(Some(items)));
    let out = serde_json::from_slice(body);
    ITEMS_LEFT.with(|c| c.set(None));
    out
}

/// Counts one kept element against the budget of the body being decoded.
fn take_item<E: de::Error>() -> Result<(), E> {
    ITEMS_LEFT.with(|c| match c.get() {
        None => Ok(()),
        Some(0) => Err(E::custom(
            "more elements than the agent decodes from one answer",
        )),
        Some(n) => {
            c.set(Some(n - 1));
            Ok(())
        }
    })
}

/// A JSON array decoded element by element against the budget.
pub(crate) fn bounded_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: de::Deserialize<'de>,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: de::Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(x) = seq.next_element()? {
                take_item()?;
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(PhantomData))
}

/// The first element of an array (`Names`), the rest skipped.
pub(crate) fn first_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
            let first = seq
                .next_element::<Lenient>()?
                .map(|l| l.0)
                .unwrap_or_default();
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    d.deserialize_any(V)
}

/// A JSON object decoded into a map of the keys `keep` accepts (all when `None`), values read
/// leniently as strings, each entry counted against the budget.
fn string_map<'de, D: Deserializer<'de>>(
    d: D,
    keep: Option<&'static [&'static str]>,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct V(Option<&'static [&'static str]>);
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = map.next_key::<String>()? {
                if self.0.is_none_or(|keep| keep.contains(&k.as_str())) {
                    let v: Lenient = map.next_value()?;
                    take_item()?;
                    out.insert(k, v.0);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(keep))
}

/// Every entry of an object, values as strings (Wings' `environment`).
pub(crate) fn any_string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    string_map(d, None)
}

/// The container labels discovery uses; the others (often dozens per container) are skipped.
pub(crate) const KEPT_LABELS: &[&str] = &["Service", "ContainerType"];

pub(crate) fn kept_labels<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    string_map(d, Some(KEPT_LABELS)).map(Some)
}

/// A scalar read as a string, whatever its JSON type (`null` is empty, an object or array is
/// skipped and empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Lenient(pub(crate) String);

impl<'de> de::Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Lenient, E> {
                Ok(Lenient(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lenient, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Lenient::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A string field read leniently.
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Lenient::deserialize(d).map(|l| l.0)
}

/// An integer field read leniently: a number (a float is truncated) or a numeric string; anything
/// else is 0.
pub(crate) fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = Lenient::deserialize(d)?.0;
    Ok(s.parse::<i64>()
        .ok()
        .or_else(|| {
            s.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|f| f as i64)
        })
        .unwrap_or(0))
}

/// A float field read leniently; `None` when absent or not a number.
pub(crate) fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let s = Lenient::deserialize(d)?.0;
    Ok(s.parse::<f64>().ok().filter(|f| f.is_finite()))
}

/// A boolean read leniently (`true`, `"true"`); anything else is false.
pub(crate) fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Lenient::deserialize(d)?.0 == "true")
}

/// A port read leniently: a number or a numeric string within 1–65535.
pub(crate) fn port_of(s: &str) -> Option<u16> {
    s.parse::<u64>().ok().and_then(|p| u16::try_from(p).ok())
}

/// An array of ports, each counted against the budget; elements that are not ports are skipped.
pub(crate) fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    Ok(bounded_vec::<D, Lenient>(d)?
        .iter()
        .filter_map(|l| port_of(&l.0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Doc {
        #[serde(deserialize_with = "bounded_vec", default)]
        xs: Vec<Lenient>,
        #[serde(deserialize_with = "lenient_i64", default)]
        n: i64,
    }

    #[test]
    fn budget_holds_across_the_whole_body() {
        let ok: Doc = with_budget(br#"{"xs":[1,"a",null,{"x":1}],"n":"42"}"#, 4).unwrap();
        assert_eq!(ok.xs.len(), 4);
        assert_eq!(ok.n, 42);
        assert_eq!(ok.xs[3], Lenient::default());
        let e = with_budget::<Doc>(br#"{"xs":[1,2,3,4,5]}"#, 4).unwrap_err();
        assert!(e.to_string().contains("more elements"), "{e}");
        // Outside a budgeted decode nothing is counted.
        let free: Doc = serde_json::from_slice(br#"{"xs":[1,2,3,4,5], "n": 1.9}"#).unwrap();
        assert_eq!((free.xs.len(), free.n), (5, 1));
    }

    #[test]
    fn a_huge_array_of_empty_objects_stops_at_the_budget() {
        let mut body = b"[".to_vec();
        for _ in 0..1_000_000 {
            body.extend_from_slice(b"{},");
        }
        body.extend_from_slice(b"{}]");
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct W(#[serde(deserialize_with = "bounded_vec")] Vec<Lenient>);
        let e = with_budget::<W>(&body, 50_000).err().unwrap();
        assert!(e.to_string().contains("more elements"));
    }
}
