//! The agent: one chat request end to end (`chat.rs`: which MCP tools it gets, its history, a
//! pass-through or the loop), the loop that runs the tools, and the conversions between MCP
//! results, OpenAI messages and Open WebUI's tool cards; `park.rs` keeps a loop that waits for
//! a person (approval, an account to connect) until their next message resumes it.
//!
//! `agent/` produces values and streams of events; it knows nothing of axum. `http/` turns
//! them into JSON or SSE.

pub(crate) mod calls;
pub(crate) mod cards;
mod chat;
mod facade;
mod held;
mod history;
mod inputs;
mod invoke;
mod large;
pub mod park;
mod relay;
mod results;
pub mod round;
mod run;
pub mod sampling;
pub mod selection;
mod sink;
mod tool_loop;

pub use crate::access::{
    KeyPolicy, MCP_SERVERS_HEADER, RequestControls, ToolAccess, client_tool_names, glob, is_background_task,
    model_policy, narrowing_headers, select, takes_images,
};
pub use calls::ToolRun;
pub use cards::CardSigner;
pub use chat::{ChatError, ChatInput, ChatReply, Planned};
pub use facade::Facade;
pub use history::{cards_to_text, carries_cards, expand_tool_cards};
pub use invoke::{AuditRecord, AuditSink, Authorized, ChatRecord, Invocation, Invoker};
pub use results::{ToolOutput, cut_to_budget, to_tool_output};
pub use run::{Agent, ChatJob, ResumeRequest, Start};
pub use sink::{Gathered, Outcome, ResponseIdentity, Sink, TOOL_RUNS_EVENT};
pub use tool_loop::{LoopState, RoundResult, Step, ToolLoop};
