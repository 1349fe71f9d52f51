//! The routing tree: Go's `routingNode`. The first level branches on the host, the second on
//! the method, the rest on successive path segments, so a lookup costs a few map probes per
//! segment of the request, however many patterns there are.
//!
//! "Most specific wins" falls out of the order a node tries its children in: a literal
//! segment, then a `{name}` wildcard, then a `{name...}` one, backtracking when a branch comes
//! to nothing. That order is right only because conflicting patterns are refused when added:
//! whatever a literal branch matches is more specific than what a wildcard branch would.

use std::collections::HashMap;

use super::path::{unescape, Rest};
use super::pattern::{Pattern, Segment};

/// Patterns by host, then method, then path. Leaves hold the index of their pattern in the
/// routing table.
#[derive(Debug, Default)]
pub(super) struct Tree {
    hosts: HashMap<Box<str>, Methods>,
    any_host: Methods,
}

/// The patterns of one host (or of every host), by method.
#[derive(Debug, Default)]
struct Methods {
    /// Few methods are ever named, so a list beats a map.
    named: Vec<(Box<str>, Node)>,
    any: Node,
}

/// One position in the path of every pattern that shares the segments leading to it.
#[derive(Debug, Default)]
struct Node {
    /// The pattern whose path ends here.
    leaf: Option<usize>,
    literals: Children,
    /// Where patterns with a `{name}` here continue.
    wild: Option<Box<Node>>,
    /// The pattern with a `{name...}` or trailing `/` here; it takes the rest of the path.
    multi: Option<usize>,
}

/// Go's `mapping`: a list while there are few children, a map beyond.
#[derive(Debug)]
enum Children {
    Few(Vec<(Box<[u8]>, Node)>),
    Many(HashMap<Box<[u8]>, Node>),
}

/// Go's `maxSlice`: above this many children, a hash lookup beats comparing each key.
const FEW: usize = 8;

impl Tree {
    /// Adds `pattern` as leaf `id`. Of two patterns matching the same requests (which the
    /// conflict check keeps out of a live table), the first added stays.
    pub(super) fn insert(&mut self, pattern: &Pattern, id: usize) {
        let methods = if pattern.host().is_empty() {
            &mut self.any_host
        } else {
            self.hosts.entry(pattern.host().into()).or_default()
        };
        let node = if pattern.method().is_empty() {
            &mut methods.any
        } else {
            let method = pattern.method();
            match methods.named.iter().position(|(m, _)| &**m == method) {
                Some(i) => &mut methods.named[i].1,
                None => {
                    methods.named.push((method.into(), Node::default()));
                    &mut methods.named.last_mut().expect("just pushed").1
                }
            }
        };
        node.insert(pattern.segments(), id);
    }

    /// Go's `routingNode.match`: the most specific pattern matching the request, if any. A
    /// pattern with the request's host wins; host-less patterns are tried when none matches.
    /// `host` is lowercased and without port.
    pub(super) fn find(&self, host: &str, method: &str, path: Rest<'_>) -> Option<usize> {
        if !host.is_empty() {
            if let Some(found) = self.hosts.get(host).and_then(|m| m.find(method, path)) {
                return Some(found);
            }
        }
        self.any_host.find(method, path)
    }

    /// Go's `matchingMethods`: adds to `into` each method named by a pattern that would match
    /// the request with that method, and `HEAD` with `GET`. For `405 Method Not Allowed`, so
    /// off the hot path; `into` may end up with duplicates.
    pub(super) fn matching_methods<'t>(&'t self, host: &str, path: Rest<'_>, into: &mut Vec<&'t str>) {
        let host_methods = (!host.is_empty()).then(|| self.hosts.get(host)).flatten();
        for methods in host_methods.into_iter().chain([&self.any_host]) {
            for (method, node) in &methods.named {
                if node.find(path).is_some() {
                    into.push(method);
                }
            }
        }
        if into.contains(&"GET") {
            into.push("HEAD");
        }
    }
}

impl Methods {
    /// Go's `matchMethodAndPath`: the request's own method first, then `GET` for a `HEAD`
    /// request, then patterns without a method.
    fn find(&self, method: &str, path: Rest<'_>) -> Option<usize> {
        let named = |m: &str| self.named.iter().find(|(name, _)| &**name == m).and_then(|(_, node)| node.find(path));
        if let Some(found) = named(method) {
            return Some(found);
        }
        if method == "HEAD" {
            if let Some(found) = named("GET") {
                return Some(found);
            }
        }
        self.any.find(path)
    }
}

