//! How two patterns relate, and when they conflict: Go's `comparePaths`, `compareMethods`,
//! `conflictsWith` and `describeConflict`.
//!
//! Precedence is "most specific wins": one pattern beats another when it matches a strict
//! subset of the other's requests. A pattern with a host beats one without, whatever their
//! paths. Two patterns on the same host conflict when some request matches both but neither is
//! more specific (or both match exactly the same requests): the second is refused, so the
//! routing tree never has to choose between equals.

use std::fmt;

use super::pattern::{Pattern, Segment};

/// How the requests pattern `p1` matches relate to those `p2` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Relationship {
    /// Both match the same requests.
    Equivalent,
    /// `p1` matches everything `p2` does, and more.
    MoreGeneral,
    /// `p2` matches everything `p1` does, and more.
    MoreSpecific,
    /// No request matches both.
    Disjoint,
    /// Some request matches both, but neither is more specific.
    Overlaps,
}

use Relationship::*;

impl Relationship {
    /// `p2`'s relationship to `p1` when this is `p1`'s to `p2`.
    fn inverse(self) -> Relationship {
        match self {
            MoreGeneral => MoreSpecific,
            MoreSpecific => MoreGeneral,
            other => other,
        }
    }

    /// The overall relationship of two patterns from those of two parts of them (method and
    /// path, or successive segments): more general in one way and more specific in the other
    /// means they overlap.
    fn combine(self, other: Relationship) -> Relationship {
        match self {
            Equivalent => other,
            Disjoint => Disjoint,
            Overlaps if other == Disjoint => Disjoint,
            Overlaps => Overlaps,
            MoreGeneral | MoreSpecific => match other {
                Equivalent => self,
                other if other == self.inverse() => Overlaps,
                other => other,
            },
        }
    }
}

/// Why a new pattern was refused: an existing pool's pattern takes some of its requests
/// without either being more specific. Displays as Go's registration panic does, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The pattern being added, canonical.
    pub pattern: String,
    /// The registered pattern it conflicts with, canonical.
    pub existing: String,
    /// Go's `describeConflict`: what both match and what each matches alone.
    pub reason: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pattern {:?} conflicts with pattern {:?}: {}", self.pattern, self.existing, self.reason)
    }
}

impl std::error::Error for Conflict {}

impl Pattern {
    /// Whether adding `self` next to the registered `existing` is refused, and why: Go's
    /// `conflictsWith` and `describeConflict`.
    ///
    /// The control plane checks a new pool against every existing one, as in
    /// `pools.values().find_map(|e| new.conflict_with(&e.pattern))`. Most pairs are told apart
    /// by their hosts, methods, segment counts or first differing literal, so at 100,000 pools
    /// the scan stays within a few milliseconds, and it is paid only when a pool is added. (Go
    /// keeps an index by literal segment for this; lb rebuilds its table on every change, so an
    /// index would be paid on every change instead.)
    pub fn conflict_with(&self, existing: &Pattern) -> Option<Conflict> {
        // Different hosts never conflict: either they match different requests, or the one
        // with a host wins.
        if self.host() != existing.host() {
            return None;
        }
        let methods = compare_methods(self, existing);
        if methods == Disjoint {
            return None;
        }
        let paths = compare_paths(self, existing);
        match methods.combine(paths) {
            Equivalent | Overlaps => Some(Conflict {
                pattern: self.to_string(),
                existing: existing.to_string(),
                reason: describe(self, existing, methods, paths),
            }),
            _ => None,
        }
    }
}

/// Go's `compareMethods`: no method matches every method, `GET` matches `GET` and `HEAD`, any
/// other method only itself.
pub(super) fn compare_methods(p1: &Pattern, p2: &Pattern) -> Relationship {
    match (p1.method(), p2.method()) {
        (m1, m2) if m1 == m2 => Equivalent,
        ("", _) => MoreGeneral,
        (_, "") => MoreSpecific,
        ("GET", "HEAD") => MoreGeneral,
        ("HEAD", "GET") => MoreSpecific,
        _ => Disjoint,
    }
}

