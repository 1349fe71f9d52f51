//! Request routing: which pool serves a request, decided exactly as Go's `net/http.ServeMux`
//! (Go 1.22 and later) picks a handler, since pools come from Go load balancers keyed by
//! `ServeMux` patterns.
//!
//! - Patterns are `[METHOD ][HOST]/[PATH]`: `GET /items/{id}`, `example.com/`,
//!   `/files/{path...}`, `/{$}`. A path ending in `/` matches its subtree. `GET` also matches
//!   `HEAD`; a pattern without a method matches every method.
//! - The most specific pattern wins: one that matches a strict subset of another's requests. A
//!   pattern with a host beats every host-less one for that host. Patterns that would tie are
//!   refused when added ([`Pattern::conflict_with`]), so a lookup never has to choose.
//! - A request whose path matches only patterns of other methods is answered
//!   `405 Method Not Allowed` with an `Allow` header.
//! - A request for `/tree` when only the subtree `/tree/` matches is redirected there, and a
//!   request whose path is not clean (`//`, `/./`, `/../`) to the cleaned path, both with
//!   `307 Temporary Redirect` (as Go 1.27: the method and body survive) and the query kept. A
//!   `Location` is escaped as Go's `url.URL.String` escapes a path, so none names another host
//!   (`/\evil.example/` is `/%5Cevil.example/`).
//!
//! # Layout
//! - `pattern.rs`: the syntax, parsed and refused as Go does.
//! - `conflict.rs`: how two patterns relate: more specific, disjoint, or in conflict, and Go's
//!   account of a conflict.
//! - `tree.rs`: the routing tree (host, then method, then path segments) that finds the most
//!   specific pattern in time independent of the number of pools.
//! - `path.rs`: what a request path goes through first: cleaning, splitting, unescaping.
//! - this file: the [`RoutingTable`] that answers a request with a [`Route`]: match, redirect,
//!   405 or 404.
//!
//! A [`RoutingTable`] is immutable once built: the control plane builds a new one on every
//! change and swaps it in, so lookups take no lock. [`Routes`], a table of pools, is the
//! snapshot the data plane reads.

mod conflict;
mod path;
mod pattern;
mod tree;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

pub use conflict::Conflict;
pub use path::clean_path;
pub use pattern::{Pattern, PatternError};

use path::{lossy, push_escaped, unescape, Rest};
use pattern::Segment;
use tree::Tree;

use crate::pool::Pool;

/// The routing snapshot the data plane reads: every pool by its pattern.
pub type Routes = RoutingTable<Arc<Pool>>;

/// What to answer a request with.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a, T> {
    /// The value of the most specific matching pattern, and the pattern's wildcard values.
    Matched { value: &'a T, params: Params<'a> },
    /// Answer `307 Temporary Redirect` with this `Location` (path and query), escaped and never
    /// starting with `//` or `/\`.
    Redirect(String),
    /// Patterns match the path, but none the method: answer `405` with this `Allow` header
    /// (`GET, HEAD`: methods sorted, comma-separated).
    MethodNotAllowed { allow: String },
    /// No pattern matches.
    NotFound,
}

/// The wildcard values of a match, Go's `Request.PathValue`. Computed when asked, from the
/// matched pattern and the request path, so a lookup allocates nothing for them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Params<'a> {
    pattern: &'a Pattern,
    path: &'a str,
}

impl<'a> Params<'a> {
    /// The pattern that matched.
    pub fn pattern(&self) -> &'a Pattern {
        self.pattern
    }

    /// The value of wildcard `name`, unescaped: `{id}` in `/items/{id}` is `"7"` for
    /// `/items/7`, and `{path...}` in `/files/{path...}` is `"a/b"` for `/files/a/b`.
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Each wildcard's name and value, in pattern order. Values that are not UTF-8 once
    /// unescaped (`%FF`) hold U+FFFD in place of the bad bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> {
        let mut rest = Rest::new(self.path);
        self.pattern.segments().iter().filter_map(move |segment| match segment {
            Segment::Literal(_) => {
                rest = rest.split_first().1;
                None
            }
            Segment::Wild(name) => {
                let (value, next) = rest.split_first();
                rest = next;
                Some((&**name, lossy(unescape(value))))
            }
            Segment::Multi(name) if name.is_empty() => None,
            Segment::Multi(name) => Some((&**name, lossy(unescape(rest.remainder())))),
        })
    }
}

impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// An immutable map from patterns to values (pools), answering [`Route`]s.
#[derive(Debug)]
pub struct RoutingTable<T> {
    entries: Vec<(Pattern, T)>,
    tree: Tree,
}

impl<T> Default for RoutingTable<T> {
    fn default() -> Self {
        RoutingTable { entries: Vec::new(), tree: Tree::default() }
    }
}

/// What the tree says of a method, host and (clean) path, before the clean-path redirect.
enum Lookup {
    Found(usize),
    /// Go's trailing-slash redirect: nothing matches the path exactly, but the path with a `/`
    /// appended matches exactly.
    AddSlash,
    Missing,
}

impl<T> RoutingTable<T> {
    /// Builds a table. The patterns must not conflict (the control plane checks each with
    /// [`Pattern::conflict_with`] before storing it); of two that match the same requests
    /// anyway, the first is kept.
    pub fn new(entries: impl IntoIterator<Item = (Pattern, T)>) -> Self {
        let entries: Vec<(Pattern, T)> = entries.into_iter().collect();
        let mut tree = Tree::default();
        for (id, (pattern, _)) in entries.iter().enumerate() {
            tree.insert(pattern, id);
        }
        RoutingTable { entries, tree }
    }

    /// The value stored for exactly `pattern`. Linear in the number of patterns: for the control
    /// side (a health check reading its pool's settings), never the request path.
    pub fn get(&self, pattern: &Pattern) -> Option<&T> {
        self.entries.iter().find(|(p, _)| p == pattern).map(|(_, value)| value)
    }

    /// Routes a request as Go's `ServeMux.findHandler` does. `host` is as in the `Host` header
    /// (a port is ignored, case too); `path` is the path exactly as the client sent it, still
    /// escaped; `query` (without `?`) is kept on redirects.
    ///
    /// Allocates only to answer something other than a match, or for a host with capitals.
    pub fn route<'a>(&'a self, method: &str, host: &str, path: &'a str, query: Option<&str>) -> Route<'a, T> {
        if method == "CONNECT" {
            // CONNECT's host and path are used as sent: the trailing-slash redirect applies,
            // the cleaning does not.
            let host = lowercase(host);
            return match self.lookup(method, &host, path) {
                Lookup::Found(id) => self.matched(id, path),
                Lookup::AddSlash => Route::Redirect(location(path, "/", query)),
                Lookup::Missing => self.not_found(&host, path),
            };
        }
        let host = lowercase(strip_port(host));
        let cleaned = clean_path(path);
        match self.lookup(method, &host, &cleaned) {
            Lookup::AddSlash => Route::Redirect(location(&cleaned, "/", query)),
            _ if cleaned != path => Route::Redirect(location(&cleaned, "", query)),
            Lookup::Found(id) => self.matched(id, path),
            Lookup::Missing => self.not_found(&host, path),
        }
    }

    /// Go's `matchOrRedirect`.
    fn lookup(&self, method: &str, host: &str, path: &str) -> Lookup {
        let found = self.tree.find(host, method, Rest::new(path));
        let exact = found.is_some_and(|id| self.is_exact(id, path, false));
        if !exact && !path.is_empty() && !path.ends_with('/') {
            let slashed = self.tree.find(host, method, Rest::with_slash(path));
            if slashed.is_some_and(|id| self.is_exact(id, path, true)) {
                return Lookup::AddSlash;
            }
        }
        found.map_or(Lookup::Missing, Lookup::Found)
    }

