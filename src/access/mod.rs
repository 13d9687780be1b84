//! Access: who a request comes from ([`Caller`]) and what it may list and run ([`ToolAccess`]:
//! the key's policy ∩ the model's policy ∩ the request's own controls). The one home of the
//! permission model — every surface (chat, REST, the MCP facade, the proxy, metrics) asks here,
//! and only here are a request's narrowing controls read.
//!
//! | file        | what it holds                                                          |
//! |-------------|------------------------------------------------------------------------|
//! | `caller.rs` | the caller, its route policy, who sees operations data                  |
//! | `policy.rs` | `ToolAccess`, key and model policies, request controls, tool patterns   |

mod caller;
mod policy;

pub use caller::Caller;
pub use policy::{
    KeyPolicy, MCP_SERVERS_HEADER, RequestControls, ToolAccess, client_tool_names, glob, is_background_task,
    model_policy, model_policy_named, narrowing_headers, select, takes_images, tool_names,
};
