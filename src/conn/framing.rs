//! A check of HTTP/1 request framing on the client's raw bytes, before hyper parses them.
//!
//! hyper's server hides evidence lb's handler would need to refuse a request that a proxy in
//! front of lb, or a backend behind it, could frame differently (request smuggling, RFC 9112
//! sections 6.3 and 11.2): it reads `Content-Length` with `Transfer-Encoding` as chunked and
//! drops the length, keeps one of two equal `Content-Length`s, and `http::Uri` drops a
//! `#fragment`. [`Scanner`] sees every byte of an HTTP/1 connection as
//! [`ClientIo`](super::ClientIo) hands it to hyper, finds each request head in the stream by
//! following the body framing of the request before it (keep-alive and pipelining: a
//! `Content-Length` body is skipped by count, a chunked one by its size lines, data and
//! trailers, exactly as hyper's decoder reads them), and refuses ([`Refusal`]):
//!
//! - `Content-Length` and `Transfer-Encoding` in one head (whatever the coding);
//! - `Content-Length` twice, even with equal values, and `Transfer-Encoding` twice;
//! - a `#` in the request-target;
//! - a chunked body hyper's decoder would refuse too (bad size, no CRLF after the data, ...),
//!   when the head it belongs to has not reached hyper yet (it came in the same read).
//!
//! Coding names are case-insensitive and a field value's surrounding whitespace is not part
//! of it (RFC 9110 sections 5.5 and 10.1.4): `Transfer-Encoding:  Chunked ` alone is chunked,
//! as nginx and HAProxy read it.
//!
//! Its state is a few integers: it buffers nothing, so a head or a chunk-size line split over
//! reads at any byte gets the same verdict as in one read. On what it cannot follow
//! (obs-fold, a `Content-Length` that is no number, a coding other than a final `chunked`)
//! it gives up on the connection: hyper refuses those itself and stays the authority.
//!
//! Cost: a header line that cannot be one of the two framing headers (its first byte is not
//! `c` or `t`) is skipped with one `memchr` for its end, the request line with two; nothing is
//! allocated.

use memchr::{memchr, memchr2};

/// Why a request is refused (with `400`) before hyper sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    LengthAndCoding,
    LengthTwice,
    CodingTwice,
    Fragment,
    MalformedChunk,
}

impl Refusal {
    /// For the log.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::LengthAndCoding => "both Content-Length and Transfer-Encoding",
            Refusal::LengthTwice => "Content-Length twice",
            Refusal::CodingTwice => "Transfer-Encoding twice",
            Refusal::Fragment => "a #fragment in the request-target",
            Refusal::MalformedChunk => "malformed chunked body",
        }
    }

    /// lb's whole answer on the wire: `400`, a short text body, and the connection closes.
    pub fn response(self) -> &'static [u8] {
        macro_rules! answer {
            ($length:literal, $body:literal) => {
                concat!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ",
                    $length,
                    "\r\nconnection: close\r\n\r\n",
                    $body
                )
                .as_bytes()
            };
        }
        match self {
            Refusal::LengthAndCoding => answer!("59", "400 bad request: both Content-Length and Transfer-Encoding\n"),
            Refusal::LengthTwice => answer!("38", "400 bad request: Content-Length twice\n"),
            Refusal::CodingTwice => answer!("41", "400 bad request: Transfer-Encoding twice\n"),
            Refusal::Fragment => answer!("51", "400 bad request: a #fragment in the request-target\n"),
            Refusal::MalformedChunk => answer!("40", "400 bad request: malformed chunked body\n"),
        }
    }

    /// Found in a body, after its head ended.
    pub fn in_body(self) -> bool {
        self == Refusal::MalformedChunk
    }
}

/// What the bytes so far show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Requests the scanner followed, none refused.
    Clean,
    /// The request starting at stream offset `head` is refused because of the byte at `at`.
    /// The bytes before `cut` never hold all of its head (`cut` is `at` for what is found in
    /// the head; for a body, the LF that ended the head).
    Refuse { why: Refusal, head: u64, at: u64, cut: u64 },
    /// Something it cannot follow: it checks nothing more on this connection.
    GaveUp,
}

/// The two header fields that frame a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Length,
    Coding,
}

