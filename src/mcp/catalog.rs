//! The tool catalog: the union of every server's tools under names models accept, built once
//! per change (connect, `list_changed`, reconnect) and shared read-only by every request. A
//! rebuild keeps the entry of every tool that did not change, so a server re-listing a thousand
//! tools after changing one costs one entry's work.
//!
//! Exposed names are `<server>__<tool>`, sanitised to `[A-Za-z0-9_-]` and at most 64
//! characters. A name that sanitising changed, that is too long or that would collide is
//! shortened and given a stable 8-hex-digit hash of `(server, tool)`, so it never changes between
//! rebuilds and does not depend on the order tools are listed in. Input schemas
//! are sanitised for strict providers and the OpenAI `tools` entry is prepared as JSON here, so
//! injecting the catalog into a request is a clone of ready values.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

/// Longest tool name the OpenAI API accepts.
pub const MAX_NAME: usize = 64;
/// Separator between server and tool in exposed names.
pub const SEPARATOR: &str = crate::config::SEPARATOR;

/// One tool as clients and models see it.
#[derive(Debug)]
pub struct ToolEntry {
    /// Name exposed to models and REST clients.
    pub name: String,
    /// Server it belongs to.
    pub server: String,
    /// The tool's name on its server.
    pub original_name: String,
    /// The server's description.
    pub description: Option<String>,
    /// Sanitised input schema (always `type: object`).
    pub input_schema: Arc<Map<String, Value>>,
    /// The input schema as the server gave it (`$schema`, `$id` and all; what MCP clients of
    /// the facade see). Shared with the server's tool list, not a copy.
    pub server_schema: Arc<Map<String, Value>>,
    /// Its annotations say `destructiveHint: true` and not `readOnlyHint: true`.
    pub destructive: bool,
    /// The ready `{"type":"function","function":{…}}` entry for chat requests, serialised once
    /// and copied as is into every request that offers the tool.
    pub openai_tool: Box<serde_json::value::RawValue>,
    /// The connection of a server one request named by URL (`responses.server_urls`): calls
    /// go there, not to a configured server of the same name.
    pub attached: Option<Attached>,
    /// Compiled on first need (a call the server refused): the catalog build stays cheap, and
    /// arguments are never refused locally.
    validator: std::sync::OnceLock<Option<jsonschema::Validator>>,
    /// What the search index counts of it (its terms, tokenised once with the entry).
    pub(super) document: super::search::Document,
}

impl ToolEntry {
    /// The entry for `tool`, exposed as `name`: its schema sanitised, its `tools` JSON and its
    /// search terms made.
    fn new(name: String, tool: SourceTool, attached: Option<Attached>) -> Self {
        let input_schema = Arc::new(sanitize_schema(&tool.input_schema));
        let openai_tool = json!({"type": "function", "function": {
            "name": name,
            "description": tool.description.clone().unwrap_or_default(),
            "parameters": &*input_schema,
        }});
        let openai_tool = serde_json::value::to_raw_value(&openai_tool)
            .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned());
        let document = super::search::Document::of(&name, &tool.name, tool.description.as_deref(), &input_schema);
        ToolEntry {
            name,
            server: tool.server,
            original_name: tool.name,
            description: tool.description,
            input_schema,
            server_schema: tool.input_schema,
            destructive: tool.destructive,
            openai_tool,
            attached,
            validator: std::sync::OnceLock::new(),
            document,
        }
    }

    /// Whether this shared entry is what `tool` exposed as `name` would make.
    fn unchanged(&self, name: &str, tool: &SourceTool) -> bool {
        self.attached.is_none()
            && self.name == name
            && self.server == tool.server
            && self.original_name == tool.name
            && self.description == tool.description
            && self.destructive == tool.destructive
            && (Arc::ptr_eq(&self.server_schema, &tool.input_schema) || self.server_schema == tool.input_schema)
    }

    /// Its `server` and `tool` metric labels: a server a request named by URL is one bounded
    /// label (`url`), whatever the client called it and its tools.
    pub fn metric_labels(&self) -> (&str, &str) {
        if self.attached.is_some() { ("url", "url") } else { (&self.server, &self.name) }
    }

    /// Checks arguments against the input schema; `Err` carries a message a model can act on.
    ///
    /// Advice only: the gateway never refuses a call on this (a server may accept what its
    /// schema marks required, filling its own default). It is asked after the server refused
    /// a call, to make the server's error clearer to the model.
    pub fn validate(&self, args: &Value) -> Result<(), String> {
        let validator = self.validator.get_or_init(|| compile(&self.server, &self.original_name, &self.input_schema));
        let Some(validator) = validator else { return Ok(()) };
        if validator.is_valid(args) {
            return Ok(());
        }
        let problems: Vec<String> = validator
            .iter_errors(args)
            .take(5)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() { e.to_string() } else { format!("{at}: {e}") }
            })
            .collect();
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }

    /// The REST/JSON view: `{name, server, original_name, description, inputSchema}`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "server": self.server,
            "original_name": self.original_name,
            "description": self.description,
            "inputSchema": &*self.input_schema,
        })
    }
}

