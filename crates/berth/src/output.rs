//! Output helpers shaped like docker's: human sizes and durations, tables,
//! and the subset of Go templates people pass to `--format`.

use anyhow::{bail, Result};
use serde_json::Value;

pub use berth_service::units::{ago, human_duration, human_size};

/// Prints rows as a table with columns separated by at least three spaces,
/// as docker's tabwriter does.
/// What `inspect` commands print: a pretty JSON array, or each object
/// through a Go template.
pub fn print_objects(values: &[Value], format: Option<&str>) -> Result<()> {
    match format {
        None | Some("json") => println!("{}", serde_json::to_string_pretty(values)?),
        Some(t) => {
            let tpl = Template::parse(t)?;
            for v in values {
                println!("{}", tpl.render(v)?);
            }
        }
    }
    Ok(())
}

pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A parsed Go template of the forms docker users write: text with
/// `{{.Field.Sub}}`, `{{json .Field}}`, `{{json .}}`, `{{upper .X}}`,
/// `{{lower .X}}`, `{{join .X ","}}` and `{{index .Map "key"}}`.
pub struct Template {
    parts: Vec<Part>,
}

enum Part {
    Text(String),
    Action {
        func: Option<String>,
        path: Vec<String>,
        arg: Option<String>,
    },
}

impl Template {
    pub fn parse(src: &str) -> Result<Template> {
        let src = src.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = src.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let Some(end) = rest[start..].find("}}") else {
                bail!("template: unclosed action in {src:?}");
            };
            let action = rest[start + 2..start + end].trim().trim_matches('-').trim();
            parts.push(parse_action(action, &src)?);
            rest = &rest[start + end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    pub fn render(&self, ctx: &Value) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action { func, path, arg } => {
                    let mut v = ctx;
                    for key in path {
                        v = v.get(key).unwrap_or(&Value::Null);
                    }
                    match func.as_deref() {
                        None => out.push_str(&go_string(v)),
                        Some("json") => out.push_str(&serde_json::to_string(v)?),
                        Some("upper") => out.push_str(&go_string(v).to_uppercase()),
                        Some("lower") => out.push_str(&go_string(v).to_lowercase()),
                        Some("join") => {
                            let sep = arg.clone().unwrap_or_default();
                            let items: Vec<String> = v
                                .as_array()
                                .map(|a| a.iter().map(go_string).collect())
                                .unwrap_or_default();
                            out.push_str(&items.join(&sep));
                        }
                        Some("index") => {
                            let key = arg.clone().unwrap_or_default();
                            out.push_str(&go_string(v.get(&key).unwrap_or(&Value::Null)));
                        }
                        Some(other) => bail!("template: function {other:?} not defined"),
                    }
                }
            }
        }
        Ok(out)
    }
}

fn parse_action(action: &str, src: &str) -> Result<Part> {
    let words: Vec<&str> = split_words(action);
    let (func, path_word, arg) = match words.as_slice() {
        [p] if p.starts_with('.') => (None, *p, None),
        [f, p] if p.starts_with('.') => (Some(f.to_string()), *p, None),
        [f, p, a] if p.starts_with('.') => (Some(f.to_string()), *p, Some(unquote(a))),
        _ => bail!("template: cannot parse action {{{{{action}}}}} in {src:?}"),
    };
    let path = path_word
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Ok(Part::Action { func, path, arg })
}

fn split_words(s: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if rest.starts_with('"') {
            let end = rest[1..].find('"').map_or(rest.len(), |i| i + 2);
            words.push(&rest[..end]);
            rest = rest[end..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            words.push(&rest[..end]);
            rest = rest[end..].trim_start();
        }
    }
    words
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// How Go's fmt prints a value with `%v`.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_match_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4200), "4.2kB");
        assert_eq!(human_size(2_159_616), "2.16MB");
        assert_eq!(human_size(127_400_000), "127MB");
        assert_eq!(human_size(12_000_000), "12MB");
    }

    #[test]
    fn durations_match_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn templates_render() {
        let ctx = json!({"Config": {"User": "app", "Env": ["A=1", "B=2"], "Labels": {"k": "v"}}, "Id": "x"});
        let t = Template::parse("{{.Id}}\\t{{.Config.User}} {{json .Config.Env}} {{join .Config.Env \",\"}} {{index .Config.Labels \"k\"}}").unwrap();
        assert_eq!(
            t.render(&ctx).unwrap(),
            "x\tapp [\"A=1\",\"B=2\"] A=1,B=2 v"
        );
        assert!(Template::parse("{{.Id").is_err());
        assert!(Template::parse("{{nosuch .Id}}")
            .unwrap()
            .render(&ctx)
            .is_err());
    }
}
