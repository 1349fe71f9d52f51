//! Request routing: which pool serves a request, by the rules of Go's `net/http.ServeMux` up to
//! Go 1.21.
//!
//! - A pattern ending in `/` matches its whole subtree; any other pattern only its own path.
//! - The longest matching pattern wins.
//! - A pattern with a host (`example.com/`) applies to that host only, and wins over every
//!   host-less pattern for it.
//! - A request for `/tree` when only `/tree/` is registered is redirected there (`301`), and so
//!   is a request whose path is not clean (`//`, `/./`, `/../`), to the cleaned path.
//!
//! A [`RoutingTable`] is immutable once built: the control plane builds a new one on every change
//! and swaps it in, so lookups take no lock.

mod pattern;

use std::collections::HashMap;

pub use pattern::{Pattern, PatternError};

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a, T> {
    /// The value of the pattern that matched.
    Matched(&'a T),
    /// Answer `301 Moved Permanently` with this `Location` (path and query).
    Redirect(String),
    /// No pattern matches.
    NotFound,
}

/// Patterns of one host (or of every host), Go's `m` and `es`.
#[derive(Debug)]
struct Patterns<T> {
    /// Every pattern by path, subtrees included: exact matches and the `/tree` redirect check.
    all: HashMap<String, T>,
    /// Subtree patterns, longest first.
    subtrees: Vec<String>,
}

impl<T> Default for Patterns<T> {
    fn default() -> Self {
        Patterns {
            all: HashMap::new(),
            subtrees: Vec::new(),
        }
    }
}

impl<T> Patterns<T> {
    fn find(&self, path: &str) -> Option<&T> {
        if let Some(v) = self.all.get(path) {
            return Some(v);
        }
        self.subtrees
            .iter()
            .find(|s| path.starts_with(s.as_str()))
            .map(|s| &self.all[s])
    }
}

/// An immutable map from patterns to values (pools), answering [`Route`]s.
#[derive(Debug)]
pub struct RoutingTable<T> {
    any_host: Patterns<T>,
    by_host: HashMap<String, Patterns<T>>,
}

impl<T> Default for RoutingTable<T> {
    fn default() -> Self {
        RoutingTable {
            any_host: Patterns::default(),
            by_host: HashMap::new(),
        }
    }
}

impl<T> RoutingTable<T> {
    /// Builds a table; the caller guarantees patterns are distinct (the store's keys are).
    pub fn new(entries: impl IntoIterator<Item = (Pattern, T)>) -> Self {
        let mut table = RoutingTable::default();
        for (pattern, value) in entries {
            let patterns = if pattern.host().is_empty() {
                &mut table.any_host
            } else {
                table.by_host.entry(pattern.host().to_owned()).or_default()
            };
            if pattern.is_subtree() {
                patterns.subtrees.push(pattern.path().to_owned());
            }
            patterns.all.insert(pattern.path().to_owned(), value);
        }
        for patterns in std::iter::once(&mut table.any_host).chain(table.by_host.values_mut()) {
            patterns
                .subtrees
                .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        }
        table
    }

    /// Routes a request for `host` (as in the `Host` header, port allowed) and `path`, with the
    /// raw `query` (without `?`) kept on redirects.
    pub fn route(&self, host: &str, path: &str, query: Option<&str>) -> Route<'_, T> {
        let host = strip_port(host);
        let host_patterns = if self.by_host.is_empty() {
            None
        } else if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_host.get(&host.to_ascii_lowercase())
        } else {
            self.by_host.get(host)
        };
        let cleaned = clean_path(path);
        if self.needs_slash(host_patterns, &cleaned) {
            return Route::Redirect(with_query(format!("{cleaned}/"), query));
        }
        if cleaned != path {
            return Route::Redirect(with_query(cleaned.into_owned(), query));
        }
        match host_patterns
            .and_then(|p| p.find(path))
            .or_else(|| self.any_host.find(path))
        {
            Some(value) => Route::Matched(value),
            None => Route::NotFound,
        }
    }

    /// Go's `shouldRedirectRLocked`: `/tree` is unknown but `/tree/` is registered.
    fn needs_slash(&self, host_patterns: Option<&Patterns<T>>, path: &str) -> bool {
        let tables = || {
            host_patterns
                .into_iter()
                .chain(std::iter::once(&self.any_host))
        };
        if path.ends_with('/') || tables().any(|p| p.all.contains_key(path)) {
            return false;
        }
        let mut slashed = String::with_capacity(path.len() + 1);
        slashed.push_str(path);
        slashed.push('/');
        tables().any(|p| p.all.contains_key(&slashed))
    }
}

