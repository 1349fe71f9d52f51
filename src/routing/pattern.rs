//! Pool patterns in Go 1.22's `net/http.ServeMux` syntax, `[METHOD ][HOST]/[PATH]`, parsed and
//! refused exactly as Go's `parsePattern` does, with Go's messages.
//!
//! - `METHOD` is an HTTP token (`GET`, `POST`, even `get`); `GET` also matches `HEAD`.
//! - `HOST` limits the pattern to one host (compared in lower case; see [`Pattern::host`]).
//! - `PATH` is `/`-separated segments, each a literal (unescaped, so `/%61` is `/a`), `{name}`
//!   (one segment), `{name...}` (the rest of the path, last only) or `{$}` (the end of the path,
//!   after a trailing slash, last only). A path ending in `/` matches its whole subtree.
//!
//! How two patterns relate (which is more specific, which conflict) lives in `conflict.rs`.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use super::path::{clean_path, unescape};

/// A parsed, valid pattern. Cheap to clone: the control plane hands every pattern to each new
/// routing table it builds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern(Arc<Parsed>);

#[derive(PartialEq, Eq, Hash)]
struct Parsed {
    /// The canonical text: method, one space, lowercased host, path as written.
    text: String,
    /// `text[..method_end]` is the method, empty for every method.
    method_end: usize,
    /// `text[host_start..path_start]` is the host, empty for every host.
    host_start: usize,
    path_start: usize,
    segments: Vec<Segment>,
}

/// One piece of a pattern's path, as Go represents it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Segment {
    /// A segment equal to these bytes once unescaped. `{$}` is the literal `/`, the trailing
    /// slash: Go's representation, which also makes a `%2F` segment the same as `{$}`.
    Literal(Box<[u8]>),
    /// `{name}`: any one segment but the trailing slash.
    Wild(Box<str>),
    /// `{name...}`, or `""` for a trailing `/`: the rest of the path, possibly empty. Last only.
    Multi(Box<str>),
}

/// Why a pattern was refused: Go's reason, with its byte offset into the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

impl Pattern {
    /// Parses `raw` as Go's `parsePattern` does, refusing what Go refuses with Go's reason
    /// (`at offset 1: bad wildcard segment (must end with '}')`).
    ///
    /// lb also refuses control characters (see below): what a new pool may be named.
    pub fn parse(raw: &str) -> Result<Pattern, PatternError> {
        Self::parse_checked(raw, true)
    }

    /// [`Pattern::parse`] without lb's refusal of control characters: Go's grammar alone, as
    /// lb checked patterns before. For the patterns an older lb stored, and for naming them so
    /// they can still be listed and removed.
    pub fn parse_as_go(raw: &str) -> Result<Pattern, PatternError> {
        Self::parse_checked(raw, false)
    }

