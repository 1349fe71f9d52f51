//! Request IDs: every request lb answers carries one in `X-Request-Id` (or the header
//! `--request-id-header` names), so one request can be followed from the client through lb's
//! access log and own log lines to the backend.
//!
//! A client's ID is kept when it is valid ([`is_valid`]): one header, 1 to [`MAX_LEN`]
//! characters, each an RFC 9110 token character or one of `/`, `=`, `:` (so UUIDs, base64 and
//! `urn:`-style IDs pass). Anything else (empty, too long, spaces, quotes, a second header) is
//! replaced, never forwarded.
//!
//! A new ID is `PPPPPPPPPPPP-W-N`: `P` a random 48-bit prefix drawn once per process (from the
//! standard library's hash seeds, which come from the OS), `W` a number per thread, `N` that
//! thread's counter, both in hex. Unique within an instance and, with the prefix, across
//! restarts; no syscall, lock or atomic per request (a thread takes its number once).
//!
//! Cost per request (callgrind, see the README's Request IDs): one header-map lookup, and for
//! a new ID its formatting, one allocation (the header value) and one insert.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use bytes::BytesMut;
use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};

/// The longest ID lb keeps from a client.
pub const MAX_LEN: usize = 128;

/// The header lb reads and sets unless `--request-id-header` renames it.
pub const DEFAULT_HEADER: &str = "x-request-id";

/// Which header carries the request ID, if any (`--request-id`); one per data plane.
#[derive(Debug, Clone)]
pub struct RequestIds {
    header: Option<HeaderName>,
}

/// None, as lb's `--request-id auto` without an access log.
impl Default for RequestIds {
    fn default() -> Self {
        RequestIds { header: None }
    }
}

impl RequestIds {
    /// IDs in header `header`, or none at all.
    pub fn new(header: Option<HeaderName>) -> Self {
        RequestIds { header }
    }

    /// Keeps a valid ID in `headers`, or replaces an invalid one (every copy of it) or adds a
    /// new one.
    pub fn assign(&self, headers: &mut HeaderMap) {
        let Some(header) = &self.header else { return };
        match headers.entry(header) {
            Entry::Occupied(mut held) => {
                let mut values = held.iter();
                let one_valid = values.next().is_some_and(|v| is_valid(v.as_bytes())) && values.next().is_none();
                if !one_valid {
                    held.insert(generate());
                }
            }
            Entry::Vacant(empty) => {
                empty.insert(generate());
            }
        }
    }

    /// Puts the request's ID on lb's own answer to it (a redirect's `307`).
    pub fn answer_with(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if let Some((header, id)) = self.header.as_ref().and_then(|h| Some((h, request.get(h)?))) {
            response.insert(header.clone(), id.clone());
        }
    }

    /// The request's ID, once [`assign`](Self::assign) gave it one.
    pub fn of<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        headers.get(self.header.as_ref()?)
    }
}

/// `--request-id-header`: a header name, and not one lb or HTTP gives another meaning (nor a
/// hop-by-hop or credential header).
pub fn parse_header(name: &str) -> Result<HeaderName, String> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name (letters, digits and !#$%&'*+-.^_`|~)"))?;
    let reserved = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "via",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-server",
        // Hop-by-hop: stripped on the way to the backend, so the ID would never arrive.
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        // Credentials: an ID is logged and echoed on a 307, a credential must be neither.
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    ];
    if reserved.contains(&parsed.as_str()) {
        return Err(format!("{name:?} is a header lb already uses for something else"));
    }
    Ok(parsed)
}

/// Is `id` one header value lb keeps: 1 to [`MAX_LEN`] token characters, `/`, `=` or `:`?
pub fn is_valid(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.iter().all(|&b| ID_BYTE[usize::from(b)])
}

/// The bytes of a valid ID: RFC 9110 `tchar`, and `/`, `=`, `:`.
static ID_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
                    | b'/'
                    | b'='
                    | b':'
            );
        b += 1;
    }
    t
};

/// This process's 48-bit prefix, as 12 hex digits.
fn prefix() -> &'static [u8; 12] {
    static PREFIX: OnceLock<[u8; 12]> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        hasher.write_u128(now.as_nanos());
        let random = hasher.finish();
        let mut out = [0u8; 12];
        for (i, digit) in out.iter_mut().enumerate() {
            *digit = HEX[((random >> (44 - 4 * i)) & 0xf) as usize];
        }
        out
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Threads that made an ID so far.
static THREADS: AtomicU32 = AtomicU32::new(0);