fn with_query(mut location: String, query: Option<&str>) -> String {
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    location
}

/// `host` without a `:port` suffix (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// Go's `cleanPath`: the canonical path, with `.` and `..` resolved and repeated slashes
/// collapsed, keeping a trailing slash. Borrowed when already clean, which is the common case.
pub fn clean_path(path: &str) -> std::borrow::Cow<'_, str> {
    let is_clean = path.starts_with('/')
        && !path.contains("//")
        && !path.split('/').any(|seg| seg == "." || seg == "..");
    if is_clean {
        return path.into();
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || (path.ends_with('/') && !out.ends_with('/')) {
        out.push('/');
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(patterns: &[&str]) -> RoutingTable<String> {
        RoutingTable::new(
            patterns
                .iter()
                .map(|p| (Pattern::parse(p).unwrap(), p.to_string())),
        )
    }

    fn matched(t: &RoutingTable<String>, host: &str, path: &str) -> Option<String> {
        match t.route(host, path, None) {
            Route::Matched(p) => Some(p.clone()),
            Route::NotFound => None,
            Route::Redirect(to) => panic!("{host}{path} redirected to {to}"),
        }
    }

    #[test]
    fn longest_subtree_wins_and_exact_paths_are_exact() {
        let t = table(&["/", "/api/", "/api/v2/", "/exact"]);
        for (path, want) in [
            ("/", "/"),
            ("/other", "/"),
            ("/api/", "/api/"),
            ("/api/users", "/api/"),
            ("/api/v2/x/y", "/api/v2/"),
            ("/exact", "/exact"),
            ("/exact/more", "/"),
            ("/exactly", "/"),
        ] {
            assert_eq!(matched(&t, "h", path).as_deref(), Some(want), "{path}");
        }
    }

    #[test]
    fn host_patterns_win_for_their_host_only() {
        let t = table(&["/", "/api/", "example.com/"]);
        assert_eq!(
            matched(&t, "example.com", "/api/x").as_deref(),
            Some("example.com/")
        );
        assert_eq!(
            matched(&t, "EXAMPLE.com:8080", "/").as_deref(),
            Some("example.com/")
        );
        assert_eq!(matched(&t, "other.com", "/api/x").as_deref(), Some("/api/"));
        // A host pattern that does not match the path falls back to host-less ones.
        let t = table(&["/", "example.com/only"]);
        assert_eq!(matched(&t, "example.com", "/x").as_deref(), Some("/"));
    }

    #[test]
    fn no_match_is_not_found() {
        let t = table(&["/api/", "example.com/"]);
        assert_eq!(matched(&t, "h", "/web"), None);
        assert_eq!(matched(&table(&[]), "h", "/"), None);
    }

    #[test]
    fn tree_redirects_to_subtree_with_query() {
        let t = table(&["/tree/", "example.com/h/"]);
        assert_eq!(
            t.route("h", "/tree", Some("a=1")),
            Route::Redirect("/tree/?a=1".into())
        );
        assert_eq!(
            t.route("example.com", "/h", None),
            Route::Redirect("/h/".into())
        );
        assert_eq!(t.route("other", "/h", None), Route::NotFound);
        // Not when /tree itself is registered.
        let t = table(&["/tree/", "/tree"]);
        assert_eq!(matched(&t, "h", "/tree").as_deref(), Some("/tree"));
    }

    #[test]
    fn unclean_paths_redirect_to_the_clean_one() {
        let t = table(&["/"]);
        assert_eq!(t.route("h", "//a", None), Route::Redirect("/a".into()));
        assert_eq!(
            t.route("h", "/a/./b/../c/", Some("q")),
            Route::Redirect("/a/c/?q".into())
        );
    }

    #[test]
    fn clean_path_matches_go() {
        for (input, want) in [
            ("/", "/"),
            ("", "/"),
            ("a", "/a"),
            ("/a//b", "/a/b"),
            ("/a/./b/", "/a/b/"),
            ("/a/../b", "/b"),
            ("/..", "/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a"),
            ("/a/.", "/a"),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
    }

    #[test]
    fn strip_port_keeps_ipv6() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