impl Node {
    fn insert(&mut self, segments: &[Segment], id: usize) {
        let Some((first, rest)) = segments.split_first() else {
            self.leaf.get_or_insert(id);
            return;
        };
        match first {
            Segment::Literal(literal) => self.literals.entry(literal).insert(rest, id),
            Segment::Wild(_) => self.wild.get_or_insert_default().insert(rest, id),
            Segment::Multi(_) => {
                self.multi.get_or_insert(id);
            }
        }
    }

    /// Go's `matchPath`: a literal child first, then the `{name}` child, then the `{name...}`
    /// pattern, which takes whatever is left.
    fn find(&self, path: Rest<'_>) -> Option<usize> {
        if path.is_empty() {
            return self.leaf;
        }
        let (segment, rest) = path.split_first();
        let segment = unescape(segment);
        if let Some(found) = self.literals.get(&segment).and_then(|n| n.find(rest)) {
            return Some(found);
        }
        // A `{name}` takes any segment but the trailing slash.
        if &*segment != b"/" {
            if let Some(found) = self.wild.as_ref().and_then(|n| n.find(rest)) {
                return Some(found);
            }
        }
        self.multi
    }
}

impl Default for Children {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl Children {
    fn get(&self, key: &[u8]) -> Option<&Node> {
        match self {
            Children::Few(list) => list.iter().find(|(k, _)| **k == *key).map(|(_, n)| n),
            Children::Many(map) => map.get(key),
        }
    }