/// The longest ID lb makes.
const MADE_LEN: usize = 12 + 1 + 8 + 1 + 16;
/// IDs are cut from chunks this large: one allocation per hundred or so, not one each.
const CHUNK: usize = 4096;

/// This thread's ID maker.
struct Maker {
    /// This thread's number, taken on first use.
    thread: u32,
    next: u64,
    chunk: BytesMut,
}

thread_local! {
    static MAKER: RefCell<Option<Maker>> = const { RefCell::new(None) };
}

/// A new ID.
pub fn generate() -> HeaderValue {
    let mut buf = [0u8; MADE_LEN];
    buf[..12].copy_from_slice(prefix());
    let bytes = MAKER.with(|maker| {
        let mut maker = maker.borrow_mut();
        let maker = maker.get_or_insert_with(|| Maker {
            thread: THREADS.fetch_add(1, Ordering::Relaxed),
            next: 0,
            chunk: BytesMut::new(),
        });
        let mut len = 12;
        for (value, width) in [(u64::from(maker.thread), 8), (maker.next, 16)] {
            buf[len] = b'-';
            len += 1;
            len += hex(value, &mut buf[len..len + width]);
        }
        maker.next = maker.next.wrapping_add(1);
        if maker.chunk.capacity() < len {
            maker.chunk = BytesMut::with_capacity(CHUNK);
        }
        maker.chunk.extend_from_slice(&buf[..len]);
        maker.chunk.split().freeze()
    });
    HeaderValue::from_maybe_shared(bytes).expect("hex digits and dashes make a header value")
}

/// Writes `value` in hex without leading zeros at the front of `out`; returns the digits written.
fn hex(value: u64, out: &mut [u8]) -> usize {
    let digits = (((64 - value.leading_zeros()) as usize).div_ceil(4)).max(1);
    for i in 0..digits {
        out[i] = HEX[((value >> (4 * (digits - 1 - i))) & 0xf) as usize];
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        for good in ["a", "0f8fad5b-d9cb-469f-a165-70867728950e", "YWJj+/==", "urn:x:1", &"a".repeat(MAX_LEN)] {
            assert!(is_valid(good.as_bytes()), "{good}");
        }
        for bad in ["", "a b", "a\"b", "a,b", "a;b", "a\\b", "é", &"a".repeat(MAX_LEN + 1), "a\tb"] {
            assert!(!is_valid(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let ids: Vec<HeaderValue> = (0..1000).map(|_| generate()).collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let other_thread = std::thread::spawn(generate).join().unwrap();
        assert!(!distinct.contains(&other_thread));
        for id in ids.iter().chain([&other_thread]) {
            assert!(is_valid(id.as_bytes()), "{id:?}");
        }
    }

    #[test]
    fn assign_keeps_replaces_or_adds() {
        let ids = RequestIds::new(Some(HeaderName::from_static(DEFAULT_HEADER)));
        let mut headers = HeaderMap::new();
        ids.assign(&mut headers);
        assert!(ids.of(&headers).is_some_and(|v| is_valid(v.as_bytes())));

        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("client-1"));
        ids.assign(&mut headers);
        assert_eq!(ids.of(&headers).unwrap(), "client-1");

        let mut headers = HeaderMap::new();
        headers.append("x-request-id", HeaderValue::from_static("a"));
        headers.append("x-request-id", HeaderValue::from_static("b"));
        ids.assign(&mut headers);
        assert_eq!(headers.get_all("x-request-id").iter().count(), 1);
        assert!(!["a", "b"].contains(&ids.of(&headers).unwrap().to_str().unwrap()));
    }

    #[test]
    fn header_names() {
        assert_eq!(parse_header("X-Trace-Id").unwrap().as_str(), "x-trace-id");
        for reserved in ["TE", "Upgrade", "Authorization", "Cookie"] {
            assert!(parse_header(reserved).is_err(), "{reserved}");
        }
        for bad in ["", "a b", "a:b", "Host", "via", "x-forwarded-for"] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }
}
