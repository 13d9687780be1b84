//! MCP resources across servers. `resources/list` is asked of every server the caller may use,
//! and the lists are merged. A URI only one of those servers lists is kept as it is. A URI that
//! two of them list becomes `mcp-middleware://<server>/<the URI, percent-encoded>`, which a
//! client can send back as it is. Resource templates are merged too (a template two servers
//! share stays the first one's). `resources/read` and `resources/subscribe` are routed back:
//! by the listed URI, else by the first template the URI matches (RFC 6570, levels 1–3).
//! Binary contents pass through unchanged. Listing is bounded like tools are (pages, count).
//! Subscriptions are held with a server once per URI, however many sessions asked.

use std::collections::HashMap;
use std::time::Duration;

use std::sync::Arc;

use rmcp::model::{
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResult, Resource, ResourceTemplate,
    SubscribeRequestParams, UnsubscribeRequestParams,
};

use super::{Hub, McpError, ServerHandle};

/// Most resources taken from one server.
pub const MAX_RESOURCES_PER_SERVER: usize = 2_000;
/// Most `resources/list` pages read from one server.
pub(super) const MAX_PAGES: usize = 100;
/// How the URI of a resource two servers share is made unique.
const SCHEME: &str = "mcp-middleware://";

/// A resource as the gateway exposes it: the server it comes from and the URI to read it by.
#[derive(Debug, Clone)]
pub struct ExposedResource {
    /// The server.
    pub server: String,
    /// The resource, its `uri` as exposed.
    pub resource: Resource,
}

/// Whether a server declared resources (one that did not is not asked: it would only answer
/// with an error).
fn has_resources(peer: &rmcp::Peer<rmcp::RoleClient>) -> bool {
    peer.peer_info().is_none_or(|info| info.capabilities.resources.is_some())
}

/// Every page of a listing, bounded: at most `cap` items from at most [`MAX_PAGES`] pages, each
/// asked within `timeout`. A page the server refuses ends the listing (a server without the
/// feature answers with an error: it has none). The second value says a page timed out.
pub(super) async fn paged<T, F, Fut>(timeout: Duration, cap: usize, mut fetch: F) -> (Vec<T>, bool)
where
    F: FnMut(Option<PaginatedRequestParams>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), rmcp::ServiceError>>,
{
    let mut all = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let params = cursor.take().map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
        let (items, next) = match tokio::time::timeout(timeout, fetch(params)).await {
            Ok(Ok(page)) => page,
            Ok(Err(_)) => break,
            Err(_) => return (all, true),
        };
        let room = cap.saturating_sub(all.len());
        all.extend(items.into_iter().take(room));
        match next {
            Some(next) if !next.is_empty() && all.len() < cap => cursor = Some(next),
            _ => break,
        }
    }
    (all, false)
}

/// A resource template as exposed: the server it comes from, and the template.
#[derive(Debug, Clone)]
pub struct ExposedTemplate {
    /// The server.
    pub server: String,
    /// The template, as the server lists it.
    pub template: ResourceTemplate,
}

impl ServerHandle {
    /// This server's resource templates (every page, bounded); none when it has none.
    async fn list_templates(&self) -> Vec<ResourceTemplate> {
        let Some(peer) = self.live.borrow().peer.clone() else { return Vec::new() };
        if !has_resources(&peer) {
            return Vec::new();
        }
        let _busy = self.in_flight(None);
        let (all, _) = paged(self.config.tool_timeout, MAX_RESOURCES_PER_SERVER, |params| {
            let peer = peer.clone();
            async move { peer.list_resource_templates(params).await.map(|p| (p.resource_templates, p.next_cursor)) }
        })
        .await;
        all
    }

