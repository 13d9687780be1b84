//! One integration test binary: the gateway booted from YAML against real peers on loopback.
// A test crate: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, clippy::unreachable)]

mod common;

mod agent;
mod approval;
mod artifacts;
mod auth;
mod builtin;
mod catalogs;
mod config;
mod console;
mod deploy;
mod errors;
mod facade;
mod facade_protocol;
mod faults;
mod hub;
mod identity;
mod lifecycle;
mod litellm;
mod logs;
mod loop_edges;
mod mcp;
mod metrics;
mod naming;
mod oauth;
mod parking;
mod per_user;
mod policy;
mod progress;
mod providers;
mod proxy;
mod questions;
mod real_servers;
mod reload;
mod resources;
mod responses;
mod s3;
mod sampling;
mod security;
mod startup;
mod state;
mod tidy;
mod traces;
