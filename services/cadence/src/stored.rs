//! How protobuf enums inside an enrolment are written to its stored state: by
//! their protobuf names (`CHANNEL_SMS`), which stay stable when numbers would not
//! say what they mean to someone reading the row.

use std::collections::BTreeSet;

use serde::de::Error as _;
use serde::{Deserialize as _, Deserializer, Serializer};
use touchpoint_proto::v1::{Channel, Language};

/// A [`Channel`] as its protobuf name.
pub mod channel {
    use super::*;

    pub fn serialize<S: Serializer>(channel: &Channel, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(channel.as_str_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Channel, D::Error> {
        let name = String::deserialize(d)?;
        Channel::from_str_name(&name).ok_or_else(|| D::Error::custom("unknown channel name"))
    }
}

/// A set of [`Channel`]s as a list of protobuf names.
pub mod channels {
    use super::*;

    pub fn serialize<S: Serializer>(channels: &BTreeSet<Channel>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(channels.iter().map(|c| c.as_str_name()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<Channel>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|name| {
                Channel::from_str_name(name).ok_or_else(|| D::Error::custom("unknown channel name"))
            })
            .collect()
    }
}

/// A [`Language`] as its protobuf name.
pub mod language {
    use super::*;

    pub fn serialize<S: Serializer>(language: &Language, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(language.as_str_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Language, D::Error> {
        let name = String::deserialize(d)?;
        Language::from_str_name(&name).ok_or_else(|| D::Error::custom("unknown language name"))
    }
}