/// Go's `comparePaths`: segment by segment, then what is left of the longer pattern against a
/// final `...` of the shorter one.
pub(super) fn compare_paths(p1: &Pattern, p2: &Pattern) -> Relationship {
    let (s1, s2) = (p1.segments(), p2.segments());
    // Without a final `...`, a pattern only matches paths of its own number of segments.
    if s1.len() != s2.len() && !p1.is_subtree() && !p2.is_subtree() {
        return Disjoint;
    }
    let mut rel = Equivalent;
    for (a, b) in s1.iter().zip(s2) {
        rel = rel.combine(compare_segments(a, b));
        if rel == Disjoint {
            return rel;
        }
    }
    match s1.len().cmp(&s2.len()) {
        std::cmp::Ordering::Equal => rel,
        // The shorter pattern's `...` takes whatever the longer one has left.
        std::cmp::Ordering::Less if p1.is_subtree() => rel.combine(MoreGeneral),
        std::cmp::Ordering::Greater if p2.is_subtree() => rel.combine(MoreSpecific),
        _ => Disjoint,
    }
}

/// Go's `compareSegments`.
fn compare_segments(a: &Segment, b: &Segment) -> Relationship {
    use Segment::*;
    let trailing_slash = |literal: &[u8]| literal == b"/";
    match (a, b) {
        (Multi(_), Multi(_)) => Equivalent,
        (Multi(_), _) => MoreGeneral,
        (_, Multi(_)) => MoreSpecific,
        (Wild(_), Wild(_)) => Equivalent,
        // A single wildcard does not match the trailing slash of `{$}`.
        (Wild(_), Literal(l)) if trailing_slash(l) => Disjoint,
        (Wild(_), Literal(_)) => MoreGeneral,
        (Literal(l), Wild(_)) if trailing_slash(l) => Disjoint,
        (Literal(_), Wild(_)) => MoreSpecific,
        (Literal(x), Literal(y)) if x == y => Equivalent,
        (Literal(_), Literal(_)) => Disjoint,
    }
}

/// Go's `describeConflict`, its sentences joined on one line.
fn describe(p1: &Pattern, p2: &Pattern, methods: Relationship, paths: Relationship) -> String {
    match (methods, paths) {
        _ if methods.combine(paths) == Equivalent => {
            format!("{p1} matches the same requests as {p2}")
        }
        (_, Overlaps) => format!(
            "{p1} and {p2} both match some paths, like {:?}. But neither is more specific than \
             the other. {p1} matches {:?}, but {p2} doesn't. {p2} matches {:?}, but {p1} doesn't.",
            common_path(p1, p2),
            difference_path(p1, p2),
            difference_path(p2, p1),
        ),
        (MoreGeneral, MoreSpecific) => {
            format!("{p1} matches more methods than {p2}, but has a more specific path pattern")
        }
        (MoreSpecific, MoreGeneral) => {
            format!("{p1} matches fewer methods than {p2}, but has a more general path pattern")
        }
        _ => format!(
            "bug: unexpected way for two patterns {p1} and {p2} to conflict: methods {methods:?}, \
             paths {paths:?}"
        ),
    }
}

