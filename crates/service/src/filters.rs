//! Docker's list filters: `key=value` pairs (the CLI's `--filter`, the
//! API's `filters` JSON map of key to values). Values of one key are
//! alternatives (any may match); different keys must all match.

use std::collections::BTreeMap;

use crate::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// From `KEY=VALUE` strings (`--filter`).
    pub fn parse(args: &[String]) -> Result<Filters> {
        let mut f = Filters::default();
        for a in args {
            let (k, v) = a.split_once('=').ok_or_else(|| {
                Error::invalid(format!("bad format of filter {a:?} (expected name=value)"))
            })?;
            f.add(k, v);
        }
        Ok(f)
    }

    /// From the Engine API's `filters` parameter: `{"key": ["v", ...]}`
    /// (or the older `{"key": {"v": true}}`).
    pub fn from_json(text: &str) -> Result<Filters> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("invalid filters {text:?}: {e}")))?;
        let mut f = Filters::default();
        let Some(map) = v.as_object() else {
            return Err(Error::invalid(format!(
                "invalid filters {text:?}: expected an object of key to values"
            )));
        };
        for (k, vals) in map {
            match vals {
                serde_json::Value::Array(a) => {
                    for x in a {
                        f.add(k, x.as_str().unwrap_or_default());
                    }
                }
                serde_json::Value::Object(o) => {
                    for (x, on) in o {
                        if on.as_bool() == Some(true) {
                            f.add(k, x);
                        }
                    }
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "invalid filters {text:?}: {k:?} needs a list of values"
                    )))
                }
            }
        }
        Ok(f)
    }

    pub fn add(&mut self, key: &str, value: &str) {
        self.0
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each key with its values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The keys not in `known`, for the error a front end reports.
    pub fn check_keys(&self, known: &[&str], what: &str) -> Result<()> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(Error::invalid(format!(
                "invalid filter {k:?}: {what} supports {}",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// Whether every key has a value for which `test` holds; for `label`
    /// every value must hold (docker's `MatchKVList`: `--filter label=a
    /// --filter label=b` wants both).
    pub fn matches(&self, mut test: impl FnMut(&str, &str) -> Result<bool>) -> Result<bool> {
        for (k, vals) in &self.0 {
            if k == "label" {
                for v in vals {
                    if !test(k, v)? {
                        return Ok(false);
                    }
                }
                continue;
            }
            let mut any = false;
            for v in vals {
                if test(k, v)? {
                    any = true;
                    break;
                }
            }
            if !any {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Docker's `reference` filter: Go's `path.Match` of the pattern against
/// a familiar name; a malformed pattern is an invalid argument.
pub fn glob_match(pattern: &str, s: &str) -> crate::Result<bool> {
    berth_dockerfile::ignore::path_match(pattern, s)
        .map_err(|e| crate::Error::invalid(format!("invalid reference filter: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_one_key_are_alternatives_and_keys_all_apply() {
        let f = Filters::parse(&[
            "status=exited".into(),
            "status=created".into(),
            "name=a".into(),
        ])
        .unwrap();
        let row = |status: &str, name: &str| {
            f.matches(|k, v| {
                Ok(match k {
                    "status" => status == v,
                    "name" => name.contains(v),
                    _ => false,
                })
            })
            .unwrap()
        };
        assert!(row("exited", "abc"));
        assert!(row("created", "a"));
        assert!(!row("running", "a"));
        assert!(!row("exited", "b"));
        assert!(Filters::parse(&["nokey".into()]).is_err());
        let j = Filters::from_json(r#"{"status":["exited"],"label":{"a=b":true}}"#).unwrap();
        assert_eq!(j.iter().count(), 2);
        assert!(glob_match("lib/*", "lib/busybox").unwrap());
        assert!(!glob_match("*", "lib/busybox").unwrap());
        assert!(glob_match("lib/[", "lib/busybox").is_err());
    }

    /// Compose lists a service's containers with several label filters:
    /// each must hold (a container of another service once matched).
    #[test]
    fn several_label_filters_must_all_hold() {
        let f = Filters::parse(&[
            "label=com.docker.compose.project=p".into(),
            "label=com.docker.compose.service=worker".into(),
        ])
        .unwrap();
        let has = |labels: &[&str]| f.matches(|_, v| Ok(labels.contains(&v))).unwrap();
        assert!(has(&[
            "com.docker.compose.project=p",
            "com.docker.compose.service=worker"
        ]));
        assert!(!has(&[
            "com.docker.compose.project=p",
            "com.docker.compose.service=web"
        ]));
    }
}
