//! Request paths as Go's `ServeMux` sees them: cleaned before matching ([`clean_path`]), then
//! taken one segment at a time ([`Rest::split_first`]), each segment unescaped on its own
//! ([`unescape`]). Unescaping by segment is what lets `%2F` stay inside a segment: `/a%2Fb` is
//! one segment, `a/b`, and never matches `/a/b`.

use std::borrow::Cow;

/// Go's `cleanPath`: the canonical path, with `.` and `..` resolved and repeated slashes
/// collapsed, keeping a trailing slash. Borrowed when already clean, which is the common case.
pub fn clean_path(path: &str) -> Cow<'_, str> {
    if is_clean(path) {
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

/// Is `path` what cleaning leaves unchanged: rooted, with no empty segment but a trailing one,
/// and no `.` or `..` segment? One pass over the bytes (every request asks; a substring search
/// for `//` plus a split cost several times more).
fn is_clean(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut start = 1;
    for end in 1..=bytes.len() {
        if end < bytes.len() && bytes[end] != b'/' {
            continue;
        }
        let segment = &bytes[start..end];
        if (segment.is_empty() && end < bytes.len()) || segment == b"." || segment == b".." {
            return false;
        }
        start = end + 1;
    }
    true
}

/// Bytes a path keeps unescaped in a `Location`: Go's `shouldEscape(c, encodePath)` is false
/// for them (unreserved, and `$&+,/:;=@`).
static PATH_SAFE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'_' | b'.' | b'~' | b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@');
        b += 1;
    }
    t
};

/// Appends `path` (still escaped as the client sent it) to `out` as Go's `URL.EscapedPath`
/// writes a path: `%XX` escapes are kept, every other byte Go would escape is escaped, so `\`
/// (which browsers read as `/`), spaces and quotes never reach a `Location` raw.
pub(super) fn push_escaped(out: &mut String, path: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let is_hex = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if PATH_SAFE[b as usize] || (b == b'%' && is_hex(i + 1) && is_hex(i + 2)) {
            continue;
        }
        // Bytes before `i` back to the last escaped one are ASCII: a char boundary each side.
        if start < i {
            out.push_str(&path[start..i]);
        }
        out.push('%');
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
        start = i + 1;
    }
    if start < bytes.len() {
        out.push_str(&path[start..]);
    }
}

/// The part of a request path the routing tree has not matched yet.
///
/// `slash` stands for one more `/` after `path`. The trailing-slash redirect asks whether
/// `path + "/"` would match; most requests under a subtree pool ask it, so this spares building
/// that string on every such request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rest<'a> {
    path: &'a str,
    slash: bool,
}

impl<'a> Rest<'a> {
    pub(super) fn new(path: &'a str) -> Self {
        Rest { path, slash: false }
    }

    /// `path` followed by one more `/`.
    pub(super) fn with_slash(path: &'a str) -> Self {
        Rest { path, slash: true }
    }

    pub(super) fn is_empty(self) -> bool {
        self.path.is_empty() && !self.slash
    }

    /// Go's `firstSegment`, before unescaping: the first segment and what follows it. A path of
    /// just `/` is the trailing-slash segment, `"/"`, the one `{$}` matches.
    pub(super) fn split_first(self) -> (&'a str, Rest<'a>) {
        if (self.path == "/" && !self.slash) || (self.path.is_empty() && self.slash) {
            return ("/", Rest::new(""));
        }
        // Go drops the first byte unchecked: it is the `/` of every path but a CONNECT one.
        let mut chars = self.path.chars();
        chars.next();
        let path = chars.as_str();
        match path.find('/') {
            Some(i) => (&path[..i], Rest { path: &path[i..], slash: self.slash }),
            None => (path, Rest { path: "", slash: self.slash }),
        }
    }

    /// What a `{name...}` wildcard captures here: the rest without its leading `/`. Only asked
    /// of real paths, never of one with the extra slash.
    pub(super) fn remainder(self) -> &'a str {
        debug_assert!(!self.slash, "wildcard values are read from the real path only");
        let mut chars = self.path.chars();
        chars.next();
        chars.as_str()
    }
}