/// Go's `writeSegment`: a path segment that `segment` matches, written with its leading `/`.
/// Wildcards are written as their names. Unlike Go, bytes of a literal that would read as
/// something else in a path (`/`, `%`, `?`, `#`, non-printing) are escaped, so the example
/// paths in messages are ones a client could really send.
fn write_segment(out: &mut String, segment: &Segment) {
    out.push('/');
    match segment {
        Segment::Multi(_) => {}
        Segment::Literal(l) if &**l == b"/" => {}
        Segment::Wild(name) => out.push_str(name),
        Segment::Literal(l) => {
            for chunk in l.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if matches!(c, '/' | '%' | '?' | '#') || c.is_control() {
                        let mut buf = [0; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            out.push_str(&format!("%{b:02X}"));
                        }
                    } else {
                        out.push(c);
                    }
                }
                for b in chunk.invalid() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
}

/// Go's `commonPath`: a path both patterns match; they must overlap.
fn common_path(p1: &Pattern, p2: &Pattern) -> String {
    let (s1, s2) = (p1.segments(), p2.segments());
    let mut out = String::new();
    for (a, b) in s1.iter().zip(s2) {
        let wild = matches!(a, Segment::Wild(_) | Segment::Multi(_));
        write_segment(&mut out, if wild { b } else { a });
    }
    let shorter = s1.len().min(s2.len());
    for segment in s1[shorter..].iter().chain(&s2[shorter..]) {
        write_segment(&mut out, segment);
    }
    out
}

/// Go's `differencePath`: a path `p1` matches and `p2` does not; there must be one.
fn difference_path(p1: &Pattern, p2: &Pattern) -> String {
    use Segment::*;
    let (s1, s2) = (p1.segments(), p2.segments());
    let mut out = String::new();
    for (a, b) in s1.iter().zip(s2) {
        match (a, b) {
            // From here on both match the same paths, so the difference came earlier.
            (Multi(_), Multi(_)) => {
                out.push('/');
                return out;
            }
            // A trailing slash tells them apart, unless `p2` ends in `{$}`: then any segment
            // does; the wildcard's name if it has one.
            (Multi(name), _) => {
                out.push('/');
                if matches!(b, Literal(l) if &**l == b"/") {
                    out.push_str(if name.is_empty() { "x" } else { name });
                }
                return out;
            }
            // Any segment but `p2`'s literal: the wildcard's name, or the literal tweaked.
            (Wild(name), Literal(l)) if name.as_bytes() == &**l => {
                out.push('/');
                out.push_str(name);
                out.push('x');
            }
            // Otherwise `p1`'s own segment: a literal both share, a literal `p2`'s wildcard
            // takes, or a wildcard both take.
            _ => write_segment(&mut out, a),
        }
    }
    let shorter = s1.len().min(s2.len());
    for segment in s1[shorter..].iter().chain(&s2[shorter..]) {
        write_segment(&mut out, segment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Pattern {
        Pattern::parse(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Go's `TestCompareMethods` (pattern_test.go), checked both ways round.
    #[test]
    fn compare_methods_like_go() {
        for (p1, p2, want) in [
            ("/", "/", Equivalent),
            ("GET /", "GET /", Equivalent),
            ("HEAD /", "HEAD /", Equivalent),
            ("POST /", "POST /", Equivalent),
            ("GET /", "POST /", Disjoint),
            ("GET /", "/", MoreSpecific),
            ("HEAD /", "/", MoreSpecific),
            ("GET /", "HEAD /", MoreGeneral),
        ] {
            let (p1, p2) = (parse(p1), parse(p2));
            assert_eq!(compare_methods(&p1, &p2), want, "{p1} vs {p2}");
            assert_eq!(compare_methods(&p2, &p1), want.inverse(), "{p2} vs {p1}");
        }
    }

    /// Go's `TestComparePaths` (pattern_test.go), checked both ways round, each pattern also
    /// equivalent to itself.
    #[test]
    fn compare_paths_like_go() {
        for (p1, p2, want) in [
            // A literal is more specific than anything it overlaps, except itself.
            ("/a", "/a", Equivalent),
            ("/a", "/b", Disjoint),
            ("/a", "/", MoreSpecific),
            ("/a", "/{$}", Disjoint),
            ("/a", "/{x}", MoreSpecific),
            ("/a", "/{x...}", MoreSpecific),
            // Adding a segment doesn't change that.
            ("/b/a", "/b/a", Equivalent),
            ("/b/a", "/b/b", Disjoint),
            ("/b/a", "/b/", MoreSpecific),
            ("/b/a", "/b/{$}", Disjoint),
            ("/b/a", "/b/{x}", MoreSpecific),
            ("/b/a", "/b/{x...}", MoreSpecific),
            ("/{z}/a", "/{z}/a", Equivalent),
            ("/{z}/a", "/{z}/b", Disjoint),
            ("/{z}/a", "/{z}/", MoreSpecific),
            ("/{z}/a", "/{z}/{$}", Disjoint),
            ("/{z}/a", "/{z}/{x}", MoreSpecific),
            ("/{z}/a", "/{z}/{x...}", MoreSpecific),
            // Single wildcard on left.
            ("/{z}", "/a", MoreGeneral),
            ("/{z}", "/a/b", Disjoint),
            ("/{z}", "/{$}", Disjoint),
            ("/{z}", "/{x}", Equivalent),
            ("/{z}", "/", MoreSpecific),
            ("/{z}", "/{x...}", MoreSpecific),
            ("/b/{z}", "/b/a", MoreGeneral),
            ("/b/{z}", "/b/a/b", Disjoint),
            ("/b/{z}", "/b/{$}", Disjoint),
            ("/b/{z}", "/b/{x}", Equivalent),
            ("/b/{z}", "/b/", MoreSpecific),
            ("/b/{z}", "/b/{x...}", MoreSpecific),
            // Trailing slash on left.
            ("/", "/a", MoreGeneral),
            ("/", "/a/b", MoreGeneral),
            ("/", "/{$}", MoreGeneral),
            ("/", "/{x}", MoreGeneral),
            ("/", "/", Equivalent),
            ("/", "/{x...}", Equivalent),
            ("/b/", "/b/a", MoreGeneral),
            ("/b/", "/b/a/b", MoreGeneral),
            ("/b/", "/b/{$}", MoreGeneral),
            ("/b/", "/b/{x}", MoreGeneral),
            ("/b/", "/b/", Equivalent),
            ("/b/", "/b/{x...}", Equivalent),
            ("/{z}/", "/{z}/a", MoreGeneral),
            ("/{z}/", "/{z}/a/b", MoreGeneral),
            ("/{z}/", "/{z}/{$}", MoreGeneral),
            ("/{z}/", "/{z}/{x}", MoreGeneral),
            ("/{z}/", "/{z}/", Equivalent),
            ("/{z}/", "/a/", MoreGeneral),
            ("/{z}/", "/{z}/{x...}", Equivalent),
            ("/{z}/", "/a/{x...}", MoreGeneral),
            ("/a/{z}/", "/{z}/a/", Overlaps),
            ("/a/{z}/b/", "/{x}/c/{y...}", Overlaps),
            // Multi wildcard on left.
            ("/{m...}", "/a", MoreGeneral),
            ("/{m...}", "/a/b", MoreGeneral),
            ("/{m...}", "/{$}", MoreGeneral),
            ("/{m...}", "/{x}", MoreGeneral),
            ("/{m...}", "/", Equivalent),
            ("/{m...}", "/{x...}", Equivalent),
            ("/b/{m...}", "/b/a", MoreGeneral),
            ("/b/{m...}", "/b/a/b", MoreGeneral),
            ("/b/{m...}", "/b/{$}", MoreGeneral),
            ("/b/{m...}", "/b/{x}", MoreGeneral),
            ("/b/{m...}", "/b/", Equivalent),
            ("/b/{m...}", "/b/{x...}", Equivalent),
            ("/b/{m...}", "/a/{x...}", Disjoint),
            ("/{z}/{m...}", "/{z}/a", MoreGeneral),
            ("/{z}/{m...}", "/{z}/a/b", MoreGeneral),
            ("/{z}/{m...}", "/{z}/{$}", MoreGeneral),
            ("/{z}/{m...}", "/{z}/{x}", MoreGeneral),
            ("/{z}/{m...}", "/{w}/", Equivalent),
            ("/{z}/{m...}", "/a/", MoreGeneral),
            ("/{z}/{m...}", "/{z}/{x...}", Equivalent),
            ("/{z}/{m...}", "/a/{x...}", MoreGeneral),
            ("/a/{m...}", "/a/b/{y...}", MoreGeneral),
            ("/a/{m...}", "/a/{x}/{y...}", MoreGeneral),
            ("/a/{z}/{m...}", "/a/b/{y...}", MoreGeneral),
            ("/a/{z}/{m...}", "/{z}/a/", Overlaps),
            ("/a/{z}/{m...}", "/{z}/b/{y...}", Overlaps),
            ("/a/{z}/b/{m...}", "/{x}/c/{y...}", Overlaps),
            ("/a/{z}/a/{m...}", "/{x}/b", Disjoint),
            // Dollar on left.
            ("/{$}", "/a", Disjoint),
            ("/{$}", "/a/b", Disjoint),
            ("/{$}", "/{$}", Equivalent),
            ("/{$}", "/{x}", Disjoint),
            ("/{$}", "/", MoreSpecific),
            ("/{$}", "/{x...}", MoreSpecific),
            ("/b/{$}", "/b", Disjoint),
            ("/b/{$}", "/b/a", Disjoint),
            ("/b/{$}", "/b/a/b", Disjoint),
            ("/b/{$}", "/b/{$}", Equivalent),
            ("/b/{$}", "/b/{x}", Disjoint),
            ("/b/{$}", "/b/", MoreSpecific),
            ("/b/{$}", "/b/{x...}", MoreSpecific),
            ("/b/{$}", "/b/c/{x...}", Disjoint),
            ("/b/{x}/a/{$}", "/{x}/c/{y...}", Overlaps),
            ("/{x}/b/{$}", "/a/{x}/{y}", Disjoint),
            ("/{x}/b/{$}", "/a/{x}/c", Disjoint),
            ("/{z}/{$}", "/{z}/a", Disjoint),
            ("/{z}/{$}", "/{z}/a/b", Disjoint),
            ("/{z}/{$}", "/{z}/{$}", Equivalent),
            ("/{z}/{$}", "/{z}/{x}", Disjoint),
            ("/{z}/{$}", "/{z}/", MoreSpecific),
            ("/{z}/{$}", "/a/", Overlaps),
            ("/{z}/{$}", "/a/{x...}", Overlaps),
            ("/{z}/{$}", "/{z}/{x...}", MoreSpecific),
            ("/a/{z}/{$}", "/{z}/a/", Overlaps),
            // Segments compare unescaped (net/http docs: "/%61" is "/a").
            ("/%61", "/a", Equivalent),
            ("/a%2Fb/", "/a/b/", Disjoint),
        ] {
            let (p1, p2) = (parse(p1), parse(p2));
            assert_eq!(compare_paths(&p1, &p1), Equivalent, "{p1}");
            assert_eq!(compare_paths(&p2, &p2), Equivalent, "{p2}");
            assert_eq!(compare_paths(&p1, &p2), want, "{p1} vs {p2}");
            assert_eq!(compare_paths(&p2, &p1), want.inverse(), "{p2} vs {p1}");
        }
    }

    /// Go's `TestConflictsWith` (pattern_test.go), then the examples of the `ServeMux` docs and
    /// hosts; conflicts are symmetric.
    #[test]
    fn conflicts_like_go() {
        for (p1, p2, want) in [
            ("/a", "/a", true),
            ("/a", "/ab", false),
            ("/a/b/cd", "/a/b/cd", true),
            ("/a/b/cd", "/a/b/c", false),
            ("/a/b/c", "/a/c/c", false),
            ("/{x}", "/{y}", true),
            ("/{x}", "/a", false),
            ("/{x}/{y}", "/{x}/a", false),
            ("/{x}/{y}", "/{x}/a/b", false),
            ("/{x}", "/a/{y}", false),
            ("/{x}/{y}", "/{x}/a/", false),
            ("/{x}", "/a/{y...}", false),
            ("/{x}/a/{y}", "/{x}/a/{y...}", false),
            ("/{x}/{y}", "/{x}/a/{$}", false),
            ("/{x}/{y}/{$}", "/{x}/a/{$}", false),
            ("/a/{x}", "/{x}/b", true),
            ("/", "GET /", false),
            ("/", "GET /foo", false),
            ("GET /", "GET /foo", false),
            ("GET /", "/foo", true),
            ("GET /foo", "HEAD /", true),
            // ServeMux docs: "/images/thumbnails/" is more specific than "/images/"; "GET /"
            // and "/index.html" conflict.
            ("/images/thumbnails/", "/images/", false),
            ("GET /", "/index.html", true),
            // Hosts: a host beats no host; different hosts never meet; hosts compare in lower
            // case; a path that unescapes alike is the same path.
            ("example.com/a/{x}", "/{x}/b", false),
            ("a.com/{x}", "b.com/{y}", false),
            ("A.com/{x}", "a.COM/{y}", true),
            ("/%61", "/a", true),
            ("GET /a", "POST /a", false),
            ("GET /a", "HEAD /a", false),
        ] {
            let (p1, p2) = (parse(p1), parse(p2));
            assert_eq!(p1.conflict_with(&p2).is_some(), want, "{p1} vs {p2}");
            assert_eq!(p2.conflict_with(&p1).is_some(), want, "{p2} vs {p1}");
        }
    }

    /// Go's `TestDescribeConflict` and `TestRegisterConflict` (pattern_test.go), then whole
    /// messages as the admin API shows them.
    #[test]
    fn describes_conflicts_like_go() {
        for (p1, p2, want) in [
            ("/a/{x}", "/a/{y}", "the same requests"),
            ("/", "/{m...}", "the same requests"),
            ("/a/{x}/", "/a/{y}/{z...}", "matches the same requests as"),
            ("/a/{x}", "/{y}/b", "both match some paths"),
            ("/a", "GET /{x}", "matches more methods than GET /{x}, but has a more specific path pattern"),
            ("GET /a", "HEAD /", "matches more methods than HEAD /, but has a more specific path pattern"),
            ("POST /", "/a", "matches fewer methods than /a, but has a more general path pattern"),
        ] {
            let conflict = parse(p1).conflict_with(&parse(p2)).unwrap();
            assert!(conflict.reason.contains(want), "{conflict}");
        }
        for (p1, p2, message) in [
            (
                "/a/{x}",
                "/{y}/b",
                "pattern \"/a/{x}\" conflicts with pattern \"/{y}/b\": /a/{x} and /{y}/b both \
                 match some paths, like \"/a/b\". But neither is more specific than the other. \
                 /a/{x} matches \"/a/x\", but /{y}/b doesn't. /{y}/b matches \"/y/b\", but \
                 /a/{x} doesn't.",
            ),
            (
                "GET /",
                "/index.html",
                "pattern \"GET /\" conflicts with pattern \"/index.html\": GET / matches fewer \
                 methods than /index.html, but has a more general path pattern",
            ),
            (
                "Shop.example/%61",
                "shop.example/a",
                "pattern \"shop.example/%61\" conflicts with pattern \"shop.example/a\": \
                 shop.example/%61 matches the same requests as shop.example/a",
            ),
        ] {
            let conflict = parse(p1).conflict_with(&parse(p2)).unwrap();
            assert_eq!(conflict.to_string(), message);
        }
    }

    /// Go's `TestCommonPath` (pattern_test.go).
    #[test]
    fn common_path_like_go() {
        for (p1, p2, want) in [
            ("/a/{x}", "/{x}/a", "/a/a"),
            ("/a/{z}/", "/{z}/a/", "/a/a/"),
            ("/a/{z}/{m...}", "/{z}/a/", "/a/a/"),
            ("/{z}/{$}", "/a/", "/a/"),
            ("/{z}/{$}", "/a/{x...}", "/a/"),
            ("/a/{z}/{$}", "/{z}/a/", "/a/a/"),
            ("/a/{x}/b/{y...}", "/{x}/c/{y...}", "/a/c/b/"),
            ("/a/{x}/b/", "/{x}/c/{y...}", "/a/c/b/"),
            ("/a/{x}/b/{$}", "/{x}/c/{y...}", "/a/c/b/"),
            ("/a/{z}/{x...}", "/{z}/b/{y...}", "/a/b/"),
            // Literals are written so that the path really matches (not in Go's table).
            ("/a%2Fb/{x}", "/{y}/c", "/a%2Fb/c"),
        ] {
            let (p1, p2) = (parse(p1), parse(p2));
            assert_eq!(compare_paths(&p1, &p2), Overlaps, "{p1} vs {p2}");
            assert_eq!(common_path(&p1, &p2), want, "{p1} vs {p2}");
        }
    }

    /// Go's `TestDifferencePath` (pattern_test.go).
    #[test]
    fn difference_path_like_go() {
        for (p1, p2, want) in [
            ("/a/{x}", "/{x}/a", "/a/x"),
            ("/{x}/a", "/a/{x}", "/x/a"),
            ("/a/{z}/", "/{z}/a/", "/a/z/"),
            ("/{z}/a/", "/a/{z}/", "/z/a/"),
            ("/{a}/a/", "/a/{z}/", "/ax/a/"),
            ("/a/{z}/{x...}", "/{z}/b/{y...}", "/a/z/"),
            ("/{z}/b/{y...}", "/a/{z}/{x...}", "/z/b/"),
            ("/a/b/", "/a/b/c", "/a/b/"),
            ("/a/b/{x...}", "/a/b/c", "/a/b/"),
            ("/a/b/{x...}", "/a/b/c/d", "/a/b/"),
            ("/a/b/{x...}", "/a/b/c/d/", "/a/b/"),
            ("/a/{z}/{m...}", "/{z}/a/", "/a/z/"),
            ("/{z}/a/", "/a/{z}/{m...}", "/z/a/"),
            ("/{z}/{$}", "/a/", "/z/"),
            ("/a/", "/{z}/{$}", "/a/x"),
            ("/{z}/{$}", "/a/{x...}", "/z/"),
            ("/a/{foo...}", "/{z}/{$}", "/a/foo"),
            ("/a/{z}/{$}", "/{z}/a/", "/a/z/"),
            ("/{z}/a/", "/a/{z}/{$}", "/z/a/x"),
            ("/a/{x}/b/{y...}", "/{x}/c/{y...}", "/a/x/b/"),
            ("/{x}/c/{y...}", "/a/{x}/b/{y...}", "/x/c/"),
            ("/a/{c}/b/", "/{x}/c/{y...}", "/a/cx/b/"),
            ("/{x}/c/{y...}", "/a/{c}/b/", "/x/c/"),
            ("/a/{x}/b/{$}", "/{x}/c/{y...}", "/a/x/b/"),
            ("/{x}/c/{y...}", "/a/{x}/b/{$}", "/x/c/"),
        ] {
            let (p1, p2) = (parse(p1), parse(p2));
            let rel = compare_paths(&p1, &p2);
            assert!(matches!(rel, Overlaps | MoreGeneral), "{p1} vs {p2}: {rel:?}");
            assert_eq!(difference_path(&p1, &p2), want, "{p1} vs {p2}");
        }
    }
}