impl Field {
    fn name(self) -> &'static [u8] {
        match self {
            Field::Length => b"content-length",
            Field::Coding => b"transfer-encoding",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Field::Length => 1,
            Field::Coding => 2,
        }
    }
}

const CHUNKED: &[u8] = b"chunked";
/// In [`Scanner::seen`]: the `Transfer-Encoding` does not end in `chunked`.
const NOT_CHUNKED: u8 = 4;

#[derive(Debug, Clone, Copy)]
enum State {
    /// Between requests: empty lines are skipped (as httparse does), the next byte begins one.
    Idle,
    Method,
    /// From the space after the method to the end of the request line.
    Target,
    /// At the start of a header line, or of the empty line that ends the head.
    LineStart,
    /// After a CR at the start of a line.
    LineCr,
    /// In a header name that matched `matched` bytes of the field's so far.
    Name {
        field: Field,
        matched: u8,
    },
    /// In a header line that does not matter, to its LF.
    Skip,
    /// In `Content-Length`'s value (in `count`): digits seen, whitespace after them.
    Length {
        digits: bool,
        ended: bool,
    },
    /// In `Transfer-Encoding`'s value, matching its last coding against `chunked`: bytes
    /// matched, whitespace after them, or something else (`bad`).
    Coding {
        matched: u8,
        ended: bool,
        bad: bool,
    },
    /// A `Content-Length` body: `count` bytes left.
    Body,
    // A chunked body, state by state as hyper's decoder (`ChunkedState`) reads it; `count` is
    // the chunk size, then the data left.
    ChunkStart,
    ChunkSize,
    ChunkLws,
    ChunkExt,
    ChunkSizeLf,
    ChunkData,
    ChunkDataCr,
    ChunkDataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
    Done(Verdict),
}

/// One connection's scanner; feed it every byte in order with [`scan`](Scanner::scan).
#[derive(Debug, Clone)]
pub struct Scanner {
    state: State,
    /// Stream offset of the next byte.
    pos: u64,
    /// Stream offset of the current request's first byte.
    head: u64,
    /// Stream offset of the LF that ended the current request's head.
    head_end: u64,
    /// `Content-Length`'s value, then the body or chunk bytes left.
    count: u64,
    /// [`Field::bit`]s of the framing headers the current head has.
    seen: u8,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner { state: State::Idle, pos: 0, head: 0, head_end: 0, count: 0, seen: 0 }
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// How far [`common_head`] took a head.
enum Common {
    /// To the end of a head without a framing header, `len` bytes with its final LF.
    Ended(usize),
    /// To the start of a line the state machine must read (a framing header, an obs-fold, a
    /// CR alone, or the end of the read).
    LineStart(usize),
    /// Into a header line that does not matter, whose end is in a later read.
    Skip(usize),
    /// Not past the request line: the state machine reads it.
    Other,
}

/// The common case, quicker than the state machine gets there (which it must agree with): a
/// head that starts in this read, whose request line has a space, no `#` and its LF here, and
/// whose header lines start with neither `c` nor `t`. One `memchr` a line.
fn common_head(rest: &[u8]) -> Common {
    let Some(lf) = memchr2(b'#', b'\n', rest) else { return Common::Other };
    if rest[lf] == b'#' || memchr(b' ', &rest[..lf]).is_none() {
        return Common::Other;
    }
    let mut p = lf + 1;
    loop {
        match rest.get(p) {
            Some(b'\n') => return Common::Ended(p + 1),
            Some(b'\r') if rest.get(p + 1) == Some(&b'\n') => return Common::Ended(p + 2),
            None | Some(b'\r' | b'c' | b'C' | b't' | b'T' | b' ' | b'\t') => return Common::LineStart(p),
            Some(_) => match memchr(b'\n', &rest[p..]) {
                Some(k) => p += k + 1,
                None => return Common::Skip(p),
            },
        }
    }
}

impl Scanner {
    /// Stream offset of the next byte [`scan`](Scanner::scan) will see.
    pub fn offset(&self) -> u64 {
        self.pos
    }