    fn parse_checked(raw: &str, printable: bool) -> Result<Pattern, PatternError> {
        let fail = |offset: usize, reason: &str| {
            Err(PatternError { pattern: raw.to_owned(), reason: format!("at offset {offset}: {reason}") })
        };
        if raw.is_empty() {
            return Err(PatternError { pattern: raw.to_owned(), reason: "empty pattern".to_owned() });
        }
        // Not Go's rule but lb's: a pattern is printed in logs and tables and names store keys,
        // so it holds no NUL, CR, LF or other control character; a tab only in the blanks after
        // the method, where Go's grammar has it.
        let after_method =
            raw.find([' ', '\t']).map_or(0, |i| i + 1 + (raw[i + 1..].len() - raw[i + 1..].trim_start().len()));
        let control = |&(i, c): &(usize, char)| c.is_control() && (c != '\t' || i >= after_method);
        if let Some((i, c)) = raw.char_indices().find(control).filter(|_| printable) {
            return fail(i, &format!("control character U+{:04X} not allowed", u32::from(c)));
        }
        // A method ends at the first space or tab; any run of blanks may follow it.
        let (method, rest) = match raw.find([' ', '\t']) {
            Some(i) => (&raw[..i], Some(raw[i + 1..].trim())),
            None => ("", None),
        };
        if !method.is_empty() && !method.bytes().all(is_token_byte) {
            return fail(0, &format!("invalid method {method:?}"));
        }
        // Go's offsets past the method assume a single blank; so do these.
        let mut offset = if rest.is_some() { method.len() + 1 } else { 0 };
        let rest = rest.unwrap_or(raw);
        // Go reads ` /a b` as the path `/a b` with no method; its canonical text `/a b` would read
        // back as the method `/a` (found by the `pattern` fuzz target). Refused, as `/a b` is.
        if let Some(blank) = rest.find([' ', '\t']).filter(|_| method.is_empty()) {
            return fail(offset + blank, "a pattern without a method holds a space or tab");
        }
        let Some(slash) = rest.find('/') else {
            return fail(offset, "host/path missing /");
        };
        let (host, path) = rest.split_at(slash);
        if let Some(brace) = host.find('{') {
            return fail(offset + brace, "host contains '{' (missing initial '/'?)");
        }
        // Go takes ` a b/` as the host `a b`; lb's canonical text (the store key) would then
        // read back as the method `a` (found by the `pattern` fuzz target). No request's host
        // holds a blank, so refusing one loses nothing.
        if let Some(blank) = host.find([' ', '\t']) {
            return fail(offset + blank, "host contains a space or tab");
        }
        offset += slash;
        if !method.is_empty() && method != "CONNECT" && clean_path(path) != path {
            // Requests are cleaned before matching, so such a pattern could never match.
            return fail(offset, "non-CONNECT pattern with unclean path can never match");
        }

        let mut segments = Vec::new();
        let mut names = HashSet::new();
        let mut rest = path;
        while let Some(after_slash) = rest.strip_prefix('/') {
            rest = after_slash;
            let offset = raw.len() - rest.len();
            if rest.is_empty() {
                segments.push(Segment::Multi("".into()));
                break;
            }
            let end = rest.find('/').unwrap_or(rest.len());
            let seg;
            (seg, rest) = rest.split_at(end);
            let Some(brace) = seg.find('{') else {
                segments.push(Segment::Literal(unescape(seg).into()));
                continue;
            };
            if brace != 0 {
                return fail(offset, "bad wildcard segment (must start with '{')");
            }
            if !seg.ends_with('}') {
                return fail(offset, "bad wildcard segment (must end with '}')");
            }
            let name = &seg[1..seg.len() - 1];
            if name == "$" {
                if !rest.is_empty() {
                    return fail(offset, "{$} not at end");
                }
                segments.push(Segment::Literal(b"/"[..].into()));
                break;
            }
            let (name, multi) = match name.strip_suffix("...") {
                Some(name) => (name, true),
                None => (name, false),
            };
            if multi && !rest.is_empty() {
                return fail(offset, "{...} wildcard not at end");
            }
            if name.is_empty() {
                return fail(offset, "empty wildcard");
            }
            if !is_identifier(name) {
                return fail(offset, &format!("bad wildcard name {name:?}"));
            }
            if !names.insert(name) {
                return fail(offset, &format!("duplicate wildcard name {name:?}"));
            }
            segments.push(if multi { Segment::Multi(name.into()) } else { Segment::Wild(name.into()) });
        }

        let mut text = String::with_capacity(raw.len());
        text.push_str(method);
        if !method.is_empty() {
            text.push(' ');
        }
        let host_start = text.len();
        text.push_str(&host.to_ascii_lowercase());
        let path_start = text.len();
        text.push_str(path);
        Ok(Pattern(Arc::new(Parsed { text, method_end: method.len(), host_start, path_start, segments })))
    }

    /// The method this pattern is limited to, or `""` for every method.
    pub fn method(&self) -> &str {
        &self.0.text[..self.0.method_end]
    }

