//! A lexical index over the catalog (BM25 over each tool's name, description and parameter
//! names), built once per catalog change, never per request. It ranks tools against a weighted
//! query (the conversation, or `find_tools`' query); the same input always gives the same order.

use std::collections::HashMap;

use serde_json::Value;

use super::catalog::ToolEntry;

/// BM25 term-frequency saturation.
const K1: f64 = 1.2;
/// BM25 length normalisation.
const B: f64 = 0.75;

/// Words that say nothing about which tool is meant.
const STOP: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "for", "with", "by", "at", "from", "is", "are", "be", "it",
    "this", "that", "as", "me", "my", "i", "you", "your", "we", "our", "please", "can", "could", "would", "should",
    "do", "does", "what", "which", "how", "some", "all", "any", "into", "about", "want", "need", "use", "using",
    "tool", "tools", "will", "its", "if", "then", "them", "there", "their", "these", "those", "when", "where", "who",
    "also",
];

/// Lowercase word stems of `text`: split on anything not alphanumeric and at camelCase
/// boundaries, stop words dropped, a light plural/verb-ending stem.
pub fn tokens(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && previous_lower && !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = c.is_lowercase() || c.is_numeric();
            current.extend(c.to_lowercase());
        } else {
            previous_lower = false;
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words.into_iter().filter(|w| !STOP.contains(&w.as_str())).map(|w| stem(&stem(&w))).collect()
}

/// A light stem: `files` → `file`, `directories` → `directory`, `searching` → `search`,
/// `created` → `creat` (also `create` → `creat`: stems need only agree with each other).
fn stem(word: &str) -> String {
    let chars = word.chars().count();
    if chars > 4
        && let Some(base) = word.strip_suffix("ies")
    {
        return format!("{base}y");
    }
    for suffix in ["ing", "ed", "e", "s"] {
        if chars > suffix.len() + 2
            && let Some(base) = word.strip_suffix(suffix)
            && !base.ends_with('s')
        {
            return base.to_owned();
        }
    }
    word.to_owned()
}

/// What the index counts of one tool: the stems of its name (exposed and original) twice, its
/// description, its parameter names and their descriptions, with how often each occurs.
#[derive(Debug, Default)]
pub struct Document {
    /// Each distinct term and its frequency.
    terms: Box<[(String, u32)]>,
    /// How many terms the text has in all.
    length: u32,
}

impl Document {
    /// The document of a tool exposed as `name` (`original` on its server).
    pub fn of(name: &str, original: &str, description: Option<&str>, schema: &serde_json::Map<String, Value>) -> Self {
        let mut text = format!("{name} {name} {original} {original} ");
        text.push_str(description.unwrap_or_default());
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, property) in properties {
                text.push(' ');
                text.push_str(name);
                if let Some(description) = property.get("description").and_then(Value::as_str) {
                    text.push(' ');
                    text.push_str(description);
                }
            }
        }
        let words = tokens(&text);
        let length = u32::try_from(words.len()).unwrap_or(u32::MAX);
        let mut frequency: HashMap<String, u32> = HashMap::new();
        for word in words {
            *frequency.entry(word).or_default() += 1;
        }
        let mut terms: Vec<(String, u32)> = frequency.into_iter().collect();
        // Catalog order and term order fixed: the same catalog always gives the same index.
        terms.sort_unstable();
        Self { terms: terms.into_boxed_slice(), length }
    }
}

/// The BM25 index of one catalog: an inverted index, so a query touches only the tools that
/// share a term with it.
#[derive(Debug, Default)]
pub struct SearchIndex {
    /// Per term: its inverse document frequency, and (tool in catalog order, term frequency).
    postings: HashMap<String, (f64, Vec<(usize, u32)>)>,
    /// Per tool: its BM25 length normalisation `K1 · (1 − B + B · length / average)`.
    norms: Vec<f64>,
}