    /// Go's `exactMatch`: whether pattern `id` matches `path` (plus a `/` when `slash`) without
    /// a trailing `/` or `{name...}` taking a non-empty rest. `/a/` matches `/a/` exactly but
    /// `/a/b` inexactly, so `/a/b` may still be redirected to `/a/b/`.
    fn is_exact(&self, id: usize, path: &str, slash: bool) -> bool {
        let pattern = &self.entries[id].0;
        if !pattern.is_subtree() {
            return true;
        }
        if !slash && !path.is_empty() && !path.ends_with('/') {
            return false;
        }
        let slashes = path.bytes().filter(|&b| b == b'/').count() + usize::from(slash);
        pattern.segments().len() == slashes
    }

    fn matched<'a>(&'a self, id: usize, path: &'a str) -> Route<'a, T> {
        let (pattern, value) = &self.entries[id];
        Route::Matched { value, params: Params { pattern, path } }
    }

    /// `405` when patterns of other methods match the path (or the path with a `/`, which
    /// would have been redirected), else `404`.
    fn not_found(&self, host: &str, path: &str) -> Route<'_, T> {
        let mut methods = Vec::new();
        self.tree.matching_methods(host, Rest::new(path), &mut methods);
        if !path.ends_with('/') {
            self.tree.matching_methods(host, Rest::with_slash(path), &mut methods);
        }
        if methods.is_empty() {
            return Route::NotFound;
        }
        methods.sort_unstable();
        methods.dedup();
        Route::MethodNotAllowed { allow: methods.join(", ") }
    }
}

/// A redirect's `Location`: `path`, then `suffix`, then the query if there is one (Go drops an
/// empty `?`). The path is escaped as Go's `url.URL.String` escapes it ([`push_escaped`]), so
/// a browser reads it as a path on the same host, never as `//host`.
fn location(path: &str, suffix: &str, query: Option<&str>) -> String {
    let query = query.filter(|q| !q.is_empty());
    let mut location = String::with_capacity(path.len() + suffix.len() + 2 + query.map_or(0, |q| q.len() + 1));
    if path.starts_with("//") {
        // Go's `URL.String`: a path with no host must not start with `//`.
        location.push_str("/.");
    }
    push_escaped(&mut location, path);
    location.push_str(suffix);
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    location
}

/// Hosts compare in lower case; borrowed when already so, which is the common case.
fn lowercase(host: &str) -> Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    }
}

