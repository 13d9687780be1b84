//! The environment a stdio MCP server starts with: empty, plus an allowlist of the gateway's
//! own variables that programs need to run (search path, home, locale, terminal, temp dir,
//! certificates, proxies, Node/npm and Python package-manager settings), plus the names the
//! server's `inherit_env` adds, plus its own `env`. Nothing else of the gateway's environment
//! — the upstream's master key, inbound keys, the S3 secret, other servers' tokens — reaches a
//! child, as with the official TypeScript and Python MCP SDKs. Even inside the allowlist, a
//! variable whose name says it is a credential (`NODE_AUTH_TOKEN`, `npm_config__authToken`,
//! `UV_PUBLISH_TOKEN` …) or whose value carries `user:password@` (a proxy or index URL) passes
//! only when `inherit_env` names it.

use std::collections::BTreeMap;
use std::ffi::OsString;

/// Variables passed by exact name.
const NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "TMPDIR",
    "TMP",
    "TEMP",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "VIRTUAL_ENV",
];

/// Variables passed by prefix (locale, XDG dirs, Node and npm, uv and pip settings).
const PREFIXES: &[&str] = &["LC_", "XDG_", "NODE_", "NPM_CONFIG_", "npm_config_", "UV_", "PIP_"];

/// Whether `name` matches an `inherit_env` entry (a name, or a prefix ending in `*`).
fn listed(name: &str, inherit: &[String]) -> bool {
    inherit.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == entry,
    })
}

/// Whether a value holds a URL with credentials (`scheme://user:password@host`).
fn has_userinfo(value: &str) -> bool {
    value.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority.contains('@')
    })
}

/// The child's whole environment, from the gateway's `vars`.
pub fn child_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    inherit: &[String],
    own: &BTreeMap<String, String>,
) -> Vec<(OsString, OsString)> {
    let mut out: BTreeMap<OsString, OsString> = vars
        .into_iter()
        .filter(|(name, value)| {
            let Some(n) = name.to_str() else { return false };
            if listed(n, inherit) {
                return true;
            }
            let allowed = NAMES.contains(&n) || PREFIXES.iter().any(|p| n.starts_with(p));
            allowed && !crate::config::secret_name(n) && !has_userinfo(&value.to_string_lossy())
        })
        .collect();
    out.extend(own.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn only_the_allowlist_inherited_names_and_own_env() {
        let gateway = vars(&[
            ("PATH", "/bin"),
            ("LITELLM_MASTER_KEY", "sk-master"),
            ("S3_SECRET_ACCESS_KEY", "s3"),
            ("NODE_OPTIONS", "--no-warnings"),
            ("LC_ALL", "C"),
            ("GITHUB_TOKEN", "gh"),
            ("AWS_REGION", "eu"),
            ("AWS_SECRET", "x"),
            ("NODE_AUTH_TOKEN", "npm-token"),
            ("npm_config__authToken", "npm-token"),
            ("UV_PUBLISH_TOKEN", "uv"),
            ("HTTPS_PROXY", "http://bob:pw@proxy:3128"),
            ("HTTP_PROXY", "http://proxy:3128"),
        ]);
        let own = BTreeMap::from([("DEBUG".to_owned(), "1".to_owned()), ("PATH".to_owned(), "/own".to_owned())]);
        let env = child_env(gateway, &["GITHUB_TOKEN".into(), "AWS_*".into()], &own);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            ["AWS_REGION", "AWS_SECRET", "DEBUG", "GITHUB_TOKEN", "HTTP_PROXY", "LC_ALL", "NODE_OPTIONS", "PATH"],
            "credentials inside the allowlist stay out unless named"
        );
        assert!(env.contains(&(OsString::from("PATH"), OsString::from("/own"))), "the server's own env wins");
    }
}
