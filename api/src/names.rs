//! The names of a pool's choices: [`Mode`], [`Strategy`] and [`HashKey`], spelled the same in
//! the admin API's JSON, lbctl's flags, lb's logs and its store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a pool hands a request to its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Full-NAT reverse proxy: the client only ever talks to lb.
    #[default]
    Proxy,
    /// lb answers `307` and the client repeats its request at the backend.
    Redirect,
}

/// How a pool picks a backend for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Power of two choices on in-flight requests (per unit of weight).
    #[default]
    P2c,
    /// Weighted smooth round robin, nginx's algorithm.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Fewest requests in flight (per unit of weight), ties broken round robin.
    LeastConn,
    /// Sticky by a key (`hash_key`) on a consistent-hash ring.
    ConsistentHash,
}

/// A name for each variant, and everything that reads or writes it: `as_str`, `Display`,
/// `FromStr` (whose error lists the names), serde as a string, and with the `clap` feature
/// `clap::ValueEnum`, so lbctl's flags take the same names and list them in `--help`.
macro_rules! names {
    ($ty:ty, $what:literal, $($variant:path => $name:literal),+ $(,)?) => {
        impl $ty {
            /// The name used in the admin API, lbctl and logs.
            pub fn as_str(self) -> &'static str {
                match self { $($variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($variant),)+
                    _ => Err(format!(
                        concat!("unknown ", $what, " {:?}, expected one of: {}"),
                        s,
                        [$($name),+].join(", ")
                    )),
                }
            }
        }
        #[cfg(feature = "clap")]
        impl clap::ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($variant),+]
            }
            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.as_str()))
            }
        }
    };
}

names!(Mode, "mode", Mode::Proxy => "proxy", Mode::Redirect => "redirect");
names!(
    Strategy,
    "strategy",
    Strategy::P2c => "p2c",
    Strategy::RoundRobin => "round_robin",
    Strategy::Random => "random",
    Strategy::LeastConn => "least_conn",
    Strategy::ConsistentHash => "consistent_hash",
);

/// What a `consistent_hash` pool keeps requests sticky by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    /// The client's IP address.
    #[default]
    ClientIp,
    /// A request header's value (the client IP when absent).
    Header(http::HeaderName),
    /// A cookie's value (the client IP when absent).
    Cookie(String),
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::ClientIp => f.write_str("client_ip"),
            HashKey::Header(name) => write!(f, "header:{name}"),
            HashKey::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

impl FromStr for HashKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("unknown hash_key {s:?}, expected client_ip, header:NAME or cookie:NAME");
        match s.split_once(':') {
            None if s == "client_ip" => Ok(HashKey::ClientIp),
            Some(("header", name)) => {
                http::HeaderName::from_bytes(name.as_bytes()).map(HashKey::Header).map_err(|_| bad())
            }
            Some(("cookie", name))
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !b";=,".contains(&b)) =>
            {
                Ok(HashKey::Cookie(name.to_owned()))
            }
            _ => Err(bad()),
        }
    }
}

impl Serialize for HashKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_explained() {
        assert_eq!("redirect".parse::<Mode>().unwrap(), Mode::Redirect);
        assert_eq!("round_robin".parse::<Strategy>().unwrap(), Strategy::RoundRobin);
        let err = "nat".parse::<Mode>().unwrap_err();
        assert!(err.contains("proxy, redirect"), "{err}");
    }

    #[test]
    fn hash_keys_parse_and_print_back() {
        for key in ["client_ip", "header:x-user", "cookie:session"] {
            assert_eq!(key.parse::<HashKey>().unwrap().to_string(), key);
        }
        // Header names are case-insensitive; lb keeps them lowercase.
        assert_eq!("header:X-User".parse::<HashKey>().unwrap().to_string(), "header:x-user");
        for bad in ["ip", "header:", "header:a(b", "cookie:", "cookie:a=b"] {
            assert!(bad.parse::<HashKey>().is_err(), "{bad:?}");
        }
    }
}