    /// The host this pattern is limited to, lowercased, or `""` for every host. Go compares
    /// hosts case-sensitively; lb lowercases pattern and request hosts alike, since host names
    /// are case-insensitive and a pool should not depend on how a client spells one.
    pub fn host(&self) -> &str {
        &self.0.text[self.0.host_start..self.0.path_start]
    }

    /// The path as written, escapes and wildcards included.
    pub fn path(&self) -> &str {
        &self.0.text[self.0.path_start..]
    }

    /// Whether the pattern ends in a trailing `/` or a `{name...}` wildcard, and so matches a
    /// whole subtree.
    pub fn is_subtree(&self) -> bool {
        matches!(self.0.segments.last(), Some(Segment::Multi(_)))
    }

    /// Names of the wildcards, in order (the anonymous one of a trailing `/` left out).
    pub fn wildcards(&self) -> impl Iterator<Item = &str> {
        self.0.segments.iter().filter_map(|s| match s {
            Segment::Wild(name) | Segment::Multi(name) if !name.is_empty() => Some(&**name),
            _ => None,
        })
    }

    pub(super) fn segments(&self) -> &[Segment] {
        &self.0.segments
    }
}

/// The canonical form: the pattern as written, with the host lowercased and a single space
/// after the method. Two patterns that print alike are the same pool in the store.
impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.0.text)
    }
}

