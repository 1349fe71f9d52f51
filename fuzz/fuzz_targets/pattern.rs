//! `Pattern::parse` on arbitrary strings, one pattern a line (the first 8 lines): what parses
//! displays as text that parses to the same pattern; two patterns agree on whether they
//! conflict, whichever is asked; and a table of the non-conflicting ones routes an example path
//! of each pattern, and every line as a path, without panicking.

#![no_main]

use lb::routing::{Pattern, Route, RoutingTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines: Vec<&str> = text.split('\n').take(8).collect();
    let patterns: Vec<Pattern> = lines.iter().filter_map(|line| Pattern::parse(line).ok()).collect();
    for p in &patterns {
        let again = Pattern::parse(&p.to_string()).unwrap_or_else(|e| panic!("{p} does not parse again: {e}"));
        assert_eq!(&again, p, "{p} parses again as another pattern");
    }
    let mut accepted: Vec<Pattern> = Vec::new();
    for p in &patterns {
        let mut conflicts = false;
        for q in &patterns {
            let (pq, qp) = (p.conflict_with(q), q.conflict_with(p));
            assert_eq!(pq.is_some(), qp.is_some(), "{p} and {q} disagree: {pq:?} / {qp:?}");
            if let Some(c) = &pq {
                assert!(!c.to_string().is_empty());
            }
        }
        if accepted.iter().all(|a| p.conflict_with(a).is_none()) {
            accepted.push(p.clone());
        } else {
            conflicts = true;
        }
        let _ = conflicts;
    }
    let table = RoutingTable::new(accepted.iter().cloned().enumerate().map(|(i, p)| (p, i)));
    for p in &accepted {
        let method = if p.method().is_empty() { "GET" } else { p.method() };
        let host = if p.host().is_empty() { "example.com" } else { p.host() };
        let path = example_path(p);
        if let Route::Matched { params, .. } = table.route(method, host, &path, Some("q=1")) {
            for name in params.pattern().wildcards() {
                let _ = params.get(name);
            }
        }
    }
    for line in &lines {
        let _ = table.route("GET", "example.com", line, None);
        let _ = table.route("CONNECT", line, line, Some(line));
    }
});

/// A path `p` matches: its path with each wildcard filled in.
fn example_path(p: &Pattern) -> String {
    p.path()
        .split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some("$") => "",
            Some(name) if name.ends_with("...") => "a/b",
            Some(_) => "x",
            None => segment,
        })
        .collect::<Vec<_>>()
        .join("/")
}
