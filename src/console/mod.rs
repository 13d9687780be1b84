//! The web console's domain, without HTTP: who is signed in ([`session`]), the audit trail of
//! tool calls behind the Activity page ([`audit`]), and forms made from tool input schemas
//! ([`form`]). Its pages and routes are in `http::ui`; what waits for a person is listed by
//! [`crate::agent::park::Parking::waiting_for`].

pub mod audit;
pub mod form;
pub mod session;