    /// Holds a subscription to `uri` (the server's own) for one more subscriber; the server is
    /// asked only for the first.
    #[allow(deprecated)] // `resources/subscribe` is what handshake-era servers speak.
    pub(super) async fn subscribe(&self, uri: &str) -> Result<(), McpError> {
        // One change at a time: a second subscriber learns the first's outcome, never a count
        // with no subscription behind it.
        let _one_at_a_time = self.subscribing.lock().await;
        let _busy = self.in_flight(None);
        let first = {
            let mut held = self.subscriptions.lock();
            let count = held.entry(uri.to_owned()).or_default();
            *count += 1;
            *count == 1
        };
        if !first {
            return Ok(());
        }
        let peer = self.live.borrow().peer.clone();
        let answer = match peer {
            Some(peer) => {
                let timeout = self.config.tool_timeout;
                match tokio::time::timeout(timeout, peer.subscribe(SubscribeRequestParams::new(uri))).await {
                    Ok(answer) => answer.map_err(|e| self.call_error("resources/subscribe", e)),
                    Err(_) => Err(McpError::Timeout {
                        server: self.name().to_owned(),
                        tool: "resources/subscribe".into(),
                        after: timeout,
                    }),
                }
            }
            None => Err(self.unavailable()),
        };
        if answer.is_err() {
            self.release(uri);
        }
        answer
    }

    /// Lets one subscriber of `uri` go; the server is told when none is left.
    #[allow(deprecated)]
    pub(super) async fn unsubscribe(&self, uri: &str) {
        let _one_at_a_time = self.subscribing.lock().await;
        let _busy = self.in_flight(None);
        if !self.release(uri) {
            return;
        }
        let peer = self.live.borrow().peer.clone();
        if let Some(peer) = peer {
            let timeout = self.config.tool_timeout;
            let _ = tokio::time::timeout(timeout, peer.unsubscribe(UnsubscribeRequestParams::new(uri))).await;
        }
    }

    /// One subscriber of `uri` fewer; whether it was the last.
    fn release(&self, uri: &str) -> bool {
        let mut held = self.subscriptions.lock();
        match held.get_mut(uri) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                held.remove(uri);
                true
            }
            None => false,
        }
    }

    /// Subscribes again, on a new connection, to every URI held (a server forgets them with the
    /// connection it had).
    #[allow(deprecated)]
    pub(super) async fn resubscribe(&self, peer: rmcp::Peer<rmcp::RoleClient>) {
        let _one_at_a_time = self.subscribing.lock().await;
        let held: Vec<String> = self.subscriptions.lock().keys().cloned().collect();
        for uri in held {
            let timeout = self.config.tool_timeout;
            let sent = tokio::time::timeout(timeout, peer.subscribe(SubscribeRequestParams::new(uri.clone()))).await;
            if !matches!(sent, Ok(Ok(_))) {
                tracing::info!(server = %self.name(), uri = %uri, "subscribing again after a reconnection failed");
            }
        }
    }

    /// This server's resources (every page, bounded), from its live connection.
    async fn list_resources(&self) -> Result<Vec<Resource>, McpError> {
        let peer = self.live.borrow().peer.clone().ok_or_else(|| McpError::ServerUnavailable {
            server: self.name().to_owned(),
            reason: "it is not connected".into(),
        })?;
        if !has_resources(&peer) {
            return Ok(Vec::new());
        }
        let _busy = self.in_flight(None);
        let timeout = self.config.tool_timeout;
        let (all, timed_out) = paged(timeout, MAX_RESOURCES_PER_SERVER, |params| {
            let peer = peer.clone();
            async move { peer.list_resources(params).await.map(|p| (p.resources, p.next_cursor)) }
        })
        .await;
        if timed_out {
            return Err(McpError::Timeout {
                server: self.name().to_owned(),
                tool: "resources/list".into(),
                after: timeout,
            });
        }
        Ok(all)
    }

    /// Reads `uri` (the server's own) on this server.
    async fn read_resource(&self, uri: &str) -> Result<ReadResourceResult, McpError> {
        let peer = self.live.borrow().peer.clone().ok_or_else(|| McpError::ServerUnavailable {
            server: self.name().to_owned(),
            reason: "it is not connected".into(),
        })?;
        let timeout = self.config.tool_timeout.max(Duration::from_secs(1));
        let _busy = self.in_flight(None);
        match tokio::time::timeout(timeout, peer.read_resource(ReadResourceRequestParams::new(uri.to_owned()))).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(self.call_error("resources/read", e)),
            Err(_) => {
                Err(McpError::Timeout { server: self.name().to_owned(), tool: "resources/read".into(), after: timeout })
            }
        }
    }
}

