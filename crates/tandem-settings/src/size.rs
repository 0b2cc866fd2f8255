use std::fmt;
use std::str::FromStr;

/// An amount of bytes, written as humans do: `512MiB`, `8GiB`, `1.5GB`, or a bare number of
/// bytes. Binary units (KiB, MiB, GiB, TiB) count in 1024s, decimal ones (kB, MB, GB, TB) in
/// 1000s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("kB", 1_000),
    ("B", 1),
];

impl ByteSize {
    pub const fn mib(mib: u64) -> ByteSize {
        ByteSize(mib << 20)
    }

    pub const fn gib(gib: u64) -> ByteSize {
        ByteSize(gib << 30)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let wrong = || format!("{s:?} is not a size like 512MiB, 8GiB, 10GB or a number of bytes");
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim();
        let scale = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .map(|(_, scale)| *scale)
                .ok_or_else(wrong)?
        };
        if let Ok(whole) = number.parse::<u64>() {
            return whole
                .checked_mul(scale)
                .map(ByteSize)
                .ok_or_else(|| format!("{s:?} is too large"));
        }
        let fraction: f64 = number.parse().map_err(|_| wrong())?;
        let bytes = fraction * scale as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("{s:?} is too large"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly, so that it reads back the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exact = UNITS
            .iter()
            .filter(|(name, _)| name.ends_with("iB"))
            .find(|(_, scale)| self.0 >= *scale && self.0.is_multiple_of(*scale));
        match exact {
            Some((name, scale)) => write!(f, "{}{name}", self.0 / scale),
            None => write!(f, "{}B", self.0),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    /// A string with a unit, or a whole number of bytes.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"512MiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(bytes))
            }
            fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
                u64::try_from(bytes)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{bytes} is below 0")))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_units_and_as_bare_bytes() {
        assert_eq!("512MiB".parse(), Ok(ByteSize(512 << 20)));
        assert_eq!(" 8 GiB".parse(), Ok(ByteSize::gib(8)));
        assert_eq!("8gib".parse(), Ok(ByteSize::gib(8)));
        assert_eq!("10GB".parse(), Ok(ByteSize(10_000_000_000)));
        assert_eq!("1.5KiB".parse(), Ok(ByteSize(1536)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!("0".parse(), Ok(ByteSize(0)));
        assert!("8 furlongs".parse::<ByteSize>().is_err());
        assert!("-1MiB".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn sizes_print_as_they_read() {
        assert_eq!(ByteSize::gib(8).to_string(), "8GiB");
        assert_eq!(ByteSize::mib(1536).to_string(), "1536MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(ByteSize(0).to_string(), "0B");
        for size in [ByteSize::gib(8), ByteSize(12345), ByteSize::mib(3)] {
            assert_eq!(size.to_string().parse(), Ok(size));
        }
    }

    #[test]
    fn sizes_in_files_are_strings_or_numbers() {
        let size: ByteSize = toml::Value::String("64MiB".into()).try_into().unwrap();
        assert_eq!(size, ByteSize::mib(64));
        let size: ByteSize = toml::Value::Integer(4096).try_into().unwrap();
        assert_eq!(size, ByteSize(4096));
        assert!(toml::Value::Integer(-1).try_into::<ByteSize>().is_err());
    }
}
