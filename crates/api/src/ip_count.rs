//! A count of IP addresses, wide enough for IPv6 subnets.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Number of IP addresses, serialized as a JSON number like Kube-OVN's
/// `v4availableIPs`/`v6usingIPs`. Holds IPv6-sized counts; reads integers and
/// the float form the API server uses for integers beyond 64 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpCount(pub u128);

impl Serialize for IpCount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match u64::try_from(self.0) {
            Ok(small) => serializer.serialize_u64(small),
            // Beyond u64, JSON consumers (the API server included) only keep a float.
            Err(_) => serializer.serialize_f64(self.0 as f64),
        }
    }
}

impl<'de> Deserialize<'de> for IpCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = IpCount;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative number of IP addresses")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IpCount, E> {
                Ok(IpCount(v.into()))
            }

            fn visit_u128<E: de::Error>(self, v: u128) -> Result<IpCount, E> {
                Ok(IpCount(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IpCount, E> {
                u128::try_from(v)
                    .map(IpCount)
                    .map_err(|_| E::custom(format!("negative IP count {v}")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IpCount, E> {
                if v.is_finite() && v >= 0.0 && v.fract() == 0.0 {
                    // `as` saturates at u128::MAX, which no address family exceeds.
                    Ok(IpCount(v as u128))
                } else {
                    Err(E::custom(format!("invalid IP count {v}")))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for IpCount {
    fn schema_name() -> Cow<'static, str> {
        "IpCount".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "number", "minimum": 0 })
    }
}

impl From<u128> for IpCount {
    fn from(count: u128) -> Self {
        IpCount(count)
    }
}

impl std::fmt::Display for IpCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::IpCount;

    #[test]
    fn integers_and_float_forms_round_trip() {
        assert_eq!(serde_json::to_string(&IpCount(253)).unwrap(), "253");
        let big = IpCount(1 << 80);
        let text = serde_json::to_string(&big).unwrap();
        assert_eq!(serde_json::from_str::<IpCount>(&text).unwrap(), big);
        assert_eq!(
            serde_json::from_str::<IpCount>("253").unwrap(),
            IpCount(253)
        );
        assert_eq!(
            serde_json::from_str::<IpCount>("1.8446744073709552e19").unwrap(),
            IpCount(1 << 64)
        );
        assert!(serde_json::from_str::<IpCount>("-1").is_err());
        assert!(serde_json::from_str::<IpCount>("1.5").is_err());
    }
}
