//! SQL values as they cross the API, and the check that keeps writes deterministic: a statement
//! whose result depends on the replica's clock or a random source would leave replicas with
//! different rows, so it is refused before it is proposed.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum SqlValue {
    #[default]
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl SqlValue {
    /// JSON null, booleans (as 0 / 1), numbers and strings map to SQL directly; a blob is
    /// written `{"base64": "..."}`.
    pub fn from_json(value: &serde_json::Value) -> Result<SqlValue, String> {
        use serde_json::Value;
        Ok(match value {
            Value::Null => SqlValue::Null,
            Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => SqlValue::Integer(i),
                None => SqlValue::Real(
                    n.as_f64()
                        .ok_or_else(|| format!("number {n} does not fit in SQLite"))?,
                ),
            },
            Value::String(s) => SqlValue::Text(s.clone()),
            Value::Object(map) if map.len() == 1 && map.contains_key("base64") => {
                let encoded = map["base64"]
                    .as_str()
                    .ok_or("a blob must be {\"base64\": \"<string>\"}")?;
                SqlValue::Blob(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .map_err(|e| format!("blob is not valid base64: {e}"))?,
                )
            }
            other => {
                return Err(format!(
                    "parameter {other} is not a SQL value: use null, a number, a string or {{\"base64\": \"...\"}}"
                ))
            }
        })
    }

    /// SQLite's name for the value's storage class, as rqlite names a column's type when the
    /// column has no declared one; a NULL has none.
    pub fn storage_class(&self) -> &'static str {
        match self {
            SqlValue::Null => "",
            SqlValue::Integer(_) => "integer",
            SqlValue::Real(_) => "real",
            SqlValue::Text(_) => "text",
            SqlValue::Blob(_) => "blob",
        }
    }

    /// Roughly what the value takes in memory, to bound the size of an answer.
    pub fn size_in_memory(&self) -> usize {
        std::mem::size_of::<SqlValue>()
            + match self {
                SqlValue::Text(s) => s.len(),
                SqlValue::Blob(b) => b.len(),
                SqlValue::Null | SqlValue::Integer(_) | SqlValue::Real(_) => 0,
            }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            SqlValue::Null => Value::Null,
            SqlValue::Integer(i) => Value::from(*i),
            SqlValue::Real(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            SqlValue::Text(s) => Value::String(s.clone()),
            SqlValue::Blob(b) => serde_json::json!({
                "base64": base64::engine::general_purpose::STANDARD.encode(b)
            }),
        }
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl From<rusqlite::types::ValueRef<'_>> for SqlValue {
    fn from(value: rusqlite::types::ValueRef<'_>) -> Self {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(i) => SqlValue::Integer(i),
            ValueRef::Real(f) => SqlValue::Real(f),
            ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
        }
    }
}

/// The values bound to a statement's parameters, by position (`?`, `?1`) or by name (`:name`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Params {
    Positional(Vec<SqlValue>),
    Named(Vec<(String, SqlValue)>),
}

/// Functions whose every call gives a new answer.
const RANDOM_FUNCTIONS: &[&str] = &["random", "randomblob"];
/// Date functions that read the replica's clock when given `'now'` or no argument.
const DATE_FUNCTIONS: &[&str] = &[
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "timediff",
];
const CLOCK_KEYWORDS: &[&str] = &["current_timestamp", "current_date", "current_time"];

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    /// `?`, `?1`, `:name`, `@name` or `$name`.
    Param(String),
    Punct(char),
}

fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' {
            let mut text = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        text.push('\'');
                        i += 2;
                        continue;
                    }
                    break;
                }
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            tokens.push(Token::Text(text));
        } else if c == '"' || c == '`' || c == '[' {
            // A quoted identifier: never a function call we look for.
            let close = if c == '[' { ']' } else { c };
            i += 1;
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            i += 1;
            tokens.push(Token::Word(String::new()));
        } else if c == '?' || c == ':' || c == '@' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Param(chars[start..i].iter().collect()));
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Word(
                chars[start..i].iter().collect::<String>().to_lowercase(),
            ));
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// The value a parameter token binds to, if it binds to text.
fn bound_text<'p>(param: &str, position: usize, params: &'p Params) -> Option<&'p str> {
    let value = match params {
        Params::Positional(values) => {
            let index = match param.strip_prefix('?') {
                Some("") => position,
                Some(n) => n.parse::<usize>().ok()?.checked_sub(1)?,
                None => return None,
            };
            values.get(index)?
        }
        Params::Named(values) => {
            &values
                .iter()
                .find(|(name, _)| name == param || name.get(1..) == param.get(1..))?
                .1
        }
    };
    match value {
        SqlValue::Text(s) => Some(s),
        _ => None,
    }
}

/// Modifiers that make a date function depend on the replica's time zone.
const ZONE_MODIFIERS: &[&str] = &["localtime", "utc"];