    /// Reads the next `bytes` of the stream. The first verdict other than [`Verdict::Clean`]
    /// is final: later calls return it again and read nothing.
    pub fn scan(&mut self, bytes: &[u8]) -> Verdict {
        if let State::Done(verdict) = self.state {
            return verdict;
        }
        let base = self.pos;
        let n = bytes.len();
        let mut i = 0;
        macro_rules! done {
            ($verdict:expr) => {{
                let verdict = $verdict;
                self.state = State::Done(verdict);
                return verdict;
            }};
        }
        macro_rules! refuse {
            ($why:expr, $at:expr) => {{
                let at = base + $at as u64;
                let cut = if $why.in_body() { self.head_end } else { at };
                done!(Verdict::Refuse { why: $why, head: self.head, at, cut })
            }};
        }
        while i < n {
            match self.state {
                State::Idle => {
                    if matches!(bytes[i], b'\r' | b'\n') {
                        i += 1;
                        continue;
                    }
                    self.head = base + i as u64;
                    self.seen = 0;
                    self.count = 0;
                    self.state = State::Method;
                    match common_head(&bytes[i..]) {
                        Common::Ended(len) => {
                            i += len;
                            self.state = self.ended(base + i as u64 - 1);
                        }
                        Common::LineStart(at) => {
                            i += at;
                            self.state = State::LineStart;
                        }
                        Common::Skip(at) => {
                            i += at;
                            self.state = State::Skip;
                        }
                        Common::Other => {}
                    }
                }
                State::Method => match memchr2(b' ', b'\n', &bytes[i..]) {
                    Some(k) if bytes[i + k] == b' ' => {
                        i += k + 1;
                        self.state = State::Target;
                    }
                    // No target: hyper refuses it.
                    Some(_) => done!(Verdict::GaveUp),
                    None => i = n,
                },
                State::Target => match memchr2(b'#', b'\n', &bytes[i..]) {
                    Some(k) if bytes[i + k] == b'#' => refuse!(Refusal::Fragment, i + k),
                    Some(k) => {
                        i += k + 1;
                        self.state = State::LineStart;
                    }
                    None => i = n,
                },
                State::LineStart => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match b {
                        b'\r' => State::LineCr,
                        b'\n' => match self.ended(base + i as u64 - 1) {
                            State::Done(verdict) => done!(verdict),
                            next => next,
                        },
                        // obs-fold: hyper refuses it.
                        b' ' | b'\t' => done!(Verdict::GaveUp),
                        b'c' | b'C' => State::Name { field: Field::Length, matched: 1 },
                        b't' | b'T' => State::Name { field: Field::Coding, matched: 1 },
                        _ => State::Skip,
                    };
                }
                State::LineCr => {
                    if bytes[i] != b'\n' {
                        done!(Verdict::GaveUp);
                    }
                    i += 1;
                    self.state = match self.ended(base + i as u64 - 1) {
                        State::Done(verdict) => done!(verdict),
                        next => next,
                    };
                }
                State::Name { field, matched } => {
                    let name = field.name();
                    let b = bytes[i];
                    if usize::from(matched) == name.len() {
                        if b != b':' {
                            // Another name (or a space before the colon, which hyper refuses).
                            self.state = State::Skip;
                            continue;
                        }
                        if self.seen & field.bit() != 0 {
                            let why = match field {
                                Field::Length => Refusal::LengthTwice,
                                Field::Coding => Refusal::CodingTwice,
                            };
                            refuse!(why, i);
                        }
                        if self.seen != 0 {
                            refuse!(Refusal::LengthAndCoding, i);
                        }
                        self.seen |= field.bit();
                        i += 1;
                        self.state = match field {
                            Field::Length => State::Length { digits: false, ended: false },
                            Field::Coding => State::Coding { matched: 0, ended: false, bad: false },
                        };
                    } else if b.to_ascii_lowercase() == name[usize::from(matched)] {
                        i += 1;
                        self.state = State::Name { field, matched: matched + 1 };
                    } else {
                        self.state = State::Skip;
                    }
                }
                State::Skip => match memchr(b'\n', &bytes[i..]) {
                    Some(k) => {
                        i += k + 1;
                        self.state = State::LineStart;
                    }
                    None => i = n,
                },
                State::Length { digits, ended } => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match b {
                        b'0'..=b'9' if !ended => {
                            match self.count.checked_mul(10).and_then(|c| c.checked_add(u64::from(b - b'0'))) {
                                Some(count) => self.count = count,
                                None => done!(Verdict::GaveUp),
                            }
                            State::Length { digits: true, ended: false }
                        }
                        b' ' | b'\t' | b'\r' => State::Length { digits, ended: digits },
                        b'\n' if digits => State::LineStart,
                        // Empty, a list, a sign, more than one number: hyper refuses them.
                        _ => done!(Verdict::GaveUp),
                    };
                }
                State::Coding { matched, ended, bad } => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match b {
                        b',' => State::Coding { matched: 0, ended: false, bad: false },
                        b' ' | b'\t' | b'\r' if matched == 0 && !bad => State::Coding { matched, ended, bad },
                        b' ' | b'\t' | b'\r' => State::Coding { matched, ended: true, bad: bad || matched < 7 },
                        b'\n' if !bad && usize::from(matched) == CHUNKED.len() => State::LineStart,
                        // The last coding is not `chunked`: hyper refuses the request, but a
                        // `Content-Length` after it is refused here first.
                        b'\n' => {
                            self.seen |= NOT_CHUNKED;
                            State::LineStart
                        }
                        _ if !bad
                            && !ended
                            && usize::from(matched) < CHUNKED.len()
                            && b.to_ascii_lowercase() == CHUNKED[usize::from(matched)] =>
                        {
                            State::Coding { matched: matched + 1, ended, bad }
                        }
                        _ => State::Coding { matched, ended, bad: true },
                    };
                }
                State::Body => {
                    let take = (n - i).min(usize::try_from(self.count).unwrap_or(usize::MAX));
                    i += take;
                    self.count -= take as u64;
                    if self.count == 0 {
                        self.state = State::Idle;
                    }
                }
                State::ChunkStart => {
                    let Some(digit) = hex(bytes[i]) else { refuse!(Refusal::MalformedChunk, i) };
                    self.count = digit;
                    i += 1;
                    self.state = State::ChunkSize;
                }
                State::ChunkSize => {
                    let b = bytes[i];
                    self.state = match (b, hex(b)) {
                        (_, Some(digit)) => {
                            match self.count.checked_mul(16).and_then(|c| c.checked_add(digit)) {
                                Some(count) => self.count = count,
                                None => refuse!(Refusal::MalformedChunk, i),
                            }
                            State::ChunkSize
                        }
                        (b' ' | b'\t', _) => State::ChunkLws,
                        (b';', _) => State::ChunkExt,
                        (b'\r', _) => State::ChunkSizeLf,
                        _ => refuse!(Refusal::MalformedChunk, i),
                    };
                    i += 1;
                }
                State::ChunkLws => {
                    self.state = match bytes[i] {
                        b' ' | b'\t' => State::ChunkLws,
                        b';' => State::ChunkExt,
                        b'\r' => State::ChunkSizeLf,
                        _ => refuse!(Refusal::MalformedChunk, i),
                    };
                    i += 1;
                }
                State::ChunkExt => match memchr2(b'\r', b'\n', &bytes[i..]) {
                    Some(k) if bytes[i + k] == b'\r' => {
                        i += k + 1;
                        self.state = State::ChunkSizeLf;
                    }
                    Some(k) => refuse!(Refusal::MalformedChunk, i + k),
                    None => i = n,
                },
                State::ChunkSizeLf => {
                    if bytes[i] != b'\n' {
                        refuse!(Refusal::MalformedChunk, i);
                    }
                    i += 1;
                    self.state = if self.count == 0 { State::EndCr } else { State::ChunkData };
                }
                State::ChunkData => {
                    let take = (n - i).min(usize::try_from(self.count).unwrap_or(usize::MAX));
                    i += take;
                    self.count -= take as u64;
                    if self.count == 0 {
                        self.state = State::ChunkDataCr;
                    }
                }
                State::ChunkDataCr | State::ChunkDataLf | State::TrailerLf | State::EndLf => {
                    let (want, next) = match self.state {
                        State::ChunkDataCr => (b'\r', State::ChunkDataLf),
                        State::ChunkDataLf => (b'\n', State::ChunkStart),
                        State::TrailerLf => (b'\n', State::EndCr),
                        _ => (b'\n', State::Idle),
                    };
                    if bytes[i] != want {
                        refuse!(Refusal::MalformedChunk, i);
                    }
                    i += 1;
                    self.state = next;
                }
                State::EndCr => {
                    // Any other byte begins a trailer line (hyper keeps it, LF included).
                    self.state = if bytes[i] == b'\r' { State::EndLf } else { State::Trailer };
                    i += 1;
                }
                State::Trailer => match memchr(b'\r', &bytes[i..]) {
                    Some(k) => {
                        i += k + 1;
                        self.state = State::TrailerLf;
                    }
                    None => i = n,
                },
                State::Done(_) => unreachable!("a final verdict returns at once"),
            }
        }
        self.pos = base + n as u64;
        Verdict::Clean
    }

    /// What follows the head that just ended with the LF at `lf`.
    fn ended(&mut self, lf: u64) -> State {
        self.head_end = lf;
        if self.seen & NOT_CHUNKED != 0 {
            State::Done(Verdict::GaveUp)
        } else if self.seen & Field::Coding.bit() != 0 {
            State::ChunkStart
        } else if self.count > 0 {
            State::Body
        } else {
            State::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict over `input` fed in pieces cut at `cuts` (ascending).
    fn scan_split(input: &[u8], cuts: &[usize]) -> Verdict {
        let mut scanner = Scanner::default();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let verdict = scanner.scan(&input[from..cut]);
            if verdict != Verdict::Clean {
                return verdict;
            }
            from = cut;
        }
        Verdict::Clean
    }

    fn whole(input: &[u8]) -> Verdict {
        Scanner::default().scan(input)
    }

    /// The verdict over `input` whole, checked to be the same over every split in two and
    /// three pieces.
    fn verdict(input: &[u8]) -> Verdict {
        let want = whole(input);
        for a in 0..=input.len() {
            assert_eq!(scan_split(input, &[a]), want, "cut at {a} of {:?}", String::from_utf8_lossy(input));
        }
        for a in (0..=input.len()).step_by(3) {
            for b in a..=input.len() {
                assert_eq!(scan_split(input, &[a, b]), want, "cuts {a}, {b}");
            }
        }
        want
    }

    fn refused(input: &[u8]) -> Option<(Refusal, u64, u64)> {
        match verdict(input) {
            Verdict::Refuse { why, head, at, cut } => {
                let before = &input[head as usize..cut as usize];
                assert!(cut > head && cut <= at, "{head} {cut} {at}");
                assert!(!before.windows(4).any(|w| w == b"\r\n\r\n"), "the head is complete before {cut}");
                assert!(!before.windows(2).any(|w| w == b"\n\n"), "the head is complete before {cut}");
                Some((why, head, at))
            }
            _ => None,
        }
    }

    const PIPELINE: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\nCookie: c=1\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: x\r\ncontent-length: 12\r\n\r\nGET / HTTP/1\
        \r\nPUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n\
        5;name=v\r\nhello\r\n10 \r\nGET /#x HTTP/1.1\r\n0\r\nExpires: never\r\n\r\n\
        \r\nGET /d?q HTTP/1.1\nHost: x\nTE: trailers\nTransfer-Encoding:  Chunked \n\n0\r\n\r\n\
        DELETE /e HTTP/1.0\r\nContent-Length:  0 \r\n\r\n";

    #[test]
    fn a_pipeline_of_valid_requests_is_clean_at_every_split() {
        assert_eq!(verdict(PIPELINE), Verdict::Clean);
        let mut scanner = Scanner::default();
        for b in PIPELINE {
            assert_eq!(scanner.scan(std::slice::from_ref(b)), Verdict::Clean);
        }
        assert!(matches!(scanner.state, State::Idle), "{:?}", scanner.state);
    }

    /// Each head of [`PIPELINE`] is found where it starts: a bad request after it is refused
    /// with its own offset.
    #[test]
    fn the_request_after_the_pipeline_is_found_at_its_offset() {
        for (bad, why, at) in [
            (&b"GET /x#y HTTP/1.1\r\n\r\n"[..], Refusal::Fragment, 6),
            (b"POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx", Refusal::LengthTwice, 50),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
                Refusal::CodingTwice,
                62,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Refusal::LengthAndCoding,
                53,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                Refusal::LengthAndCoding,
                59,
            ),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX", Refusal::MalformedChunk, 55),
        ] {
            let mut input = PIPELINE.to_vec();
            input.extend_from_slice(bad);
            let start = PIPELINE.len() as u64;
            assert_eq!(refused(&input), Some((why, start, start + at)), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn framing_evidence_hyper_hides_is_refused() {
        let cases: &[(&[u8], Refusal)] = &[
            (b"GET /s#frag HTTP/1.1\r\nHost: x\r\n\r\n", Refusal::Fragment),
            (b"GET http://a/#f HTTP/1.1\r\n", Refusal::Fragment),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", Refusal::LengthTwice),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n", Refusal::CodingTwice),
            (b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding:  chunked\r\n\r\n", Refusal::LengthAndCoding),
            (b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked \r\n\r\n", Refusal::LengthAndCoding),
            (b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: Chunked\r\n\r\n", Refusal::LengthAndCoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\n", Refusal::LengthAndCoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n", Refusal::MalformedChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Refusal::MalformedChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 5\r\n", Refusal::MalformedChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\n", Refusal::MalformedChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n", Refusal::MalformedChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n", Refusal::MalformedChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\rz", Refusal::MalformedChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rx", Refusal::MalformedChunk),
        ];
        for &(input, want) in cases {
            let got = refused(input).map(|(why, head, _)| (why, head));
            assert_eq!(got, Some((want, 0)), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn what_hyper_refuses_itself_is_left_to_it() {
        for input in [
            &b"GET /s HTTP/1.1\r\nX: a\r\n b\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chun ked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / HTTP/1.1\r\n\rX",
        ] {
            assert_eq!(verdict(input), Verdict::GaveUp, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn names_that_only_begin_like_framing_headers_are_other_headers() {
        for input in [
            &b"GET / HTTP/1.1\r\nContent-Type: a\r\nContent-Length2: 1\r\nTransfer: x\r\nTE: gzip\r\n\r\nGET / HTTP/1.1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: identity,chunked\r\n\r\n0\r\n\r\n",
            b"GET /a?b=c%23d HTTP/1.1\r\nX-Hash: #1\r\n\r\n",
            b"G#T / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(verdict(input), Verdict::Clean, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn a_verdict_is_final_and_state_stays_bounded() {
        let mut scanner = Scanner::default();
        let bad = b"GET /#x HTTP/1.1\r\n\r\n";
        let first = scanner.scan(bad);
        assert!(matches!(first, Verdict::Refuse { .. }));
        assert_eq!(scanner.scan(b"GET / HTTP/1.1\r\n\r\n"), first);
        assert!(std::mem::size_of::<Scanner>() <= 96, "{}", std::mem::size_of::<Scanner>());
    }

    #[test]
    fn every_answer_declares_its_body_length() {
        for why in [
            Refusal::LengthAndCoding,
            Refusal::LengthTwice,
            Refusal::CodingTwice,
            Refusal::Fragment,
            Refusal::MalformedChunk,
        ] {
            let text = std::str::from_utf8(why.response()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
            assert_eq!(length, body.len(), "{why:?}");
            assert!(body.contains(why.reason()), "{why:?}");
        }
    }

    /// The property the fuzz target checks too: any split of any input, same verdict.
    #[test]
    fn random_inputs_split_anywhere_get_the_verdict_of_the_whole() {
        let pieces: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            b"POST /x HTTP/1.1\r\n",
            b"Host: a\r\n",
            b"Content-Length: 3\r\n",
            b"content-length: 0\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"transfer-encoding: gzip\r\n",
            b"X: #\r\n",
            b"\r\n",
            b"\n",
            b"3\r\nabc\r\n",
            b"0\r\n\r\n",
            b"0\r\nT: v\r\n\r\n",
            b"abc",
            b"#",
            b" ",
            b"\r",
            b"ff;x=y\r\n",
        ];
        let mut rng = fastrand::Rng::with_seed(12);
        for _ in 0..3000 {
            let mut input = Vec::new();
            for _ in 0..rng.usize(1..12) {
                input.extend_from_slice(pieces[rng.usize(..pieces.len())]);
            }
            let want = whole(&input);
            for _ in 0..8 {
                let mut cuts: Vec<usize> = (0..rng.usize(0..6)).map(|_| rng.usize(0..=input.len())).collect();
                cuts.sort_unstable();
                assert_eq!(scan_split(&input, &cuts), want, "{:?} cut at {cuts:?}", String::from_utf8_lossy(&input));
            }
        }
    }
}