/// Go's `url.PathUnescape` on one segment: `%XX` escapes decoded, and a segment holding a
/// malformed escape left as it is (Go does the same, so such a segment matches itself).
/// Decoded bytes need not be UTF-8, so segments compare as bytes.
pub(super) fn unescape(segment: &str) -> Cow<'_, [u8]> {
    let bytes = segment.as_bytes();
    if !bytes.contains(&b'%') {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|&b| (b as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Cow::Borrowed(bytes);
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

/// Decoded bytes as text for callers that want a `str`; bytes that are not UTF-8 become U+FFFD.
pub(super) fn lossy(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => String::from_utf8_lossy(b),
        Cow::Owned(b) => match String::from_utf8(b) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's `TestCleanPath` (server_test.go), then the `cleanPath` cases lb already had.
    #[test]
    fn is_clean_agrees_with_the_plain_definition_on_every_short_path() {
        let plain = |p: &str| p.starts_with('/') && !p.contains("//") && !p.split('/').any(|s| s == "." || s == "..");
        let mut paths = vec![String::new()];
        for _ in 0..7 {
            let longer: Vec<String> = paths.iter().flat_map(|p| ["/", ".", "a"].map(|c| format!("{p}{c}"))).collect();
            paths.extend(longer);
            paths.sort();
            paths.dedup();
        }
        assert!(paths.len() > 3000);
        for p in &paths {
            assert_eq!(is_clean(p), plain(p), "{p:?}");
        }
    }

    #[test]
    fn clean_path_matches_go() {
        for (input, want) in [
            ("//", "/"),
            ("/x", "/x"),
            ("//x", "/x"),
            ("x//", "/x/"),
            ("a//b/////c", "/a/b/c"),
            ("/foo/../bar/./..//baz", "/baz"),
            ("/", "/"),
            ("", "/"),
            ("a", "/a"),
            ("/a//b", "/a/b"),
            ("/a/./b/", "/a/b/"),
            ("/a/../b", "/b"),
            ("/..", "/"),
            ("/../", "/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a"),
            ("/a/b/../", "/a/"),
            ("/a/.", "/a"),
            ("/dir/b%2fc/..", "/dir"),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
        assert!(matches!(clean_path("/a/b/"), Cow::Borrowed(_)));
    }

    /// Go's `url.URL{Path: p}.String()` for decoded paths, with lb's input already escaped:
    /// what Go would escape is escaped, escapes the client sent are kept.
    #[test]
    fn paths_are_escaped_like_go() {
        for (path, want) in [
            ("/a/b", "/a/b"),
            ("/\\evil.example/", "/%5Cevil.example/"),
            ("/a b\"<>^`{|}", "/a%20b%22%3C%3E%5E%60%7B%7C%7D"),
            ("/$&+,:;=@-_.~", "/$&+,:;=@-_.~"),
            ("/!'()*[]", "/%21%27%28%29%2A%5B%5D"),
            ("/a%2Fb%zz%4", "/a%2Fb%25zz%254"),
            ("/caf\u{e9}", "/caf%C3%A9"),
        ] {
            let mut out = String::new();
            push_escaped(&mut out, path);
            assert_eq!(out, want, "{path:?}");
        }
    }

    fn segments(mut rest: Rest<'_>) -> Vec<String> {
        let mut got = Vec::new();
        while !rest.is_empty() {
            let (seg, next) = rest.split_first();
            got.push(String::from_utf8(unescape(seg).into_owned()).unwrap());
            rest = next;
        }
        got
    }

    /// Go's `TestRoutingFirstSegment` (routing_tree_test.go), then the same with the extra slash
    /// the trailing-slash redirect appends.
    #[test]
    fn segments_are_split_then_unescaped_like_go() {
        for (path, want) in [
            ("/a/b/c", &["a", "b", "c"][..]),
            ("/a/b/", &["a", "b", "/"]),
            ("/", &["/"]),
            ("/a/%62/c", &["a", "b", "c"]),
            ("/a%2Fb%2fc", &["a/b/c"]),
        ] {
            assert_eq!(segments(Rest::new(path)), want, "{path}");
        }
        for (path, want) in [("/a/b", &["a", "b", "/"][..]), ("", &["/"]), ("/a%2Fb", &["a/b", "/"])] {
            assert_eq!(segments(Rest::with_slash(path)), want, "{path} + /");
        }
    }

    /// Go's `url.PathUnescape`: all escapes decoded, or none when one is malformed; `+` is kept.
    #[test]
    fn unescape_is_all_or_nothing() {
        for (segment, want) in [
            ("plain", &b"plain"[..]),
            ("%61%62", b"ab"),
            ("%7b", b"{"),
            ("100%25", b"100%"),
            ("a+b", b"a+b"),
            ("%FF", b"\xff"),
            ("%", b"%"),
            ("%x", b"%x"),
            ("%61%zz", b"%61%zz"),
            ("%6", b"%6"),
        ] {
            assert_eq!(&*unescape(segment), want, "{segment}");
        }
        assert_eq!(lossy(unescape("a%FFb")), "a\u{FFFD}b");
        assert!(matches!(lossy(unescape("plain")), Cow::Borrowed("plain")));
    }
}