/// A byte of an HTTP token (RFC 9110 `tchar`), Go's test for a valid method.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Go's `isValidWildcardName`: a Go identifier. Exact for ASCII. Beyond ASCII, Rust's Unicode
/// classes stand in for Go's: they also accept the combining marks Unicode counts as alphabetic
/// and, after the first character, non-decimal digits such as `²`, which Go refuses.
fn is_identifier(name: &str) -> bool {
    name.chars().enumerate().all(|(i, c)| {
        let letter = c.is_alphabetic() && !c.is_numeric();
        letter || c == '_' || (i > 0 && c.is_numeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Segment {
        Segment::Literal(s.as_bytes().into())
    }
    fn wild(s: &str) -> Segment {
        Segment::Wild(s.into())
    }
    fn multi(s: &str) -> Segment {
        Segment::Multi(s.into())
    }

    /// Go's `TestParsePattern` (pattern_test.go): method, host and segments of each pattern.
    #[test]
    fn parses_like_go() {
        for (raw, method, host, segments) in [
            ("/", "", "", vec![multi("")]),
            ("/a", "", "", vec![lit("a")]),
            ("/a/", "", "", vec![lit("a"), multi("")]),
            ("/path/to/something", "", "", vec![lit("path"), lit("to"), lit("something")]),
            ("/{w1}/lit/{w2}", "", "", vec![wild("w1"), lit("lit"), wild("w2")]),
            ("/{w1}/lit/{w2}/", "", "", vec![wild("w1"), lit("lit"), wild("w2"), multi("")]),
            ("example.com/", "", "example.com", vec![multi("")]),
            ("GET /", "GET", "", vec![multi("")]),
            ("POST example.com/foo/{w}", "POST", "example.com", vec![lit("foo"), wild("w")]),
            ("/{$}", "", "", vec![lit("/")]),
            ("DELETE example.com/a/{foo12}/{$}", "DELETE", "example.com", vec![lit("a"), wild("foo12"), lit("/")]),
            ("/foo/{$}", "", "", vec![lit("foo"), lit("/")]),
            ("/{a}/foo/{rest...}", "", "", vec![wild("a"), lit("foo"), multi("rest")]),
            ("//", "", "", vec![lit(""), multi("")]),
            ("/foo///./../bar", "", "", vec![lit("foo"), lit(""), lit(""), lit("."), lit(".."), lit("bar")]),
            ("a.com/foo//", "", "a.com", vec![lit("foo"), lit(""), multi("")]),
            ("/%61%62/%7b/%", "", "", vec![lit("ab"), lit("{"), lit("%")]),
            ("GET\t  /", "GET", "", vec![multi("")]),
            ("POST \t  example.com/foo/{w}", "POST", "example.com", vec![lit("foo"), wild("w")]),
            ("DELETE    \texample.com/a/{foo12}/{$}", "DELETE", "example.com", vec![lit("a"), wild("foo12"), lit("/")]),
            // Methods are tokens, not a fixed list, and are case-sensitive (routing_tree_test.go).
            ("get /", "get", "", vec![multi("")]),
            ("#!~ /", "#!~", "", vec![multi("")]),
            // CONNECT paths are not cleaned, so unclean ones may match.
            ("CONNECT /a/../b", "CONNECT", "", vec![lit("a"), lit(".."), lit("b")]),
            // `/{x}` is a literal `}` and `/a?b` a literal `a?b` (matched by `/a%3Fb`).
            ("/}", "", "", vec![lit("}")]),
            ("/a?b", "", "", vec![lit("a?b")]),
        ] {
            let p = Pattern::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!((p.method(), p.host(), p.segments()), (method, host, &segments[..]), "{raw:?}");
        }
    }

    /// Go's `TestParsePatternError` (pattern_test.go), offsets included, then the kinds of
    /// mistake the issue names.
    #[test]
    fn refuses_like_go() {
        for (raw, reason) in [
            ("", "empty pattern"),
            ("A=B /", "at offset 0: invalid method \"A=B\""),
            (" ", "at offset 1: host/path missing /"),
            ("/{w}x", "at offset 1: bad wildcard segment (must end with '}')"),
            ("/x{w}", "at offset 1: bad wildcard segment (must start with '{')"),
            ("/{wx", "at offset 1: bad wildcard segment (must end with '}')"),
            ("/a/{/}/c", "at offset 3: bad wildcard segment (must end with '}')"),
            ("/a/{%61}/c", "at offset 3: bad wildcard name \"%61\""),
            ("/{a$}", "at offset 1: bad wildcard name \"a$\""),
            ("/{}", "at offset 1: empty wildcard"),
            ("POST a.com/x/{}/y", "at offset 13: empty wildcard"),
            ("/{...}", "at offset 1: empty wildcard"),
            ("/{$...}", "at offset 1: bad wildcard name \"$\""),
            ("/{$}/", "at offset 1: {$} not at end"),
            ("/{$}/x", "at offset 1: {$} not at end"),
            ("/abc/{$}/x", "at offset 5: {$} not at end"),
            ("/{a...}/", "at offset 1: {...} wildcard not at end"),
            ("/{a...}/x", "at offset 1: {...} wildcard not at end"),
            ("{a}/b", "at offset 0: host contains '{' (missing initial '/'?)"),
            ("/a/{x}/b/{x...}", "at offset 9: duplicate wildcard name \"x\""),
            ("GET //", "at offset 4: non-CONNECT pattern with unclean path can never match"),
            // The list: bad method, unclosed `{`, `{x...}` not last, bad name.
            ("GET{ /x", "at offset 0: invalid method \"GET{\""),
            ("/users/{id", "at offset 7: bad wildcard segment (must end with '}')"),
            ("/{", "at offset 1: bad wildcard segment (must end with '}')"),
            ("/files/{p...}/x", "at offset 7: {...} wildcard not at end"),
            ("/{1x}", "at offset 1: bad wildcard name \"1x\""),
            ("/{a-b}", "at offset 1: bad wildcard name \"a-b\""),
            ("api", "at offset 0: host/path missing /"),
            ("GET api", "at offset 4: host/path missing /"),
            ("GET /a/../b", "at offset 4: non-CONNECT pattern with unclean path can never match"),
            ("/a b", "at offset 0: invalid method \"/a\""),
        ] {
            let err = Pattern::parse(raw).unwrap_err();
            assert_eq!(err.reason, reason, "{raw:?}");
            assert_eq!(err.to_string(), format!("invalid pattern {raw:?}: {reason}"));
        }
    }

    #[test]
    fn control_characters_are_refused() {
        for (raw, reason) in [
            ("/d\0z", "at offset 2: control character U+0000 not allowed"),
            ("/a\r\nHost: x", "at offset 2: control character U+000D not allowed"),
            ("/a\x1b[31m", "at offset 2: control character U+001B not allowed"),
            ("/a\u{85}", "at offset 2: control character U+0085 not allowed"),
            ("GET /a\tb", "at offset 6: control character U+0009 not allowed"),
            ("GET /a\n", "at offset 6: control character U+000A not allowed"),
            ("\0GET /", "at offset 0: control character U+0000 not allowed"),
        ] {
            let err = Pattern::parse(raw).unwrap_err();
            assert_eq!(err.to_string(), format!("invalid pattern {raw:?}: {reason}"));
        }
        assert_eq!(Pattern::parse("GET \t /x").unwrap().to_string(), "GET /x");
    }

    #[test]
    fn wildcard_names_are_go_identifiers() {
        for name in ["x", "_", "foo12", "_a1", "été", "名前"] {
            let raw = format!("/{{{name}}}");
            assert!(Pattern::parse(&raw).is_ok(), "{raw}");
        }
    }

    /// The canonical form is the store key: the host lowercased, one space after the method,
    /// the path exactly as written.
    #[test]
    fn displays_canonically() {
        for (raw, canonical) in [
            ("/", "/"),
            ("Example.COM/api/", "example.com/api/"),
            ("GET /x", "GET /x"),
            ("GET\t  /x", "GET /x"),
            ("POST \t Shop.Example/items/{id} ", "POST shop.example/items/{id}"),
            ("/%61/{rest...}", "/%61/{rest...}"),
        ] {
            let p = Pattern::parse(raw).unwrap();
            assert_eq!(p.to_string(), canonical, "{raw:?}");
            assert_eq!(Pattern::parse(canonical).unwrap(), p, "{raw:?}");
        }
        // A host with a blank would display as a method and a host-less pattern.
        // (A tab anywhere but after the method is refused earlier, as a control character.)
        let refused = |raw: &str, why: &str| {
            let err = Pattern::parse(raw).unwrap_err().to_string();
            let tab_refused = raw.trim_start().contains('\t') && err.contains("control character U+0009");
            assert!(err.contains(why) || tab_refused, "{raw:?}: {err}");
        };
        for raw in ["GET a b/", "GET\ta\tb/"] {
            refused(raw, "host contains a space or tab");
        }
        // Without a method, a blank after the leading ones would display as a method.
        for raw in [" iteTT /c/", "\ta\tb/", "  /a b", " /{x}\t/"] {
            refused(raw, "without a method holds a space or tab");
        }
        assert_eq!(Pattern::parse("GET /a b").unwrap().to_string(), "GET /a b", "with a method, blanks read back");
    }

    #[test]
    fn reports_parts() {
        let p = Pattern::parse("GET Shop.example/b/{bucket}/o/{objectname...}").unwrap();
        assert_eq!(
            (p.method(), p.host(), p.path(), p.is_subtree()),
            ("GET", "shop.example", "/b/{bucket}/o/{objectname...}", true)
        );
        assert_eq!(p.wildcards().collect::<Vec<_>>(), ["bucket", "objectname"]);
        for (raw, subtree) in [("/a/", true), ("/a", false), ("/a/{$}", false), ("/{x}", false)] {
            assert_eq!(Pattern::parse(raw).unwrap().is_subtree(), subtree, "{raw}");
        }
        assert_eq!(Pattern::parse("/a/").unwrap().wildcards().count(), 0, "a trailing slash is anonymous");
    }
}
