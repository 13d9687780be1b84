//! One integration test binary: the gateway booted from YAML against real peers on loopback.

mod common;

mod agent;
mod artifacts;
mod auth;
mod builtin;
mod config;
mod errors;
mod lifecycle;
mod mcp;
mod policy;
mod proxy;
mod s3;
mod security;
