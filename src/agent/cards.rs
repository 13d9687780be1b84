//! Open WebUI tool cards: `<details type="tool_calls" …>` blocks in the content stream, which its
//! frontend (0.6 through 0.12) renders as native collapsible "View Result from …" cards.
//!
//! The shape follows what Open WebUI's own backend wrote before 0.10: attribute values are
//! `html.escape(json.dumps(value))` (so `arguments`, already JSON text, is encoded twice), a
//! newline right after the opening tag (its tokenizer requires it), the whole block in one
//! delta, and blank lines around it so surrounding markdown cannot swallow it. The stream is
//! append-only, so only finished cards (`done="true"`) are emitted.
//!
//! Each card carries `mcpmw="<mac>"`, an HMAC of its id, name, arguments and result under a key
//! only the gateway holds ([`CardSigner`]). History expansion turns only cards with a valid mac
//! back into tool calls: a card a model wrote into its answer (prompt injection from a web
//! page, say) or a user pasted stays text, never a tool result the model trusts.

use std::fmt::Write;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::calls::ToolRun;

/// Signs and checks the cards this gateway renders.
#[derive(Clone)]
pub struct CardSigner {
    /// The HMAC state with the key already absorbed: each mac starts from a copy of it
    /// instead of hashing the key's pads again.
    keyed: Option<Hmac<Sha256>>,
}

impl CardSigner {
    /// A signer with `key` (derived from the gateway's persistent secret, so cards stay valid
    /// across restarts and replicas that share it).
    pub fn new(key: [u8; 32]) -> Self {
        Self { keyed: <Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok() }
    }

    /// The mac of one card's values, as hex (empty if the key could not be taken, which
    /// HMAC's any-length keys rule out).
    pub fn mac(&self, id: &str, name: &str, arguments: &str, result: &str) -> String {
        let Some(mut mac) = self.keyed.clone() else { return String::new() };
        for part in [id, name, arguments, result] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part.as_bytes());
        }
        let mut hex = String::with_capacity(32);
        for b in mac.finalize().into_bytes().iter().take(16) {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    /// Whether `given` is the mac of these values (constant time).
    pub fn verify(&self, id: &str, name: &str, arguments: &str, result: &str, given: &str) -> bool {
        let expected = self.mac(id, name, arguments, result);
        !expected.is_empty() && bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes()))
    }
}

/// The card for one finished call.
pub fn render(run: &ToolRun, signer: &CardSigner) -> String {
    let arguments_text = match &run.arguments {
        serde_json::Value::String(raw) => raw.clone(),
        other => other.to_string(),
    };
    let mac = signer.mac(&run.id, &run.name, &arguments_text, &run.output);
    format!(
        "\n\n<details type=\"tool_calls\" done=\"true\" id=\"{}\" name=\"{}\" arguments=\"{}\" result=\"{}\" mcpmw=\"{mac}\" files=\"\" embeds=\"\">\n<summary>Tool Executed</summary>\n</details>\n\n",
        escape(&run.id),
        escape(&run.name),
        escape(&json_string(&arguments_text)),
        escape(&json_string(&run.output)),
    )
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// HTML attribute escaping as Python's `html.escape(s, quote=True)` does it.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`], also accepting the decimal forms browsers and Python emit.
pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_escape_every_attribute() {
        let run = ToolRun {
            id: "call_1".into(),
            name: "ev__echo".into(),
            arguments: serde_json::json!({"message": "a \"quoted\" <b>"}),
            output: "line1\nit's & done".into(),
            is_error: false,
            artifacts: Vec::new(),
            images: Vec::new(),
            found: Vec::new(),
            needs_account: None,
            needs_input: None,
            needs_answer: None,
            duration_ms: 3,
        };
        let card = render(&run, &CardSigner::new([7; 32]));
        assert!(card.starts_with("\n\n<details type=\"tool_calls\" done=\"true\" id=\"call_1\" name=\"ev__echo\""));
        assert!(card.contains(">\n<summary>Tool Executed</summary>\n</details>\n\n"));
        let opening = card.trim_start().lines().next().unwrap();
        assert!(!opening.contains('<') || opening.matches('<').count() == 1, "{opening}");
        assert!(opening.contains("result=\"&quot;line1\\nit&#x27;s &amp; done&quot;\""), "{opening}");
        assert_eq!(unescape(&escape("a&b<\"'>")), "a&b<\"'>");
    }
}