/// A tool as a server listed it, before naming.
#[derive(Debug, Clone)]
pub struct SourceTool {
    /// Server name.
    pub server: String,
    /// Original tool name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Input schema as the server sent it.
    pub input_schema: Arc<Map<String, Value>>,
    /// Its annotations say `destructiveHint: true` and not `readOnlyHint: true`.
    pub destructive: bool,
    /// What its exposed name starts with (`None`: `<server>__`).
    pub prefix: Option<String>,
}

/// A request's own connection to a server it named by URL (see [`ToolEntry::attached`]).
#[derive(Clone)]
pub struct Attached {
    /// The connection.
    pub handle: Arc<super::server::ServerHandle>,
    /// The request's credentials for it (its `authorization` and headers), to scrub from
    /// whatever comes back.
    pub redactor: Arc<crate::config::Redactor>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Attached").field(&self.handle.name()).finish()
    }
}

/// An immutable snapshot of all tools.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: Vec<Arc<ToolEntry>>,
    by_name: HashMap<String, usize>,
    by_origin: HashMap<(String, String), usize>,
    index: super::search::SearchIndex,
    /// Names two servers would share (the first server keeps it), in words.
    collisions: Vec<String>,
}

impl Catalog {
    /// Builds a catalog from the tools of every server (in a stable order: by server, then
    /// the server's own order).
    pub fn build(tools: impl IntoIterator<Item = SourceTool>) -> Self {
        Self::build_on(tools, &[], None)
    }

    /// [`build`](Self::build), where the tools of the servers in `attached` (by name) call
    /// through those connections, and a tool that `previous` holds unchanged (same server,
    /// name, description, schema and annotations, under the same exposed name) keeps its entry:
    /// a server that re-lists a thousand tools after changing one costs one entry's work
    /// (schema cleaned, `tools` JSON, search terms), not a thousand.
    pub fn build_on(
        tools: impl IntoIterator<Item = SourceTool>,
        attached: &[Attached],
        previous: Option<&Catalog>,
    ) -> Self {
        let mut catalog = Catalog::default();
        for tool in tools {
            // A server listing the same tool twice gets it once (found by fuzzing).
            if catalog.by_origin.contains_key(&(tool.server.clone(), tool.name.clone())) {
                continue;
            }
            let prefix = tool.prefix.clone().unwrap_or_else(|| format!("{}{SEPARATOR}", tool.server));
            let joined = format!("{prefix}{}", tool.name);
            // Two servers whose names meet (prefixes of their own, or none) are never told
            // apart silently: the first server keeps the name, and the collision is reported.
            let holder = catalog.by_name.get(&sanitize(&joined)).and_then(|i| catalog.entries.get(*i));
            if let Some(holder) = holder.filter(|h| h.server != tool.server) {
                let what = format!(
                    "`{joined}` of server `{}` collides with server `{}`'s; the first keeps it, this one is left out",
                    tool.server, holder.server
                );
                tracing::warn!(server = %tool.server, other = %holder.server, name = %joined, "tool names collide");
                catalog.collisions.push(what);
                continue;
            }
            let name = catalog.unique_name(&joined, &tool.server, &tool.name);
            let attached = attached.iter().find(|a| a.handle.name() == tool.server).cloned();
            let kept = previous
                .and_then(|previous| previous.by_origin(&tool.server, &tool.name))
                .filter(|entry| attached.is_none() && entry.unchanged(&name, &tool))
                .cloned();
            let index = catalog.entries.len();
            catalog.by_name.insert(name.clone(), index);
            catalog.by_origin.insert((tool.server.clone(), tool.name.clone()), index);
            catalog.entries.push(kept.unwrap_or_else(|| Arc::new(ToolEntry::new(name, tool, attached))));
        }
        catalog.index = super::search::SearchIndex::build(&catalog.entries);
        catalog
    }