impl SearchIndex {
    /// Indexes `entries` (catalog order).
    pub fn build(entries: &[std::sync::Arc<ToolEntry>]) -> Self {
        let mut postings: HashMap<String, (f64, Vec<(usize, u32)>)> = HashMap::new();
        let mut lengths = Vec::with_capacity(entries.len());
        for (doc, entry) in entries.iter().enumerate() {
            let document = &entry.document;
            lengths.push(f64::from(document.length));
            for (word, tf) in &document.terms {
                match postings.get_mut(word.as_str()) {
                    Some((_, docs)) => docs.push((doc, *tf)),
                    None => {
                        postings.insert(word.clone(), (0.0, vec![(doc, *tf)]));
                    }
                }
            }
        }
        let n = entries.len() as f64;
        for (idf, docs) in postings.values_mut() {
            let df = docs.len() as f64;
            *idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
        }
        let average = if lengths.is_empty() { 1.0 } else { lengths.iter().sum::<f64>() / n };
        let norms = lengths.iter().map(|l| K1 * (1.0 - B + B * l / average)).collect();
        Self { postings, norms }
    }

    /// The score of every tool (catalog order) for a query of weighted terms.
    pub fn scores(&self, query: &HashMap<String, f64>) -> Vec<f64> {
        let mut scores = vec![0.0; self.norms.len()];
        for (term, weight) in query {
            let Some((idf, docs)) = self.postings.get(term) else { continue };
            for &(doc, tf) in docs {
                let tf = f64::from(tf);
                if let (Some(score), Some(norm)) = (scores.get_mut(doc), self.norms.get(doc)) {
                    *score += weight * idf * tf * (K1 + 1.0) / (tf + norm);
                }
            }
        }
        scores
    }
}

/// Everyday words for what tools call otherwise (query side only, at half weight): users say
/// "folder", tools say "directory".
const SYNONYMS: &[(&str, &[&str])] = &[
    ("folder", &["directory"]),
    ("dir", &["directory"]),
    ("remember", &["memory", "entity", "observation"]),
    ("record", &["memory", "entity", "relation"]),
    ("note", &["observation", "memory"]),
    ("forget", &["delete", "entity"]),
    ("remove", &["delete"]),
    ("erase", &["delete"]),
    ("page", &["fetch", "url", "internet"]),
    ("website", &["fetch", "url", "internet"]),
    ("web", &["fetch", "url", "internet"]),
    ("download", &["fetch", "url"]),
    ("link", &["url"]),
    ("add", &["sum"]),
    ("plus", &["sum"]),
    ("several", &["multiple"]),
    ("many", &["multiple"]),
    ("rename", &["move"]),
    ("find", &["search"]),
    ("look", &["search"]),
    ("view", &["read"]),
    ("display", &["read"]),
    ("knowledge", &["graph", "memory"]),
];

/// Adds `text`'s terms to `query` with `weight` (and their everyday synonyms at half of it).
pub fn add_terms(query: &mut HashMap<String, f64>, text: &str, weight: f64) {
    static STEMMED: std::sync::LazyLock<HashMap<String, Vec<String>>> = std::sync::LazyLock::new(|| {
        SYNONYMS
            .iter()
            .map(|(word, alternatives)| (stem(&stem(word)), alternatives.iter().map(|a| stem(&stem(a))).collect()))
            .collect()
    });
    for term in tokens(text) {
        for alternative in STEMMED.get(&term).into_iter().flatten() {
            *query.entry(alternative.clone()).or_default() += weight / 2.0;
        }
        *query.entry(term).or_default() += weight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_names_and_stem() {
        assert_eq!(
            tokens("readFile list_directories GitHub-issues"),
            ["read", "fil", "list", "directory", "git", "hub", "issu"]
        );
        assert_eq!(tokens("Please search the files"), ["search", "fil"]);
        assert_eq!(tokens("created create creating"), ["creat", "creat", "creat"]);
    }
}
