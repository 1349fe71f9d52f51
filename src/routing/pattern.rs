//! Pool patterns, as Go's `net/http.ServeMux` wrote them up to Go 1.21: `[host]/path`, where a
//! path ending in `/` names a whole subtree and any other path names itself.

use std::fmt;

/// A parsed, validated pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// Lowercased host without port, or empty for a pattern that applies to every host.
    host: String,
    path: String,
}

/// Why a pattern was refused.
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
    pub fn parse(raw: &str) -> Result<Pattern, PatternError> {
        let fail = |reason: &str| {
            Err(PatternError {
                pattern: raw.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if raw.is_empty() {
            return fail("empty pattern");
        }
        if raw.chars().any(|c| c.is_control()) {
            return fail("control characters are not allowed");
        }
        if raw.contains(' ') || raw.contains('\t') {
            return fail("method patterns (\"GET /path\") are not supported yet; use a path such as \"/api/\"");
        }
        if raw.contains(['{', '}']) {
            return fail("wildcards ({name}) are not supported yet; use a subtree pattern such as \"/users/\"");
        }
        let Some(slash) = raw.find('/') else {
            return fail(
                "a pattern needs a path starting with /, such as \"/\" or \"example.com/\"",
            );
        };
        let (host, path) = raw.split_at(slash);
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
        {
            return fail("host holds characters no host name has");
        }
        if path.contains(['?', '#']) {
            return fail("a pattern matches paths only; ? and # are not allowed");
        }
        Ok(Pattern {
            host: host.to_ascii_lowercase(),
            path: path.to_owned(),
        })
    }

    /// The host this pattern is limited to, or `""` for every host.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// A pattern ending in `/` matches every path under it.
    pub fn is_subtree(&self) -> bool {
        self.path.ends_with('/')
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.host, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_paths() {
        let p = Pattern::parse("Example.COM/api/").unwrap();
        assert_eq!(
            (p.host(), p.path(), p.is_subtree()),
            ("example.com", "/api/", true)
        );
        let p = Pattern::parse("/tree").unwrap();
        assert_eq!((p.host(), p.path(), p.is_subtree()), ("", "/tree", false));
    }

    #[test]
    fn refuses_what_cannot_route() {
        for (raw, why) in [
            ("", "empty"),
            ("api", "needs a path"),
            ("GET /users/", "method patterns"),
            ("/users/{id}", "wildcards"),
            ("/a?b", "? and #"),
            ("exa mple.com/", "method patterns"),
            ("ex@mple.com/", "host"),
        ] {
            let err = Pattern::parse(raw).unwrap_err();
            assert!(err.to_string().contains(why), "{raw:?}: {err}");
        }
    }
}