    /// The lexical index of this catalog (built with it).
    pub fn index(&self) -> &super::search::SearchIndex {
        &self.index
    }

    /// All entries in catalog order.
    pub fn entries(&self) -> &[Arc<ToolEntry>] {
        &self.entries
    }

    /// Where the entry exposed as `name` is in catalog order.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The entry exposed as `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ToolEntry>> {
        self.by_name.get(name).and_then(|&i| self.entries.get(i))
    }

    /// The entry for a server's original tool name.
    pub fn by_origin(&self, server: &str, original: &str) -> Option<&Arc<ToolEntry>> {
        self.by_origin.get(&(server.to_owned(), original.to_owned())).and_then(|&i| self.entries.get(i))
    }

    /// Number of tools.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no tools.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tool names two servers would share, in words (reported by `/mcp/servers`).
    pub fn collisions(&self) -> &[String] {
        &self.collisions
    }

    fn unique_name(&self, joined: &str, server: &str, tool: &str) -> String {
        let plain = sanitize(joined);
        // A name that changed in sanitising always gets its hash: `issues.list` beside
        // `issues_list` is told apart the same way whatever order the server lists them in.
        let lossless = plain == joined;
        if lossless && plain.len() <= MAX_NAME && !self.by_name.contains_key(&plain) {
            return plain;
        }
        let mut hash = fnv1a(format!("{server}\u{0}{tool}").as_bytes());
        loop {
            let suffix = format!("_{:08x}", hash as u32);
            let keep = MAX_NAME - suffix.len();
            let head: String = plain.chars().take(keep).collect();
            let name = format!("{head}{suffix}");
            if !self.by_name.contains_key(&name) {
                return name;
            }
            hash = fnv1a(&hash.to_le_bytes());
        }
    }
}

/// Longest tool description kept (longer ones are cut): every offered tool's description rides
/// in every chat request.
pub const MAX_DESCRIPTION_BYTES: usize = 8 * 1024;
/// Largest input schema accepted (as JSON); a tool with a larger one is left out.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Longest original tool name accepted.
const MAX_ORIGINAL_NAME: usize = 256;

/// A listed tool made safe to offer, or `None` (with a warning) when it cannot be: a name or
/// schema over its limit. Descriptions lose invisible and direction-changing characters (a
/// server can hide instructions to the model in Unicode tag characters) and are cut at
/// [`MAX_DESCRIPTION_BYTES`].
pub fn bounded_tool(server: &str, mut tool: rmcp::model::Tool) -> Option<rmcp::model::Tool> {
    if tool.name.len() > MAX_ORIGINAL_NAME {
        tracing::warn!(server, bytes = tool.name.len(), "a tool name over 256 bytes; tool left out");
        return None;
    }
    // Measured as it is written, not into a buffer, and given up past the limit.
    let mut size = ByteCount { bytes: 0, limit: MAX_SCHEMA_BYTES };
    if serde_json::to_writer(&mut size, &*tool.input_schema).is_err() {
        tracing::warn!(server, tool = %tool.name, "input schema over 64 KiB; tool left out");
        return None;
    }
    if let Some(description) = tool.description.as_deref().filter(|d| !is_clean(d)) {
        let clean = clean_description(description);
        tracing::info!(server, tool = %tool.name, "description cut or cleaned of invisible characters");
        tool.description = Some(clean.into());
    }
    // Parameter descriptions and titles reach the model too. Most schemas need nothing: they
    // are read, and copied only to be cleaned.
    if !tool.input_schema.iter().all(|(key, item)| texts_clean(key, item)) {
        let mut schema = Value::Object((*tool.input_schema).clone());
        clean_schema_texts(&mut schema);
        tracing::info!(server, tool = %tool.name, "schema texts cleaned of invisible characters");
        if let Value::Object(cleaned) = schema {
            tool.input_schema = Arc::new(cleaned);
        }
    }
    Some(tool)
}

/// Counts the bytes written to it; an error once they pass `limit`.
struct ByteCount {
    bytes: usize,
    limit: usize,
}

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes = self.bytes.saturating_add(buf.len());
        if self.bytes > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether the schema member `key: item` has no `description` or `title` text that
/// [`clean_description`] would change, at any depth.
fn texts_clean(key: &str, item: &Value) -> bool {
    match item {
        Value::String(text) if key == "description" || key == "title" => is_clean(text),
        Value::Object(map) => map.iter().all(|(key, item)| texts_clean(key, item)),
        Value::Array(items) => items.iter().all(|item| texts_clean("", item)),
        _ => true,
    }
}

