use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A length of time, written as humans do: `100ms`, `90s`, `5m`, `24h`, `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    pub const fn secs(secs: u64) -> Span {
        Span(Duration::from_secs(secs))
    }

    pub const fn millis(millis: u64) -> Span {
        Span(Duration::from_millis(millis))
    }

    pub fn as_millis(self) -> u64 {
        self.0.as_millis().min(u64::MAX as u128) as u64
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Span)
            .map_err(|e| format!("{s:?} is not a duration like 100ms, 30s, 5m or 24h: {e}"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_and_print_as_humans_write_them() {
        assert_eq!("1h 30m".parse::<Span>(), Ok(Span::secs(5400)));
        assert_eq!(" 250ms".parse::<Span>(), Ok(Span::millis(250)));
        assert_eq!(Span::secs(72 * 3600).to_string(), "3days");
        assert!("5 fortnights".parse::<Span>().is_err());
        assert!(Span::millis(500) < Span::secs(1));
    }
}