impl Hub {
    /// The resources of the servers `may_use` admits, merged (see the module's doc). A server
    /// that cannot list them now is left out.
    pub async fn resources(&self, may_use: impl Fn(&str) -> bool) -> Vec<ExposedResource> {
        let handles: Vec<_> = self.handles().into_iter().filter(|h| may_use(h.name())).collect();
        let lists = futures_util::future::join_all(handles.iter().map(|h| h.list_resources())).await;
        let mut listed: Vec<ExposedResource> = Vec::new();
        for (handle, list) in handles.iter().zip(lists) {
            match list {
                Ok(resources) => listed.extend(
                    resources
                        .into_iter()
                        .map(|resource| ExposedResource { server: handle.name().to_owned(), resource }),
                ),
                Err(e) => tracing::debug!(server = %handle.name(), error = %e.log_text(), "resources/list failed"),
            }
        }
        let mut servers_of: HashMap<String, usize> = HashMap::new();
        for item in &listed {
            *servers_of.entry(item.resource.uri.clone()).or_default() += 1;
        }
        for item in &mut listed {
            if servers_of.get(&item.resource.uri).copied().unwrap_or_default() > 1 {
                let encoded: String = url::form_urlencoded::byte_serialize(item.resource.uri.as_bytes()).collect();
                item.resource.uri = format!("{SCHEME}{}/{encoded}", item.server);
            }
        }
        listed
    }

    /// The resource templates of the servers `may_use` admits, merged.
    pub async fn resource_templates(&self, may_use: impl Fn(&str) -> bool) -> Vec<ExposedTemplate> {
        let handles: Vec<_> = self.handles().into_iter().filter(|h| may_use(h.name())).collect();
        let lists = futures_util::future::join_all(handles.iter().map(|h| h.list_templates())).await;
        let mut taken: HashMap<String, String> = HashMap::new();
        let mut exposed = Vec::new();
        for (handle, templates) in handles.iter().zip(lists) {
            for template in templates {
                if let Some(first) = taken.get(&template.uri_template) {
                    tracing::warn!(server = %handle.name(), other = %first, template = %template.uri_template,
                        "resource templates collide; the first server's is kept");
                    continue;
                }
                taken.insert(template.uri_template.clone(), handle.name().to_owned());
                exposed.push(ExposedTemplate { server: handle.name().to_owned(), template });
            }
        }
        exposed
    }