/// Cleans every `description` and `title` string in a schema as [`clean_description`] does.
fn clean_schema_texts(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match item {
                    Value::String(text) if key == "description" || key == "title" => {
                        if !is_clean(text) {
                            *text = clean_description(text);
                        }
                    }
                    other => clean_schema_texts(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(clean_schema_texts),
        _ => {}
    }
}

/// An invisible, direction-changing or control character (not a newline or tab): what a
/// server could hide instructions to the model in.
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0xE0000..=0xE007F      // tag characters
        | 0x200B..=0x200F      // zero-width space/joiners, LRM/RLM
        | 0x202A..=0x202E      // bidi embeddings and overrides
        | 0x2060..=0x2064      // word joiner, invisible operators
        | 0x2066..=0x2069      // bidi isolates
        | 0xFEFF               // zero-width no-break space
        | 0xFFF9..=0xFFFB      // interlinear annotations
    ) || (c.is_control() && c != '\n' && c != '\t')
}

/// Whether [`clean_description`] would return `text` as it is.
fn is_clean(text: &str) -> bool {
    text.len() <= MAX_DESCRIPTION_BYTES && !text.chars().any(is_invisible)
}

/// `text` without invisible, direction-changing or control characters (newlines and tabs
/// stay), cut at [`MAX_DESCRIPTION_BYTES`] on a character boundary.
pub fn clean_description(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_DESCRIPTION_BYTES));
    for c in text.chars().filter(|c| !is_invisible(*c)) {
        if out.len() + c.len_utf8() > MAX_DESCRIPTION_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// Replaces every character outside `[A-Za-z0-9_-]` with `_`.
pub fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// 64-bit FNV-1a: small, stable across versions and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Makes a schema acceptable to strict providers: no `$schema`, `type: object`, `properties`
/// present.
pub fn sanitize_schema(schema: &Map<String, Value>) -> Map<String, Value> {
    let mut out = schema.clone();
    out.remove("$schema");
    out.remove("$id");
    if out.get("type").and_then(Value::as_str) != Some("object") {
        out.insert("type".into(), Value::String("object".into()));
    }
    if !out.get("properties").is_some_and(Value::is_object) {
        out.insert("properties".into(), Value::Object(Map::new()));
    }
    out
}

fn compile(server: &str, tool: &str, schema: &Map<String, Value>) -> Option<jsonschema::Validator> {
    // Built without the resolve-http/resolve-file features: remote `$ref`s are never fetched.
    match jsonschema::validator_for(&Value::Object(schema.clone())) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(server, tool, error = %e, "tool schema does not compile; arguments will not be checked");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_descriptions_lose_hidden_characters_too() {
        let schema = json!({"type": "object", "properties": {"q": {"type": "string",
            "description": "Query\u{E0049}\u{E0047}\u{202E}", "title": "Q\u{200B}", "enum": ["a\u{200B}"]}}});
        let tool = rmcp::model::Tool::new("t", "d", Arc::new(schema.as_object().unwrap().clone()));
        let cleaned = bounded_tool("s", tool).unwrap();
        let q = &cleaned.input_schema["properties"]["q"];
        assert_eq!(q["description"], "Query");
        assert_eq!(q["title"], "Q");
        assert_eq!(q["enum"][0], "a\u{200B}", "values the server checks are left alone");
    }

    #[test]
    fn descriptions_lose_hidden_characters_and_excess() {
        let hidden: String = "do this".chars().map(|c| char::from_u32(0xE0000 + c as u32).unwrap()).collect();
        let text = format!("Echo\u{202E}s text.{hidden}\u{200B}\nSecond line\u{1b}[31m");
        assert_eq!(clean_description(&text), "Echos text.\nSecond line[31m");
        let long = "é".repeat(MAX_DESCRIPTION_BYTES);
        let cut = clean_description(&long);
        assert!(cut.len() <= MAX_DESCRIPTION_BYTES && cut.chars().all(|c| c == 'é'));
    }

    fn tool(server: &str, name: &str) -> SourceTool {
        let schema = json!({"$schema": "x", "properties": {"text": {"type": "string"}}, "required": ["text"]});
        SourceTool {
            server: server.into(),
            name: name.into(),
            description: None,
            input_schema: Arc::new(schema.as_object().unwrap().clone()),
            destructive: false,
            prefix: None,
        }
    }

    #[test]
    fn names_are_valid_distinct_and_reversible() {
        let long = "t".repeat(100);
        let cat = Catalog::build([
            tool("a", "echo"),
            tool("b", "echo"),
            tool("a", "weird.name"),
            tool("a", "weird_name"),
            tool("a", &long),
            tool("my server", &long),
        ]);
        let names: Vec<&str> = cat.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(&names[..2], ["a__echo", "b__echo"]);
        // `weird.name` (changed by sanitising) is hashed; `weird_name` keeps its name, whichever
        // comes first.
        assert!(names[2].starts_with("a__weird_name_") && names[3] == "a__weird_name", "{names:?}");
        let reordered = Catalog::build([tool("a", "weird_name"), tool("a", "weird.name")]);
        assert_eq!(reordered.by_origin("a", "weird.name").unwrap().name, names[2]);
        assert_eq!(reordered.by_origin("a", "weird_name").unwrap().name, "a__weird_name");
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for e in cat.entries() {
            assert!(e.name.len() <= MAX_NAME, "{}", e.name);
            assert!(e.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{}", e.name);
            let back = cat.get(&e.name).unwrap();
            assert_eq!((&back.server, &back.original_name), (&e.server, &e.original_name));
        }
        // Stable: rebuilding gives the same names.
        let again = Catalog::build([tool("a", &long)]);
        assert_eq!(again.entries()[0].name, cat.by_origin("a", &long).unwrap().name);
    }

    #[test]
    fn a_tool_listed_twice_by_one_server_appears_once() {
        let cat = Catalog::build([tool("a", "echo"), tool("a", "echo"), tool("b", "echo")]);
        let names: Vec<&str> = cat.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a__echo", "b__echo"]);
        assert_eq!(cat.by_origin("a", "echo").unwrap().name, "a__echo");
    }

    #[test]
    fn schemas_are_sanitised_and_enforced() {
        let cat = Catalog::build([tool("a", "echo")]);
        let e = cat.get("a__echo").unwrap();
        assert!(!e.input_schema.contains_key("$schema"));
        assert_eq!(e.input_schema["type"], "object");
        let definition: Value = serde_json::from_str(e.openai_tool.get()).unwrap();
        assert_eq!(definition["function"]["name"], "a__echo");
        assert!(e.validate(&json!({"text": "hi"})).is_ok());
        let err = e.validate(&json!({"text": 5})).unwrap_err();
        assert!(err.contains("/text"), "{err}");
        assert!(e.validate(&json!({})).unwrap_err().contains("text"));
    }

    #[test]
    fn a_rebuild_keeps_the_entries_of_unchanged_tools_and_remakes_the_rest() {
        let described = |server: &str, name: &str, description: &str| SourceTool {
            description: Some(description.into()),
            ..tool(server, name)
        };
        let first = Catalog::build([described("a", "echo", "Echoes"), tool("a", "add"), tool("b", "echo")]);
        let listed_again = [described("a", "echo", "Echoes text back"), tool("a", "add"), tool("b", "echo")];
        let second = Catalog::build_on(listed_again, &[], Some(&first));
        let same = |name: &str| Arc::ptr_eq(first.get(name).unwrap(), second.get(name).unwrap());
        assert!(same("a__add") && same("b__echo"), "unchanged tools keep their entries");
        assert!(!same("a__echo"), "a changed description makes a new entry");
        let echo = second.get("a__echo").unwrap();
        assert_eq!(echo.description.as_deref(), Some("Echoes text back"));
        assert!(echo.openai_tool.get().contains("Echoes text back"));
        // The index counts the new text: a query for it finds the changed tool first.
        let mut query = HashMap::new();
        super::super::search::add_terms(&mut query, "text back", 1.0);
        let scores = second.index().scores(&query);
        let best = scores.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).map(|(i, _)| i);
        assert_eq!(best, second.position("a__echo"));
        // A changed schema, a changed annotation or a new exposed name are changes too.
        let schema = Arc::new(json!({"type": "object"}).as_object().unwrap().clone());
        let third = Catalog::build_on(
            [
                SourceTool { input_schema: schema, ..tool("a", "add") },
                SourceTool { destructive: true, ..tool("b", "echo") },
                SourceTool { prefix: Some("x_".into()), ..described("a", "echo", "Echoes text back") },
            ],
            &[],
            Some(&second),
        );
        assert!(!Arc::ptr_eq(second.get("a__add").unwrap(), third.get("a__add").unwrap()));
        assert!(third.get("b__echo").unwrap().destructive);
        assert!(third.get("x_echo").is_some() && third.get("a__echo").is_none());
    }
}
