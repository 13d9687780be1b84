//! Environment references in config values, resolved in exactly one place.
//!
//! | written in YAML          | becomes                                             |
//! |--------------------------|-----------------------------------------------------|
//! | `${VAR}`                 | the value of `VAR`; an error naming the key if unset |
//! | `${VAR:-default}`        | the value of `VAR`, or `default` if unset or empty  |
//! | `os.environ/VAR`         | (whole value, LiteLLM style) the value of `VAR`      |
//! | `$${`                    | a literal `${`                                      |
//!
//! Only string scalars are rewritten, after YAML parsing, so a value can never inject YAML
//! structure, and a value stays text whatever it looks like (`args: ["--port", "${PORT:-3000}"]`
//! or an all-digit secret stay strings): the fields that are numbers or booleans read text too
//! (`raw.rs`), so only the field's type decides.

use serde_yaml_ng::Value;

/// Where environment values come from. Production reads the process environment; tests pass a
/// map, so no test ever calls `set_var`.
pub trait EnvSource {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Rewrites every string scalar under `value`, collecting one problem per failing key
/// (`"upstream.api_key: environment variable KEY is not set"`).
pub fn resolve(value: &mut Value, env: &dyn EnvSource, path: &str, problems: &mut Vec<String>) {
    match value {
        Value::String(s) => match substitute(s, env) {
            Ok(Some(new)) => *value = Value::String(new),
            Ok(None) => {}
            Err(msg) => problems.push(format!("{}: {msg}", display_path(path))),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve(item, env, &format!("{path}[{i}]"), problems);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let key = match key {
                    Value::String(k) => k.clone(),
                    other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_owned(),
                };
                let child = if path.is_empty() { key } else { format!("{path}.{key}") };
                resolve(item, env, &child, problems);
            }
        }
        Value::Tagged(tagged) => resolve(&mut tagged.value, env, path, problems),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

/// `Ok(None)` when the string holds no reference (the common case: no allocation).
pub fn substitute(input: &str, env: &dyn EnvSource) -> Result<Option<String>, String> {
    if let Some(name) = input.strip_prefix("os.environ/") {
        let name = name.trim();
        return match env.var(name) {
            Some(v) => Ok(Some(v)),
            None => Err(format!("environment variable {name} is not set")),
        };
    }
    if !input.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            // `$${` is an escaped literal `${`.
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("unterminated `${` reference".to_owned());
        };
        out.push_str(&lookup(&after[..end], env)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn lookup(reference: &str, env: &dyn EnvSource) -> Result<String, String> {
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("`${{{reference}}}` is not a valid environment reference"));
    }
    match (env.var(name), default) {
        (Some(v), Some(d)) if v.is_empty() => Ok(d.to_owned()),
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_owned()),
        (None, None) => {
            Err(format!("environment variable {name} is not set (write ${{{name}:-}} to allow it to be empty)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        HashMap::from([("A".into(), "alpha".into()), ("EMPTY".into(), String::new())])
    }

    #[test]
    fn substitutes_each_form() {
        let e = env();
        let cases = [
            ("plain", None),
            ("${A}", Some("alpha")),
            ("x-${A}-y", Some("x-alpha-y")),
            ("${MISSING:-dflt}", Some("dflt")),
            ("${EMPTY:-dflt}", Some("dflt")),
            ("${EMPTY}", Some("")),
            ("os.environ/A", Some("alpha")),
            ("$${A}", Some("${A}")),
        ];
        for (input, want) in cases {
            assert_eq!(substitute(input, &e).unwrap().as_deref(), want, "{input}");
        }
    }

    #[test]
    fn reports_unset_and_malformed() {
        let e = env();
        assert!(substitute("${NOPE}", &e).unwrap_err().contains("NOPE is not set"));
        assert!(substitute("os.environ/NOPE", &e).unwrap_err().contains("NOPE"));
        assert!(substitute("${A", &e).unwrap_err().contains("unterminated"));
        assert!(substitute("${a b}", &e).unwrap_err().contains("not a valid"));
    }
}