    /// The server an exposed `uri` belongs to (among those `may_use` admits) and its URI
    /// there; any other URI is [`McpError::UnknownResource`].
    pub async fn route_resource(
        &self,
        uri: &str,
        may_use: impl Fn(&str) -> bool,
    ) -> Result<(Arc<ServerHandle>, String), McpError> {
        let not_found = || McpError::UnknownResource { uri: uri.to_owned() };
        let handle_of = |server: &str| self.handles().into_iter().find(|h| h.name() == server && may_use(h.name()));
        if let Some(rest) = uri.strip_prefix(SCHEME) {
            let (server, encoded) = rest.split_once('/').ok_or_else(not_found)?;
            let original: String = url::form_urlencoded::parse(format!("u={encoded}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .ok_or_else(not_found)?;
            return Ok((handle_of(server).ok_or_else(not_found)?, original));
        }
        let listed = self.resources(&may_use).await;
        if let Some(item) = listed.iter().find(|r| r.resource.uri == uri) {
            return Ok((handle_of(&item.server).ok_or_else(not_found)?, uri.to_owned()));
        }
        let templates = self.resource_templates(&may_use).await;
        let mut servers: Vec<&str> = templates
            .iter()
            .filter(|t| template_matches(&t.template.uri_template, uri))
            .map(|t| t.server.as_str())
            .collect();
        servers.dedup();
        match servers.as_slice() {
            [server] => Ok((handle_of(server).ok_or_else(not_found)?, uri.to_owned())),
            // Two servers' templates take it: the caller names one (a server must not capture
            // what is meant for another).
            [_, _, ..] => Err(McpError::AmbiguousResource {
                uri: uri.to_owned(),
                servers: servers.iter().map(|s| (*s).to_owned()).collect(),
            }),
            [] => Err(not_found()),
        }
    }

    /// Reads an exposed `uri` on the server it came from (only among the servers `may_use`
    /// admits); any other URI is [`McpError::UnknownResource`].
    pub async fn read_resource(
        &self,
        uri: &str,
        may_use: impl Fn(&str) -> bool,
    ) -> Result<ReadResourceResult, McpError> {
        let (handle, original) = self.route_resource(uri, may_use).await?;
        handle.read_resource(&original).await
    }

    /// Subscribes to an exposed `uri` on its server; returns the server and its URI there (to
    /// let go of it with [`unsubscribe`](Self::unsubscribe)).
    pub async fn subscribe(&self, uri: &str, may_use: impl Fn(&str) -> bool) -> Result<(String, String), McpError> {
        let (handle, original) = self.route_resource(uri, may_use).await?;
        handle.subscribe(&original).await?;
        Ok((handle.name().to_owned(), original))
    }

    /// Lets go of one subscription made with [`subscribe`](Self::subscribe).
    pub async fn unsubscribe(&self, server: &str, original: &str) {
        if let Some(handle) = self.handles().into_iter().find(|h| h.name() == server) {
            handle.unsubscribe(original).await;
        }
    }
}

/// Longest URI matched against templates.
const MAX_MATCHED_URI: usize = 8 * 1024;

/// Whether `uri` is one `template` (RFC 6570) can expand to: literal parts match exactly;
/// `{var}` matches characters other than `/`, `?` and `#`; `{+var}` and `{#var}` match
/// anything; `{/…}`, `{.…}` and `{;…}` anything but `?` and `#`; `{?…}` and `{&…}` the rest of
/// a query. Linear in the URI per part (the positions each part can end at, kept as one set);
/// templates over 1 KiB or with more than 16 expressions, and URIs over 8 KiB, match nothing.
pub fn template_matches(template: &str, uri: &str) -> bool {
    if template.len() > 1024 || uri.len() > MAX_MATCHED_URI || template.matches('{').count() > 16 {
        return false;
    }
    let mut parts: Vec<(bool, &str)> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { return false };
        parts.push((false, &rest[..open]));
        parts.push((true, &rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    parts.push((false, rest));
    // `reach[p]`: the parts so far can consume exactly `uri[..p]`.
    let mut reach = vec![false; uri.len() + 1];
    if let Some(start) = reach.first_mut() {
        *start = true;
    }
    for (is_expr, text) in parts {
        let mut next = vec![false; uri.len() + 1];
        if is_expr {
            let stops: &[char] = match text.chars().next() {
                Some('+' | '#') => &[],
                Some('/' | '.' | ';' | '?' | '&') => &['?', '#'],
                _ => &['/', '?', '#'],
            };
            // One scan: a position is reached when some reached position before it is joined
            // to it by characters the expression may take.
            let mut open = false;
            for (at, c) in uri.char_indices().map(|(i, c)| (i, Some(c))).chain(std::iter::once((uri.len(), None))) {
                open |= reach.get(at).copied().unwrap_or(false);
                if let Some(slot) = next.get_mut(at) {
                    *slot = open;
                }
                if c.is_some_and(|c| stops.contains(&c) && !(text.starts_with('?') && c == '?')) {
                    open = false;
                }
            }
        } else {
            for (at, reached) in reach.iter().enumerate() {
                if *reached
                    && uri.get(at..).is_some_and(|tail| tail.starts_with(text))
                    && let Some(slot) = next.get_mut(at + text.len())
                {
                    *slot = true;
                }
            }
        }
        reach = next;
    }
    reach.last().copied().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn templates_match_what_they_expand_to() {
        assert!(template_matches("test://template/{id}/data", "test://template/123/data"));
        assert!(!template_matches("test://template/{id}/data", "test://template/1/2/data"));
        assert!(!template_matches("test://template/{id}/data", "test://other/1/data"));
        assert!(template_matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(template_matches("db://{schema}/{table}", "db://public/users"));
        assert!(template_matches("search://q{?term,page}", "search://q?term=x&page=2"));
        assert!(template_matches("file://{/path}", "file:///a/b"));
        assert!(!template_matches("{a", "x"));
        assert!(!template_matches(&"{x}".repeat(17), "abc"));
        // Open-ended parts in a row stay linear: a long URI that does not match is answered at once.
        let long = format!("search://{}", "a".repeat(8000));
        let started = std::time::Instant::now();
        assert!(!template_matches("search://{+a}{+b}{+c}{+d}{+e}{+f}{+g}{+h}!", &long));
        assert!(started.elapsed() < std::time::Duration::from_millis(200), "{:?}", started.elapsed());
    }
}