/// Why the date function `word`, whose argument list opens at `tokens[open]`, reads the
/// replica's clock or time zone, if it does.
fn clock_dependent_call(
    word: &str,
    tokens: &[Token],
    open: usize,
    param_positions: &[usize],
    params: &Params,
) -> Option<String> {
    let clock = |what: &str| {
        Some(format!(
            "{word}() {what} reads each replica's own clock or time zone; pass the time as a parameter instead"
        ))
    };
    let mut depth = 0;
    let mut any_argument = false;
    let mut commas = 0;
    for (j, token) in tokens.iter().enumerate().skip(open) {
        let text = match token {
            Token::Punct('(') => {
                depth += 1;
                continue;
            }
            Token::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
                continue;
            }
            Token::Punct(',') if depth == 1 => {
                commas += 1;
                continue;
            }
            Token::Text(t) => Some(t.as_str()),
            Token::Param(p) => bound_text(p, param_positions[j], params),
            _ => None,
        };
        any_argument = true;
        if let Some(text) = text.map(str::trim) {
            if text.eq_ignore_ascii_case("now") {
                return clock("with 'now'");
            }
            if ZONE_MODIFIERS.iter().any(|m| text.eq_ignore_ascii_case(m)) {
                return clock(&format!("with the '{text}' modifier"));
            }
        }
    }
    let arguments = if any_argument { commas + 1 } else { 0 };
    if arguments == 0 {
        return clock("without arguments");
    }
    // strftime's first argument is the format: with nothing after it, the time is 'now'.
    if word == "strftime" && arguments == 1 {
        return clock("with only a format");
    }
    None
}

/// Why running `sql` with `params` could give different results on different replicas, if it could.
pub fn nondeterminism(sql: &str, params: &Params) -> Option<String> {
    let tokens = tokenize(sql);
    let mut anonymous_params = 0;
    let mut param_positions = Vec::with_capacity(tokens.len());
    for token in &tokens {
        param_positions.push(anonymous_params);
        if matches!(token, Token::Param(p) if p == "?") {
            anonymous_params += 1;
        }
    }
    for (i, token) in tokens.iter().enumerate() {
        let Token::Word(word) = token else { continue };
        let called = tokens.get(i + 1) == Some(&Token::Punct('('));
        if called && RANDOM_FUNCTIONS.contains(&word.as_str()) {
            return Some(format!(
                "{word}() gives a different value on each replica; compute the value in the client and pass it as a parameter"
            ));
        }
        if CLOCK_KEYWORDS.contains(&word.as_str()) {
            return Some(format!(
                "{} reads each replica's own clock; pass the time as a parameter instead",
                word.to_uppercase()
            ));
        }
        if called && DATE_FUNCTIONS.contains(&word.as_str()) {
            if let Some(reason) =
                clock_dependent_call(word, &tokens, i + 1, &param_positions, params)
            {
                return Some(reason);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Option<String> {
        nondeterminism(sql, &Params::Positional(vec![]))
    }

    #[test]
    fn random_and_clock_reads_are_refused() {
        assert!(check("INSERT INTO t VALUES (random())").is_some());
        assert!(check("insert into t values (RANDOMBLOB (16))").is_some());
        assert!(check("INSERT INTO t VALUES (datetime('now'))").is_some());
        assert!(check("INSERT INTO t VALUES (date())").is_some());
        assert!(check("INSERT INTO t VALUES (strftime('%s', 'NOW'))").is_some());
        assert!(check("UPDATE t SET at = CURRENT_TIMESTAMP").is_some());
        assert!(check("INSERT INTO t VALUES (strftime('%Y-%m-%d %H:%M:%f'))").is_some());
        assert!(
            check("INSERT INTO t VALUES (datetime(1700000000, 'unixepoch', 'localtime'))")
                .is_some()
        );
        assert!(check("INSERT INTO t VALUES (date('2024-01-01', 'utc'))").is_some());
    }

    #[test]
    fn deterministic_statements_pass() {
        assert!(check("INSERT INTO t VALUES ('now')").is_none());
        assert!(check("INSERT INTO t VALUES (datetime('2024-01-01'))").is_none());
        assert!(check("INSERT INTO t VALUES (strftime('%s', '2024-01-01'))").is_none());
        assert!(
            check("INSERT INTO t VALUES (datetime(1700000000, 'unixepoch', '+1 day'))").is_none()
        );
        assert!(check("INSERT INTO random VALUES (1)").is_none());
        assert!(check("INSERT INTO t VALUES ('random()') -- random()").is_none());
        assert!(check("SELECT \"random\"(1)").is_none());
    }

    #[test]
    fn a_now_parameter_to_a_date_function_is_refused() {
        let params = Params::Positional(vec![SqlValue::Integer(1), SqlValue::Text("now".into())]);
        assert!(nondeterminism("INSERT INTO t VALUES (?, datetime(?))", &params).is_some());
        assert!(nondeterminism("INSERT INTO t VALUES (?2, ?1)", &params).is_none());
        let named = Params::Named(vec![(":at".into(), SqlValue::Text("now".into()))]);
        assert!(nondeterminism("INSERT INTO t VALUES (julianday(:at))", &named).is_some());
    }

    #[test]
    fn json_values_convert_both_ways() {
        let blob = serde_json::json!({"base64": "AAEC"});
        assert_eq!(
            SqlValue::from_json(&blob).unwrap(),
            SqlValue::Blob(vec![0, 1, 2])
        );
        assert_eq!(SqlValue::Blob(vec![0, 1, 2]).to_json(), blob);
        assert_eq!(
            SqlValue::from_json(&serde_json::json!(true)).unwrap(),
            SqlValue::Integer(1)
        );
        assert_eq!(
            SqlValue::from_json(&serde_json::json!(1.5)).unwrap(),
            SqlValue::Real(1.5)
        );
        assert!(SqlValue::from_json(&serde_json::json!([1])).is_err());
    }
}
