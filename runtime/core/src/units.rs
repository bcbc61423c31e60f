//! Sizes and durations as people write them (`256MiB`, `30s`), parsed once
//! with an error that quotes the offending text.
//!
//! Bounds are named in error messages ("exceeded its memory limit of
//! 256 MiB"), so these types also print back in the same style.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A malformed size or duration; the message quotes the text and shows a valid example.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a size such as `512KiB`, `256MiB`, `1GiB` or a plain byte count.
    #[error("`{0}` is not a size (write it like `512KiB`, `256MiB` or `1GiB`)")]
    Size(String),
    /// Not a duration such as `500ms`, `30s`, `5m` or `1h 30m`.
    #[error("`{0}` is not a duration (write it like `500ms`, `30s`, `5m` or `1h 30m`)")]
    Duration(String),
}

/// A number of bytes, parsed from `512KiB`, `256MiB`, `1GiB`, `2GB` or `1048576`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` kibibytes.
    pub const fn kib(n: u64) -> Self {
        Self(n << 10)
    }
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n << 20)
    }
    /// `n` gibibytes.
    pub const fn gib(n: u64) -> Self {
        Self(n << 30)
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        // `bytesize` accepts fractions and saturates on overflow; we want
        // neither a negative nor an empty value to slip through as zero.
        if trimmed.is_empty() || !trimmed.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(UnitError::Size(text.to_owned()));
        }
        trimmed
            .parse::<bytesize::ByteSize>()
            .map(|size| ByteSize(size.as_u64()))
            .map_err(|_| UnitError::Size(text.to_owned()))
    }
}

impl fmt::Display for ByteSize {
    /// In the largest binary unit that fits: whole when exact (`256 MiB`),
    /// otherwise with one decimal (`1.5 MiB`).
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (unit, name) in UNITS {
            if self.0 >= unit {
                return if self.0.is_multiple_of(unit) {
                    write!(formatter, "{} {name}", self.0 / unit)
                } else {
                    write!(formatter, "{:.1} {name}", self.0 as f64 / unit as f64)
                };
            }
        }
        write!(formatter, "{} B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnitVisitor::<ByteSize>::default())
    }
}

/// A duration parsed from `500ms`, `30s`, `5m` or `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|_| UnitError::Duration(text.to_owned()))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnitVisitor::<HumanDuration>::default())
    }
}

/// Accepts a string in the unit's syntax, or a bare integer (bytes, seconds).
struct UnitVisitor<T>(std::marker::PhantomData<T>);

impl<T> Default for UnitVisitor<T> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

/// How a bare integer in a config file is read for each unit type.
trait FromInteger: Sized {
    const EXPECTING: &'static str;
    fn from_integer(value: u64) -> Self;
}

impl FromInteger for ByteSize {
    const EXPECTING: &'static str = "a size such as \"256MiB\"";
    fn from_integer(value: u64) -> Self {
        ByteSize(value)
    }
}

impl FromInteger for HumanDuration {
    const EXPECTING: &'static str = "a duration such as \"30s\"";
    fn from_integer(value: u64) -> Self {
        HumanDuration(Duration::from_secs(value))
    }
}

impl<T> de::Visitor<'_> for UnitVisitor<T>
where
    T: FromInteger + FromStr<Err = UnitError>,
{
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(T::EXPECTING)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        value.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        Ok(T::from_integer(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        u64::try_from(value)
            .map(T::from_integer)
            .map_err(|_| E::custom(format!("`{value}` is negative")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!("256MiB".parse(), Ok(ByteSize::mib(256)));
        assert_eq!("1GiB".parse(), Ok(ByteSize::gib(1)));
        assert_eq!("1 KiB".parse(), Ok(ByteSize::kib(1)));
        assert_eq!("2GB".parse(), Ok(ByteSize(2_000_000_000)));
        assert_eq!("1048576".parse(), Ok(ByteSize::mib(1)));
    }

    #[test]
    fn malformed_sizes_are_rejected_with_the_text() {
        for bad in ["", "MiB", "-1MiB", "12 parsecs", "1.2.3GiB"] {
            let error = bad.parse::<ByteSize>().expect_err(bad);
            assert!(error.to_string().contains(&format!("`{bad}`")), "{error}");
        }
    }

    #[test]
    fn sizes_print_in_exact_units_when_they_can() {
        assert_eq!(ByteSize::mib(256).to_string(), "256 MiB");
        assert_eq!(ByteSize::gib(1).to_string(), "1 GiB");
        assert_eq!(ByteSize(1536 * 1024).to_string(), "1.5 MiB");
        assert_eq!(ByteSize(10).to_string(), "10 B");
        assert_eq!(ByteSize(65600 * 1024).to_string(), "64.1 MiB");
    }

    #[test]
    fn durations_round_trip() {
        let parsed: HumanDuration = "1h 30m".parse().expect("valid");
        assert_eq!(parsed.0, Duration::from_secs(5400));
        assert_eq!(parsed.to_string(), "1h 30m");
        assert_eq!(
            "250ms".parse::<HumanDuration>().expect("valid").0,
            Duration::from_millis(250)
        );
        assert!("soon".parse::<HumanDuration>().is_err());
    }
}
