use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::Span;

/// How a setting's value is read: from text (a flag or an environment variable) and from a
/// value in the config file.
pub trait ReadSetting<T> {
    fn text(text: &str) -> Result<T, String>;
    fn file(value: toml::Value) -> Result<T, String>;
}

/// Reads a value as its type spells it: `FromStr` for text, serde for the file.
pub struct AsWritten;

impl<T> ReadSetting<T> for AsWritten
where
    T: FromStr + DeserializeOwned,
    T::Err: fmt::Display,
{
    fn text(text: &str) -> Result<T, String> {
        text.parse().map_err(|e: T::Err| e.to_string())
    }

    fn file(value: toml::Value) -> Result<T, String> {
        value
            .try_into()
            .map_err(|e| e.to_string().trim().to_string())
    }
}

/// Reads a duration where a bare number means milliseconds, so that the settings once given in
/// whole milliseconds (`heartbeat_ms = 100`) keep their meaning beside `heartbeat = "100ms"`.
pub struct MillisIfBare;

impl ReadSetting<Span> for MillisIfBare {
    fn text(text: &str) -> Result<Span, String> {
        match text.trim().parse::<u64>() {
            Ok(millis) => Ok(Span::millis(millis)),
            Err(_) => text
                .parse()
                .map_err(|e| format!("{e}; a bare number is milliseconds")),
        }
    }

    fn file(value: toml::Value) -> Result<Span, String> {
        match value {
            toml::Value::Integer(millis) => u64::try_from(millis).map(Span::millis).map_err(|_| {
                format!("{millis} is below 0; give milliseconds or a duration like 100ms")
            }),
            toml::Value::String(text) => Self::text(&text),
            other => Err(format!(
                "a duration like \"100ms\" or a number of milliseconds is expected, not a {}",
                other.type_str()
            )),
        }
    }
}

/// Reads a list: text holds the items separated by `SEP` (a flag may also be repeated), the
/// file gives an array (or one string, separated the same way). A setting declared with
/// `split 'c'` is read with `Listed<'c'>`.
pub struct Listed<const SEP: char>;

impl<T, const SEP: char> ReadSetting<Vec<T>> for Listed<SEP>
where
    T: FromStr + DeserializeOwned,
    T::Err: fmt::Display,
{
    fn text(text: &str) -> Result<Vec<T>, String> {
        text.split(SEP)
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| item.parse().map_err(|e: T::Err| e.to_string()))
            .collect()
    }

    fn file(value: toml::Value) -> Result<Vec<T>, String> {
        match value {
            toml::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    toml::Value::String(text) => text
                        .trim()
                        .parse()
                        .map_err(|e: T::Err| format!("item {}: {e}", i + 1)),
                    other => other
                        .try_into()
                        .map_err(|e| format!("item {}: {}", i + 1, e.to_string().trim())),
                })
                .collect(),
            toml::Value::String(text) => Self::text(&text),
            other => Err(format!(
                "a list (an array) is expected, not a {}",
                other.type_str()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bare_milliseconds() {
        assert_eq!(MillisIfBare::text("100"), Ok(Span::millis(100)));
        assert_eq!(MillisIfBare::text("2s"), Ok(Span::secs(2)));
        assert!(MillisIfBare::text("-5").is_err());
        assert!(MillisIfBare::file(toml::Value::Integer(-5)).is_err());
        assert_eq!(
            MillisIfBare::file(toml::Value::Integer(40)),
            Ok(Span::millis(40))
        );
    }

    #[test]
    fn lists_split_in_text_and_are_arrays_in_files() {
        let text: Vec<u16> = Listed::<','>::text("1, 2,,3").unwrap();
        assert_eq!(text, vec![1, 2, 3]);
        let lines: Vec<String> = Listed::<'\n'>::text("a, b\nc\n").unwrap();
        assert_eq!(lines, vec!["a, b".to_string(), "c".to_string()]);
        let file: Vec<Span> =
            Listed::<','>::file(toml::Value::Array(vec!["1s".into(), "2s".into()])).unwrap();
        assert_eq!(file, vec![Span::secs(1), Span::secs(2)]);
        let one: Vec<u16> = Listed::<','>::file("4,5".into()).unwrap();
        assert_eq!(one, vec![4, 5]);
        let err = <Listed<','> as ReadSetting<Vec<u16>>>::file(toml::Value::Array(vec![
            "1".into(),
            "x".into(),
        ]))
        .unwrap_err();
        assert!(err.starts_with("item 2: "), "{err}");
        assert!(<Listed<','> as ReadSetting<Vec<u16>>>::file(true.into()).is_err());
    }
}