/// Go's `stripHostPort`: `host` without its `:port`, split as `net.SplitHostPort` splits it;
/// a host it cannot split is kept whole. So `[::1]:80` is `::1` (the pattern for it is
/// `::1/`), while `[::1]` without a port stays `[::1]`.
fn strip_port(host: &str) -> &str {
    let Some(colon) = host.rfind(':') else {
        return host;
    };
    match host.strip_prefix('[') {
        // `[name]:port`, the `]` right before the last `:`, no other bracket.
        Some(inner) => match inner.split_once(']') {
            Some((name, rest)) if name.len() + 2 == colon && !inner.contains('[') && !rest.contains(']') => name,
            _ => host,
        },
        // `name:port`, a single `:` and no bracket.
        None if host[..colon].contains(':') || host.contains(['[', ']']) => host,
        None => &host[..colon],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(patterns: &[&str]) -> RoutingTable<String> {
        RoutingTable::new(patterns.iter().map(|p| (Pattern::parse(p).unwrap(), p.to_string())))
    }

    /// A route in a few words, to compare whole tables of them: the matched pattern's text,
    /// `307 <location>`, `405 <allow>` or `404`.
    fn answer(t: &RoutingTable<String>, method: &str, host: &str, target: &str) -> String {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        match t.route(method, host, path, query) {
            Route::Matched { value, .. } => value.clone(),
            Route::Redirect(location) => format!("307 {location}"),
            Route::MethodNotAllowed { allow } => format!("405 {allow}"),
            Route::NotFound => "404".to_owned(),
        }
    }

    fn check(t: &RoutingTable<String>, cases: &[(&str, &str, &str, &str)]) {
        for &(method, host, target, want) in cases {
            assert_eq!(answer(t, method, host, target), want, "{method} {host}{target}");
        }
    }

    /// The examples of Go's `ServeMux` documentation and of the Go 1.22 release notes.
    #[test]
    fn go_documented_examples() {
        let t = table(&[
            "/index.html",
            "GET /static/",
            "example.com/",
            "example.com/{$}",
            "/b/{bucket}/o/{objectname...}",
            "/images/",
            "/images/thumbnails/",
            "POST /items/create",
            "/items/{id}",
            "/files/{path...}",
            "/exact/match/{$}",
            "/a%2fb/",
        ]);
        check(
            &t,
            &[
                ("PUT", "any.host", "/index.html", "/index.html"),
                ("GET", "any.host", "/static/app.js", "GET /static/"),
                ("HEAD", "any.host", "/static/app.js", "GET /static/"),
                ("POST", "any.host", "/static/app.js", "405 GET, HEAD"),
                ("GET", "example.com", "/", "example.com/{$}"),
                ("GET", "example.com", "/anything", "example.com/"),
                ("GET", "example.com", "/index.html", "example.com/"),
                ("GET", "h", "/b/bkt/o/dir/obj", "/b/{bucket}/o/{objectname...}"),
                ("GET", "h", "/b/bkt/x/obj", "404"),
                ("GET", "h", "/images/thumbnails/a.png", "/images/thumbnails/"),
                ("GET", "h", "/images/a.png", "/images/"),
                ("GET", "h", "/images", "307 /images/"),
                ("POST", "h", "/items/create", "POST /items/create"),
                ("GET", "h", "/items/create", "/items/{id}"),
                ("GET", "h", "/items/7", "/items/{id}"),
                ("GET", "h", "/files/a/b/c", "/files/{path...}"),
                ("GET", "h", "/exact/match/", "/exact/match/{$}"),
                ("GET", "h", "/exact/match/more", "404"),
                // "/a%2Fb/100%25" has two segments, "a/b" and "100%".
                ("GET", "h", "/a%2Fb/100%25", "/a%2fb/"),
                ("GET", "h", "/a/b/100%25", "404"),
            ],
        );
    }

    /// Wildcard values, from the `wantMatches` of Go's `TestRoutingNodeMatch`
    /// (routing_tree_test.go): `{x}` takes a segment, `{x...}` the rest, unescaped.
    #[test]
    fn wildcard_values_like_go() {
        let t = table(&[
            "/a/{x}",
            "/g/{x}/j",
            "/a/b/{x...}",
            "/a/b/{y}",
            "/item/{user}/{id}",
            "/item/{user}/new",
            "/item/{$}",
            "/item/",
            "/path/{p...}",
            "/esc/{e}/{rest...}",
        ]);
        for (path, want) in [
            ("/a/c", &[("x", "c")][..]),
            ("/g/h/j", &[("x", "h")]),
            ("/a/b/c", &[("y", "c")]),
            ("/a/b/c/d", &[("x", "c/d")]),
            ("/a/b/", &[("x", "")]),
            ("/item/jba/17", &[("user", "jba"), ("id", "17")]),
            ("/item/jba/new", &[("user", "jba")]),
            ("/item/", &[]),
            ("/item/jba/17/line2", &[]),
            ("/path/to/file", &[("p", "to/file")]),
            ("/path/*", &[("p", "*")]),
            ("/esc/a%2Fb/c%20d/e%2Ff", &[("e", "a/b"), ("rest", "c d/e/f")]),
            ("/esc/%FF/x", &[("e", "\u{FFFD}"), ("rest", "x")]),
        ] {
            let Route::Matched { params, .. } = t.route("GET", "h", path, None) else {
                panic!("{path} did not match");
            };
            let got: Vec<(&str, String)> = params.iter().map(|(n, v)| (n, v.into_owned())).collect();
            let want: Vec<(&str, String)> = want.iter().map(|&(n, v)| (n, v.to_owned())).collect();
            assert_eq!(got, want, "{path}");
        }
        let Route::Matched { params, .. } = t.route("GET", "h", "/item/jba/17", None) else {
            panic!("no match");
        };
        assert_eq!(params.pattern().to_string(), "/item/{user}/{id}");
        assert_eq!(params.get("id").as_deref(), Some("17"));
        assert_eq!(params.get("nope"), None);
        assert!(matches!(params.get("user"), Some(Cow::Borrowed("jba"))));
    }

    /// Go's `serveMuxRegister` and `serveMuxTests` (serve_test.go), with Go 1.27's 307.
    #[test]
    fn serve_mux_tests_like_go() {
        let t = table(&[
            "/dir/",
            "/search",
            "codesearch.google.com/search",
            "codesearch.google.com/",
            "example.com/",
            "/pkg/bar/extra%2fpath",
        ]);
        check(
            &t,
            &[
                ("GET", "google.com", "/", "404"),
                ("GET", "google.com", "/dir", "307 /dir/"),
                ("GET", "google.com", "/dir/", "/dir/"),
                ("GET", "google.com", "/dir/file", "/dir/"),
                ("GET", "google.com", "/search", "/search"),
                ("GET", "google.com", "/search/", "404"),
                ("GET", "google.com", "/search/foo", "404"),
                ("GET", "codesearch.google.com", "/search", "codesearch.google.com/search"),
                ("GET", "codesearch.google.com", "/search/", "codesearch.google.com/"),
                ("GET", "codesearch.google.com", "/search/foo", "codesearch.google.com/"),
                ("GET", "codesearch.google.com", "/", "codesearch.google.com/"),
                ("GET", "codesearch.google.com:443", "/", "codesearch.google.com/"),
                ("GET", "images.google.com", "/search", "/search"),
                ("GET", "images.google.com", "/search/", "404"),
                ("GET", "images.google.com", "/search/foo", "404"),
                ("GET", "google.com", "/../search", "307 /search"),
                ("GET", "google.com", "/dir/..", "307 /"),
                ("GET", "google.com", "/dir/./file", "307 /dir/file"),
                // The /foo -> /foo/ redirect applies to CONNECT requests, but the path
                // canonicalization does not.
                ("CONNECT", "google.com", "/dir", "307 /dir/"),
                ("CONNECT", "google.com", "/../search", "404"),
                ("CONNECT", "google.com", "/dir/..", "/dir/"),
                ("CONNECT", "google.com", "/dir/./file", "/dir/"),
                // serveMuxTests2: redirects keep the query, at most one redirect each.
                ("GET", "example.com", "/test/?example.com/test/", "example.com/"),
                ("GET", "google.com", "/pkg/bar//extra%2fpath", "307 /pkg/bar/extra%2fpath"),
                ("GET", "google.com", "/pkg/bar/extra%2fpath", "/pkg/bar/extra%2fpath"),
                ("GET", "google.com", "/dir/b%2fc/..", "307 /dir/"),
                ("GET", "google.com", "/doesnotexist/b%2fc/..", "307 /doesnotexist"),
                ("GET", "google.com", "/doesnotexist", "404"),
            ],
        );
    }

    /// Go's `TestFindHandler` (server_test.go).
    #[test]
    fn find_handler_like_go() {
        let t = table(&["/", "/foo/", "/foo", "/bar/", "//foo"]);
        check(
            &t,
            &[
                ("GET", "example.com", "/", "/"),
                ("GET", "example.com", "//", "307 /"),
                ("GET", "example.com", "/foo/../bar/./..//baz", "307 /baz"),
                ("GET", "example.com", "/foo", "/foo"),
                ("GET", "example.com", "/foo/x", "/foo/"),
                ("GET", "example.com", "/bar/x", "/bar/"),
                ("GET", "example.com", "/bar", "307 /bar/"),
                ("CONNECT", "example.com", "", "404"),
                ("CONNECT", "example.com", "/", "/"),
                ("CONNECT", "example.com", "//", "/"),
                ("CONNECT", "example.com", "//foo", "//foo"),
                ("CONNECT", "example.com", "/foo/../bar/./..//baz", "/foo/"),
                ("CONNECT", "example.com", "/foo", "/foo"),
                ("CONNECT", "example.com", "/foo/x", "/foo/"),
                ("CONNECT", "example.com", "/bar/x", "/bar/"),
                ("CONNECT", "example.com", "/bar", "307 /bar/"),
            ],
        );
        assert_eq!(answer(&table(&[]), "GET", "example.com", "/"), "404");
    }

    /// Go's `TestServeWithSlashRedirectForHostPatterns` (serve_test.go), and the `handlers` /
    /// `vtests` of `TestHostHandlers`.
    #[test]
    fn slash_redirects_for_host_patterns_like_go() {
        let t = table(&[
            "example.com/pkg/foo/",
            "example.com/pkg/bar",
            "example.com/pkg/bar/",
            "example.com:3000/pkg/connect/",
            "example.com:9000/",
            "/pkg/baz/",
            "example.com/a%2fb/",
        ]);
        check(
            &t,
            &[
                ("GET", "example.com", "/", "404"),
                ("GET", "example.com", "/pkg/foo", "307 /pkg/foo/"),
                ("GET", "example.com", "/pkg/bar", "example.com/pkg/bar"),
                ("GET", "example.com", "/pkg/bar/", "example.com/pkg/bar/"),
                ("GET", "example.com", "/pkg/baz", "307 /pkg/baz/"),
                ("GET", "example.com:3000", "/pkg/foo", "307 /pkg/foo/"),
                ("CONNECT", "example.com", "/", "404"),
                ("CONNECT", "example.com:3000", "/", "404"),
                ("CONNECT", "example.com:9000", "/", "example.com:9000/"),
                ("CONNECT", "example.com", "/pkg/foo", "307 /pkg/foo/"),
                ("CONNECT", "example.com:3000", "/pkg/foo", "404"),
                ("CONNECT", "example.com:3000", "/pkg/baz", "307 /pkg/baz/"),
                ("CONNECT", "example.com:3000", "/pkg/connect", "307 /pkg/connect/"),
                ("GET", "example.com", "/a%2fb", "307 /a%2fb/"),
            ],
        );

        let t = table(&["/", "/someDir/", "/#/", "someHost.com/someDir/"]);
        check(
            &t,
            &[
                ("GET", "localhost", "/someDir/apage", "/someDir/"),
                ("GET", "localhost", "/%23/apage", "/#/"),
                ("GET", "localhost", "/otherDir/apage", "/"),
                ("GET", "someHost.com", "/someDir/apage", "someHost.com/someDir/"),
                ("GET", "otherHost.com", "/someDir/apage", "/someDir/"),
                ("GET", "otherHost.com", "/aDir/apage", "/"),
                ("GET", "localhost", "/someDir", "307 /someDir/"),
                ("GET", "localhost", "/%23", "307 /%23/"),
                ("GET", "someHost.com", "/someDir", "307 /someDir/"),
            ],
        );
    }

    /// Go's `TestServeWithSlashRedirectKeepsQueryString` and `TestMuxRedirectLeadingSlashes`
    /// (serve_test.go): redirects keep the query (an empty one is dropped).
    #[test]
    fn redirects_keep_the_query_like_go() {
        let t = table(&["/testOne", "/testTwo/", "/testThree", "/testThree/"]);
        check(
            &t,
            &[
                ("GET", "h", "/testOne?this=that", "/testOne"),
                ("GET", "h", "/testTwo?foo=bar", "307 /testTwo/?foo=bar"),
                ("GET", "h", "/testTwo?a=1&b=2&a=3", "307 /testTwo/?a=1&b=2&a=3"),
                ("GET", "h", "/testTwo?", "307 /testTwo/"),
                ("GET", "h", "/testThree?foo", "/testThree"),
                ("GET", "h", "/testThree/?foo", "/testThree/"),
                ("CONNECT", "h", "/testThree?foo", "/testThree"),
                ("CONNECT", "h", "/testThree/?foo", "/testThree/"),
                ("GET", "h", "/testOne/foo/..?foo", "307 /testOne?foo"),
                ("CONNECT", "h", "/testOne/foo/..?foo", "404"),
            ],
        );
        let empty = table(&[]);
        for path in ["//foo.txt", "///foo.txt", "/../../foo.txt"] {
            assert_eq!(answer(&empty, "GET", "test", path), "307 /foo.txt", "{path}");
        }
    }

    /// Go's `TestExactMatch` (server_test.go), through the trailing-slash redirect it decides:
    /// an inexact match (`/` for `/a`) still lets `/a` go to `/a/`, an exact one does not.
    #[test]
    fn exact_matches_like_go() {
        for (patterns, path, want) in [
            (&["/", "/a/"][..], "/a", "307 /a/"),
            (&["/a", "/a/"], "/a", "/a"),
            (&["/a/{x...}", "/a/b/"], "/a/b", "307 /a/b/"),
            (&["/a/{x}", "/a/b/"], "/a/b", "/a/{x}"),
            (&["/a/b/"], "/a/b/", "/a/b/"),
            (&["/a/b/{$}"], "/a/b", "307 /a/b/"),
            (&["/a/"], "/a/b", "/a/"),
            (&["/{x}/"], "/", "404"),
        ] {
            assert_eq!(answer(&table(patterns), "GET", "h", path), want, "{patterns:?} {path}");
        }
    }

    /// 405 with `Allow`, as Go's `findHandler` and `matchingMethods` answer it, including
    /// issue 67657 (no 405 through an extra slash on a path that already ends in one).
    #[test]
    fn method_not_allowed_like_go() {
        let t = table(&[
            "GET /items/{id}",
            "DELETE /items/{id}",
            "POST /items/",
            "PUT shop.example/items/{id}",
            "POST /upload/",
            "GET /{x}/",
        ]);
        check(
            &t,
            &[
                ("GET", "h", "/items/7", "GET /items/{id}"),
                ("HEAD", "h", "/items/7", "GET /items/{id}"),
                ("PATCH", "h", "/items/7", "405 DELETE, GET, HEAD, POST"),
                ("PATCH", "shop.example", "/items/7", "405 DELETE, GET, HEAD, POST, PUT"),
                // `/items` would be redirected to `/items/` for these methods.
                ("PATCH", "other.example", "/items", "405 GET, HEAD, POST"),
                ("PUT", "h", "/upload", "405 GET, HEAD, POST"),
                // The trailing-slash redirect asks the request's own method.
                ("POST", "h", "/upload", "307 /upload/"),
                ("GET", "h", "/upload", "307 /upload/"),
                ("GET", "h", "/", "404"),
                ("get", "h", "/items/7", "405 DELETE, GET, HEAD, POST"),
            ],
        );
    }

    /// Issue 65624 (serve_test.go `TestMuxNoSlashRedirectWithTrailingSlash`): no redirect for
    /// a path that already ends in `/`. The precedence of hosts and methods: a host pattern
    /// wins for its host only, falling back to host-less patterns when it does not match.
    #[test]
    fn hosts_and_precedence() {
        let t = table(&["/", "/api/", "example.com/", "GET /web/", "other.com/only"]);
        check(
            &t,
            &[
                ("GET", "example.com", "/api/x", "example.com/"),
                ("GET", "EXAMPLE.com:8080", "/", "example.com/"),
                ("GET", "other.com", "/api/x", "/api/"),
                ("GET", "other.com", "/only", "other.com/only"),
                ("GET", "other.com", "/x", "/"),
                ("GET", "h", "/web/x", "GET /web/"),
                ("POST", "h", "/web/x", "/"),
            ],
        );
        assert_eq!(answer(&table(&["/{x}/"]), "GET", "h", "/"), "404");
    }

    /// Go's `stripHostPort`, that is `net.SplitHostPort`, keeping what it cannot split.
    #[test]
    fn strip_port_like_go() {
        for (host, want) in [
            ("a.com", "a.com"),
            ("a.com:80", "a.com"),
            ("a.com:", "a.com"),
            ("[::1]:80", "::1"),
            ("[::1]", "[::1]"),
            ("::1", "::1"),
            ("a:b:80", "a:b:80"),
            ("[::1]x:80", "[::1]x:80"),
            ("[a]]:80", "[a]]:80"),
            ("a[b]:80", "a[b]:80"),
            ("[a]:8[0", "[a]:8[0"),
            ("[a:b]:80", "a:b"),
        ] {
            assert_eq!(strip_port(host), want, "{host}");
        }
    }
}
