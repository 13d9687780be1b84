//! How chat requests use tools: `tool_loop:`, `tool_selection:`, per-model policies and the
//! tool policy shape shared by keys, models and requests.

use std::time::Duration;

/// The chat tool loop's limits and presentation.
#[derive(Debug, Clone)]
pub struct ToolLoopConfig {
    /// Model rounds per request.
    pub max_rounds: u32,
    /// Tool calls per request.
    pub max_tool_calls: u32,
    /// Wall time per request.
    pub max_duration: Duration,
    /// Concurrent calls per round.
    pub parallel_calls: usize,
    /// Identical consecutive calls allowed before one is refused.
    pub repeat_limit: u32,
    /// Emit Open WebUI tool cards.
    pub tool_cards: bool,
}

/// Which tools a policy allows. `None` means no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolSelection {
    /// Allowed servers.
    pub servers: Option<Vec<String>>,
    /// Allowed tools: exposed or original names, `*` globs.
    pub tools: Option<Vec<String>>,
}

/// The policy of models matching `pattern`.
#[derive(Debug, Clone)]
pub struct ModelPolicy {
    /// Model name or `*` glob.
    pub pattern: String,
    /// Tools injected for these models.
    pub selection: ToolSelection,
    /// Whether tools are injected at all.
    pub inject: bool,
    /// Whether the model takes images.
    pub vision: bool,
    /// Most tools sent to this model, when set.
    pub max_tools: Option<usize>,
    /// Most bytes of our tool definitions sent to this model, when set (0: no budget).
    pub max_tool_bytes: Option<usize>,
    /// The loop calls this model through the upstream's Responses API (`api: responses`).
    pub responses_api: bool,
}

/// The most tools one request may carry (OpenAI's limit, the lowest of the providers').
pub const PROVIDER_TOOL_LIMIT: usize = 128;

/// Tool budgets, ranking and the discovery tool.
#[derive(Debug, Clone)]
pub struct SelectionConfig {
    /// Most tools (client's and ours) per request.
    pub max_tools: usize,
    /// Most bytes of our tool definitions per request (`usize::MAX`: no budget).
    pub max_tool_bytes: usize,
    /// Rank even when everything fits.
    pub always_rank: bool,
    /// Tools offered first (globs over exposed names).
    pub always: Vec<String>,
    /// The discovery tool's name; `None` when off.
    pub find_tools: Option<String>,
}