    /// The child for `key`, added if missing.
    fn entry(&mut self, key: &[u8]) -> &mut Node {
        if let Children::Few(list) = self {
            if list.len() >= FEW && !list.iter().any(|(k, _)| **k == *key) {
                *self = Children::Many(std::mem::take(list).into_iter().collect());
            }
        }
        match self {
            Children::Few(list) => match list.iter().position(|(k, _)| **k == *key) {
                Some(i) => &mut list[i].1,
                None => {
                    list.push((key.into(), Node::default()));
                    &mut list.last_mut().expect("just pushed").1
                }
            },
            Children::Many(map) => map.entry(key.into()).or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(patterns: &[&str]) -> (Tree, Vec<Pattern>) {
        let patterns: Vec<Pattern> = patterns.iter().map(|p| Pattern::parse(p).unwrap()).collect();
        let mut tree = Tree::default();
        for (id, p) in patterns.iter().enumerate() {
            tree.insert(p, id);
        }
        (tree, patterns)
    }

    fn find(t: &(Tree, Vec<Pattern>), method: &str, host: &str, path: &str) -> String {
        t.0.find(host, method, Rest::new(path)).map_or(String::new(), |id| t.1[id].to_string())
    }

    /// Go's `TestRoutingNodeMatch` (routing_tree_test.go): which pattern each request finds;
    /// `""` is no match. Wildcard values are checked in `mod.rs`.
    #[test]
    fn finds_the_most_specific_like_go() {
        let t = tree(&["/a", "/a/b", "/a/{x}", "/g/h/i", "/g/{x}/j", "/a/b/{x...}", "/a/b/{y}", "/a/b/{$}"]);
        for (method, host, path, want) in [
            ("GET", "", "/a", "/a"),
            ("Get", "", "/b", ""),
            ("Get", "", "/a/b", "/a/b"),
            ("Get", "", "/a/c", "/a/{x}"),
            ("Get", "", "/a/b/", "/a/b/{$}"),
            ("Get", "", "/a/b/c", "/a/b/{y}"),
            ("Get", "", "/a/b/c/d", "/a/b/{x...}"),
            ("Get", "", "/g/h/i", "/g/h/i"),
            ("Get", "", "/g/h/j", "/g/{x}/j"),
        ] {
            assert_eq!(find(&t, method, host, path), want, "{method} {host}{path}");
        }

        let t = tree(&[
            "/item/",
            "POST /item/{user}",
            "GET /item/{user}",
            "/item/{user}",
            "/item/{user}/{id}",
            "/item/{user}/new",
            "/item/{$}",
            "POST alt.com/item/{user}",
            "GET /headwins",
            "HEAD /headwins",
            "/path/{p...}",
        ]);
        for (method, host, path, want) in [
            ("GET", "", "/item/jba", "GET /item/{user}"),
            ("POST", "", "/item/jba", "POST /item/{user}"),
            ("HEAD", "", "/item/jba", "GET /item/{user}"),
            // Method matches are case-sensitive.
            ("get", "", "/item/jba", "/item/{user}"),
            ("POST", "", "/item/jba/17", "/item/{user}/{id}"),
            ("GET", "", "/item/jba/new", "/item/{user}/new"),
            ("GET", "", "/item/", "/item/{$}"),
            ("GET", "", "/item/jba/17/line2", "/item/"),
            ("POST", "alt.com", "/item/jba", "POST alt.com/item/{user}"),
            ("GET", "alt.com", "/item/jba", "GET /item/{user}"),
            ("GET", "", "/item", ""),
            ("GET", "", "/headwins", "GET /headwins"),
            // HEAD is more specific than GET.
            ("HEAD", "", "/headwins", "HEAD /headwins"),
            ("GET", "", "/path/to/file", "/path/{p...}"),
            // A literal `*` segment is not the `...` wildcard (Go's multiChild fix).
            ("GET", "", "/path/*", "/path/{p...}"),
        ] {
            assert_eq!(find(&t, method, host, path), want, "{method} {host}{path}");
        }

        // `{$}` only after a trailing slash, `{w}` never on one, `{w...}` both, and all three
        // together each where it belongs.
        let (dollar, single, multi) = ("/a/b/{$}", "/a/b/{w}", "/a/b/{w...}");
        for (patterns, wants) in [
            (vec![dollar], ["", dollar, "", ""]),
            (vec![single], ["", "", single, ""]),
            (vec![multi], ["", multi, multi, multi]),
            (vec![dollar, single, multi], ["", dollar, single, multi]),
        ] {
            let t = tree(&patterns);
            for (path, want) in ["/a/b", "/a/b/", "/a/b/c", "/a/b/c/d"].into_iter().zip(wants) {
                assert_eq!(find(&t, "GET", "", path), want, "{patterns:?} {path}");
            }
        }
    }

    /// Go's `TestEscapedPathsAndPatterns` (server_test.go): patterns and paths are unescaped
    /// segment by segment.
    #[test]
    fn matches_unescaped_segments() {
        let t = tree(&["/a", "/%62", "/%7B/%7D", "/%x", "/a%2Fb/"]);
        for (path, want) in [
            ("/a", "/a"),
            ("/%61", "/a"),
            ("/b", "/%62"),
            ("/%62", "/%62"),
            ("/{/}", "/%7B/%7D"),
            ("/%7b/}", "/%7B/%7D"),
            ("/{/%7d", "/%7B/%7D"),
            ("/%7B/%7D", "/%7B/%7D"),
            ("/%25x", "/%x"),
            // ServeMux docs: "/a%2Fb/100%25" has the segments "a/b" and "100%".
            ("/a%2Fb/100%25", "/a%2Fb/"),
            ("/a/b/100%25", ""),
        ] {
            assert_eq!(find(&t, "GET", "", path), want, "{path}");
        }
    }

    /// Go's `TestMatchingMethods` (routing_tree_test.go).
    #[test]
    fn matching_methods_like_go() {
        let hosts = ["GET a.com/", "PUT b.com/", "POST /foo/{x}"];
        for (patterns, host, path, want) in [
            (&["POST /"][..], "", "/foo", "POST"),
            (&["GET /"], "", "/foo", "GET,HEAD"),
            (&hosts, "", "/foo", ""),
            (&hosts, "", "/foo/bar", "POST"),
            (&hosts, "a.com", "/foo/bar", "GET,HEAD,POST"),
            (&hosts, "b.com", "/bar", "PUT"),
            (&["/"], "", "/", ""),
        ] {
            let (t, _) = tree(patterns);
            let mut methods = Vec::new();
            t.matching_methods(host, Rest::new(path), &mut methods);
            methods.sort_unstable();
            assert_eq!(methods.join(","), want, "{patterns:?} {host}{path}");
        }
    }

    #[test]
    fn many_children_switch_to_a_map() {
        let patterns: Vec<String> = (0..3 * FEW).map(|i| format!("/p{i}/x")).collect();
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let t = tree(&refs);
        assert!(matches!(t.0.any_host.any.literals, Children::Many(_)));
        for p in &patterns {
            assert_eq!(find(&t, "GET", "", p), *p);
        }
        assert_eq!(find(&t, "GET", "", "/p99/x"), "");
    }
}
