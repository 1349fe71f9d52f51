//! The keys of the `backends` tree, as of schema 3: the pattern's length (u32, big-endian), the
//! pattern, then `ip:port`. The length makes the encoding prefix-free: no pattern's prefix is
//! a prefix of another pattern's keys, whatever bytes the patterns hold, so a scan of one
//! pool's backends never reaches another pool's (schema 2's `pattern NUL ip:port` let `/d`
//! reach `/d\0z`).

/// The prefix every key of a pool's backends starts with, and only they.
pub fn backend_prefix(pattern: &str) -> Vec<u8> {
    let len = u32::try_from(pattern.len()).expect("a pattern is far shorter than 4 GiB");
    let mut key = Vec::with_capacity(4 + pattern.len() + 24);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(pattern.as_bytes());
    key
}

/// The key of backend `addr` (`ip:port` as lb prints it) of pool `pattern`.
pub fn backend_key(pattern: &str, addr: &str) -> Vec<u8> {
    let mut key = backend_prefix(pattern);
    key.extend_from_slice(addr.as_bytes());
    key
}

/// The pattern and address a backend key holds, or `None` when it is not one.
pub fn split_backend_key(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = key.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Shows a key of any schema for an error message, control characters escaped.
pub fn shown(key: &[u8]) -> String {
    String::from_utf8_lossy(key).escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pattern_reaches_another_patterns_backends() {
        let patterns = ["/", "/d", "/d\0z", "/d\u{0}", "", "/a", "/a\u{0}127.0.0.1:1"];
        for p in patterns {
            for q in patterns {
                let key = backend_key(q, "127.0.0.1:1");
                assert_eq!(key.starts_with(&backend_prefix(p)), p == q, "{p:?} vs {q:?}");
                assert_eq!(split_backend_key(&key), Some((q.as_bytes(), &b"127.0.0.1:1"[..])));
            }
        }
        assert_eq!(split_backend_key(b"\0\0\0\x09/"), None);
        assert_eq!(split_backend_key(b"/"), None);
    }
}
