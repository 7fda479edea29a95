//! Typing of raw configuration values. A value may arrive as YAML (a number, a boolean, a list)
//! or as text from a flag or an environment variable; each reader accepts both and reports a bad
//! value with the setting's name, the value and its origin.

use std::str::FromStr;

use figment::value::{Num, Value};

use super::{ConfigError, Origin};

/// One setting's value as found in the merged layers.
pub(super) struct Found<'a> {
    pub key: &'static str,
    pub value: &'a Value,
    pub origin: &'a Origin,
}

impl Found<'_> {
    fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: self.key,
            value: shown(self.value),
            origin: self.origin.clone(),
            reason: reason.into(),
        }
    }

    /// The value as text; numbers and booleans from YAML are accepted as their text.
    pub fn text(&self) -> Result<String, ConfigError> {
        scalar_text(self.value).ok_or_else(|| self.invalid("expected a single value, not a list"))
    }

    /// Parses the text with `FromStr`, explaining `expected` on failure.
    pub fn parse<T: FromStr>(&self, expected: &str) -> Result<T, ConfigError> {
        let text = self.text()?;
        text.trim().parse().map_err(|_| self.invalid(expected))
    }

    /// Parses with a reader that explains its own failures.
    pub fn parse_with<T>(
        &self,
        read: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        read(self.text()?.trim()).map_err(|reason| self.invalid(reason))
    }

    /// A boolean: YAML true/false, or the text true/false, yes/no, on/off, 1/0.
    pub fn boolean(&self) -> Result<bool, ConfigError> {
        match self.value {
            Value::Bool(_, b) => Ok(*b),
            _ => parse_bool(&self.text()?)
                .ok_or_else(|| self.invalid("expected a boolean (true or false)")),
        }
    }

    /// An unsigned integer within `min..=max`.
    pub fn integer(&self, min: u64, max: u64) -> Result<u64, ConfigError> {
        let expected = format!("expected a whole number from {min} to {max}");
        let n = match self.value {
            Value::Num(_, num) => num_to_u64(num),
            _ => self.text()?.trim().parse().ok(),
        };
        n.filter(|n| (min..=max).contains(n))
            .ok_or_else(|| self.invalid(expected))
    }

    /// A list: a YAML sequence, or text with items separated by commas or white space.
    pub fn list<T: FromStr>(&self, expected: &str) -> Result<Vec<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let items: Vec<String> = match self.value {
            Value::Array(_, items) => items
                .iter()
                .map(|item| {
                    scalar_text(item).ok_or_else(|| self.invalid("expected a list of values"))
                })
                .collect::<Result<_, _>>()?,
            _ => split_list(&self.text()?),
        };
        items
            .iter()
            .flat_map(|item| split_list(item))
            .map(|item| {
                item.parse().map_err(|e: T::Err| {
                    self.invalid(format!("item {item:?} is not {expected}: {e}"))
                })
            })
            .collect()
    }
}

impl Found<'_> {
    /// A list whose items are kept whole (command-line arguments, `KEY=VALUE` pairs): a YAML
    /// sequence, repeated flags, or text (a variable) with one item per line. Each item is
    /// checked by `check`.
    pub fn items<T>(
        &self,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        let values: Vec<String> = match self.value {
            Value::Array(_, items) => items
                .iter()
                .map(|item| {
                    scalar_text(item).ok_or_else(|| self.invalid("expected a list of values"))
                })
                .collect::<Result<_, _>>()?,
            _ => vec![self.text()?],
        };
        values
            .iter()
            .flat_map(|value| value.lines())
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|item| {
                check(item).map_err(|reason| self.invalid(format!("item {item:?}: {reason}")))
            })
            .collect()
    }
}

/// Reads a boolean the way environment files write them.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn num_to_u64(num: &Num) -> Option<u64> {
    num.to_u128().and_then(|n| u64::try_from(n).ok())
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(_, s) => Some(s.clone()),
        Value::Char(_, c) => Some(c.to_string()),
        Value::Bool(_, b) => Some(b.to_string()),
        Value::Num(_, num) => Some(match (num.to_u128(), num.to_i128(), num.to_f64()) {
            (Some(u), _, _) => u.to_string(),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => return None,
        }),
        Value::Empty(..) | Value::Dict(..) | Value::Array(..) => None,
    }
}

/// How a bad value is quoted in an error message.
fn shown(value: &Value) -> String {
    match value {
        Value::Array(_, items) => {
            let items: Vec<String> = items.iter().map(shown).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Dict(..) => "a mapping".to_string(),
        Value::Empty(..) => "nothing".to_string(),
        other => format!("{:?}", scalar_text(other).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found<'a>(value: &'a Value, origin: &'a Origin) -> Found<'a> {
        Found {
            key: "mtu",
            value,
            origin,
        }
    }

    #[test]
    fn numbers_arrive_as_yaml_numbers_or_as_text() {
        let origin = Origin::Default;
        let yaml = Value::from(1420u16);
        let text = Value::from("1420".to_string());
        assert_eq!(found(&yaml, &origin).integer(576, 9000).unwrap(), 1420);
        assert_eq!(found(&text, &origin).integer(576, 9000).unwrap(), 1420);
    }

    #[test]
    fn an_out_of_range_number_names_setting_value_and_origin() {
        let origin = Origin::Env("WEFT_MTU".into());
        let value = Value::from("70000".to_string());
        let err = found(&value, &origin).integer(576, 9000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid mtu \"70000\" from environment variable WEFT_MTU: expected a whole number from 576 to 9000"
        );
    }

    #[test]
    fn booleans_accept_env_file_spellings_and_refuse_others() {
        for (text, want) in [("true", true), ("No", false), ("1", true), ("off", false)] {
            assert_eq!(parse_bool(text), Some(want));
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn items_stay_whole_and_are_checked_one_by_one() {
        let origin = Origin::Default;
        let array = Value::from(vec!["--node-taint=a=b:NoSchedule,c".to_string()]);
        let keep = |t: &str| Ok::<_, String>(t.to_string());
        assert_eq!(
            found(&array, &origin).items(keep).unwrap(),
            ["--node-taint=a=b:NoSchedule,c"]
        );
        let text = Value::from("--one x\n\n--two".to_string());
        assert_eq!(
            found(&text, &origin).items(keep).unwrap(),
            ["--one x", "--two"]
        );
        let refuse = |t: &str| Err::<String, _>(format!("no {t}"));
        let err = found(&array, &origin)
            .items(refuse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no --node-taint"), "{err}");
    }

    #[test]
    fn lists_split_on_commas_and_spaces_whatever_the_layer() {
        let origin = Origin::Default;
        let text = Value::from("1.1.1.1:53, 8.8.8.8:53".to_string());
        let array = Value::from(vec!["1.1.1.1:53".to_string(), "8.8.8.8:53".to_string()]);
        let a: Vec<std::net::SocketAddr> = found(&text, &origin).list("an address").unwrap();
        let b: Vec<std::net::SocketAddr> = found(&array, &origin).list("an address").unwrap();
        assert_eq!(a, b);
    }
}
