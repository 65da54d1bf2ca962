//! OPTIONS (...) of CREATE MODEL: string values from SQL, parsed per model kind with errors that
//! name the option and, for unknown ones, list those the kind accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The options of one CREATE MODEL, consumed key by key.
#[derive(Debug, Clone, Default)]
pub struct Options {
    values: BTreeMap<String, String>,
    taken: BTreeSet<String>,
}

impl Options {
    /// Options from (key, value) pairs; keys are case-insensitive.
    pub fn new<K: AsRef<str>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Options {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into()))
                .collect(),
            taken: BTreeSet::new(),
        }
    }

    /// The value of `key`, marking it as understood.
    pub fn get(&mut self, key: &str) -> Option<&str> {
        self.taken.insert(key.to_string());
        self.values.get(key).map(String::as_str)
    }

    /// Whether `key` was given (without marking it understood).
    pub fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// Un-marks `key` as understood, so that [`Options::finish`] reports it if present.
    pub fn forget(&mut self, key: &str) {
        self.taken.remove(key);
    }

    /// Parses `key` as `T`, or returns `default` when absent.
    pub fn parse<T: FromStr>(&mut self, key: &str, default: T, expected: &str) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| Error::option(format!("option {key} must be {expected}, got '{v}'"))),
        }
    }

    /// Like [`Options::parse`] for a number that must lie in `range`.
    pub fn number<T>(
        &mut self,
        key: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let expected = format!("a number between {} and {}", range.start(), range.end());
        let value: T = self.parse(key, default, &expected)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(Error::option(format!(
                "option {key} must be {expected}, got {value}"
            )))
        }
    }

    /// Fails if any option was never asked for, listing those `kind` accepts.
    pub fn finish(&self, kind: &str) -> Result<()> {
        let unknown: Vec<&str> = self
            .values
            .keys()
            .filter(|k| !self.taken.contains(*k))
            .map(String::as_str)
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = self.taken.iter().map(String::as_str).collect();
        Err(Error::option(format!(
            "unknown option{} {} for kind {kind}; valid options: {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            known.join(", ")
        )))
    }

    /// All options as given, for the model card.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_checks_ranges_and_rejects_unknown_keys() {
        let mut o = Options::new([("Epochs", "12"), ("dropout", "2"), ("colour", "red")]);
        assert_eq!(o.number("epochs", 30usize, 1..=10_000).unwrap(), 12);
        assert_eq!(
            o.number("dropout", 0.0f64, 0.0..=0.9)
                .unwrap_err()
                .to_string(),
            "option dropout must be a number between 0 and 0.9, got 2"
        );
        assert_eq!(o.number("seed", 42u64, 0..=u64::MAX).unwrap(), 42);
        assert_eq!(
            o.finish("churn_classifier").unwrap_err().to_string(),
            "unknown option colour for kind churn_classifier; valid options: dropout, epochs, seed"
        );
    }
}
