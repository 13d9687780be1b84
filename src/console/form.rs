//! Forms from tool input schemas, for the console's "Try it": one field per top-level property
//! (a text box, a number, a yes/no choice, a list of the `enum`'s values, or JSON for objects and
//! arrays), and the arguments read back from what was submitted. A raw JSON box beside the fields
//! covers any schema the fields cannot express; when filled, it is used as is.

use serde_json::{Map, Value};

/// Most fields a form shows (a schema with more is tried through the JSON box).
pub const MAX_FIELDS: usize = 64;
/// The submitted field that holds raw JSON arguments.
pub const JSON_FIELD: &str = "json";
/// How a property's field is named in the form.
pub const PREFIX: &str = "arg.";

/// What a field asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Text,
    /// A number.
    Number,
    /// A whole number.
    Integer,
    /// Yes, no, or unset.
    Boolean,
    /// One of the `enum`'s values (as their JSON text for non-strings).
    Choice(Vec<String>),
    /// Anything else, as JSON.
    Json,
}

/// One field of a tool's form.
#[derive(Debug, Clone)]
pub struct Field {
    /// The property's name.
    pub name: String,
    /// What it asks for.
    pub kind: Kind,
    /// Whether the schema requires it.
    pub required: bool,
    /// The property's description.
    pub description: Option<String>,
}

/// The property's type: its `type`, the first non-null of a list.
fn type_of(property: &Value) -> Option<&str> {
    match property.get("type") {
        Some(Value::String(t)) => Some(t),
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn kind_of(property: &Value) -> Kind {
    if let Some(Value::Array(values)) = property.get("enum") {
        let shown = values.iter().take(200).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        return Kind::Choice(shown.collect());
    }
    match type_of(property) {
        Some("string") => Kind::Text,
        Some("number") => Kind::Number,
        Some("integer") => Kind::Integer,
        Some("boolean") => Kind::Boolean,
        _ => Kind::Json,
    }
}

/// The form of `schema` (a tool's `inputSchema`): its top-level properties, required first.
pub fn fields(schema: &Value) -> Vec<Field> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return Vec::new() };
    let mut fields: Vec<Field> = properties
        .iter()
        .take(MAX_FIELDS)
        .map(|(name, property)| Field {
            name: name.clone(),
            kind: kind_of(property),
            required: required.contains(&name.as_str()),
            description: property.get("description").and_then(Value::as_str).map(str::to_owned),
        })
        .collect();
    fields.sort_by_key(|f| !f.required);
    fields
}

/// The arguments a submitted form gives for `schema`: the JSON box when filled (an object),
/// else each filled field read as its property's type; an empty field is left out.
pub fn arguments(schema: &Value, submitted: &[(String, String)]) -> Result<Value, String> {
    let value = |name: &str| submitted.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if let Some(raw) = value(JSON_FIELD).map(str::trim).filter(|raw| !raw.is_empty()) {
        let parsed: Value = serde_json::from_str(raw).map_err(|e| format!("the JSON arguments do not parse: {e}"))?;
        return match parsed {
            Value::Object(_) => Ok(parsed),
            _ => Err("the JSON arguments must be an object".into()),
        };
    }
    let mut arguments = Map::new();
    for field in fields(schema) {
        let Some(text) = value(&format!("{PREFIX}{}", field.name)).filter(|t| !t.is_empty()) else { continue };
        let bad = |what: &str| format!("`{}` must be {what}", field.name);
        let parsed = match &field.kind {
            Kind::Text => Value::String(text.to_owned()),
            Kind::Number => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| bad("a number"))?,
            Kind::Integer => Value::from(text.trim().parse::<i64>().map_err(|_| bad("a whole number"))?),
            Kind::Boolean => match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(bad("true or false")),
            },
            Kind::Choice(values) => {
                if !values.iter().any(|v| v == text) {
                    return Err(bad("one of its listed values"));
                }
                // A non-string value is listed as its JSON text.
                let enumerated = schema.get("properties").and_then(|p| p.get(&field.name)).and_then(|p| p.get("enum"));
                let a_string =
                    enumerated.and_then(Value::as_array).is_some_and(|e| e.iter().any(|v| v.as_str() == Some(text)));
                if a_string {
                    Value::String(text.to_owned())
                } else {
                    serde_json::from_str(text).map_err(|_| bad("valid JSON"))?
                }
            }
            Kind::Json => serde_json::from_str(text).map_err(|_| bad("valid JSON"))?,
        };
        arguments.insert(field.name, parsed);
    }
    Ok(Value::Object(arguments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn fields_follow_the_schema_and_values_are_typed() {
        let schema = json!({"type": "object", "required": ["text"], "properties": {
            "count": {"type": "integer"}, "text": {"type": "string", "description": "d"},
            "ratio": {"type": ["number", "null"]}, "loud": {"type": "boolean"},
            "mode": {"enum": ["a", "b"]}, "level": {"enum": [1, 2]}, "tags": {"type": "array"}}});
        let fields = fields(&schema);
        assert_eq!(fields[0].name, "text");
        assert!(fields[0].required);
        let args = arguments(
            &schema,
            &form(&[
                ("arg.text", "hi"),
                ("arg.count", "3"),
                ("arg.ratio", "0.5"),
                ("arg.loud", "true"),
                ("arg.mode", "b"),
                ("arg.level", "2"),
                ("arg.tags", "[1]"),
                ("arg.unknown", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            args,
            json!({"text": "hi", "count": 3, "ratio": 0.5, "loud": true, "mode": "b", "level": 2, "tags": [1]})
        );
        assert_eq!(arguments(&schema, &form(&[("arg.text", "")])).unwrap(), json!({}));
        assert!(arguments(&schema, &form(&[("arg.count", "x")])).is_err());
        assert!(arguments(&schema, &form(&[("arg.mode", "c")])).is_err());
    }

    #[test]
    fn the_json_box_wins_and_must_be_an_object() {
        let schema = json!({"properties": {"a": {"type": "string"}}});
        let args = arguments(&schema, &form(&[("arg.a", "x"), ("json", r#"{"b": 1}"#)])).unwrap();
        assert_eq!(args, json!({"b": 1}));
        assert!(arguments(&schema, &form(&[("json", "[1]")])).is_err());
        assert!(arguments(&schema, &form(&[("json", "{")])).is_err());
    }
}
