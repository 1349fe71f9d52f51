//! Which protocol a client speaks: HTTP/1, or HTTP/2 with prior knowledge (h2c, no TLS).
//!
//! hyper-util's automatic builder reads the preface with no deadline at all; here the first
//! bytes, the whole HTTP/2 preface and the client's first SETTINGS frame must arrive before the
//! connection's header deadline. The bytes read are handed back to hyper by [`ClientIo`], which
//! on HTTP/1 checks the framing of every request ([`framing`](super::framing)).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use super::io::{ClientIo, PREFIX};
use crate::timer::Deadline;

/// What every HTTP/2 prior-knowledge client sends first (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An HTTP/2 frame's header: length (3), type (1), flags (1), stream (4).
const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Why a connection ended before it had a protocol.
#[derive(Debug)]
pub enum Undetected {
    /// Nothing, or not enough, arrived before the deadline.
    Timeout,
    /// The client closed first.
    Closed,
    Io(io::Error),
}

/// Reads until the protocol is known, all before `deadline`: the first byte that differs from
/// the HTTP/2 preface means HTTP/1 (a request line never starts like it); the whole preface
/// means HTTP/2, whose first frame (SETTINGS) is then read too when it fits the read-ahead.
/// One read of at most 24 bytes for an HTTP/1 client, as hyper-util's automatic builder does.
pub async fn detect(io: &mut ClientIo, deadline: Instant) -> Result<Protocol, Undetected> {
    let mut timer = Deadline::at(deadline);
    std::future::poll_fn(|cx| loop {
        let want = match want(io.prefix()) {
            Ok(Protocol::Http1) => {
                io.check_requests();
                return Poll::Ready(Ok(Protocol::Http1));
            }
            Ok(protocol) => return Poll::Ready(Ok(protocol)),
            Err(want) => want,
        };
        match io.poll_read_ahead(cx, want) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(Undetected::Closed)),
            Poll::Ready(Ok(_)) => continue,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Undetected::Io(e))),
            Poll::Pending => {
                return match Pin::new(&mut timer).poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(Undetected::Timeout)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    })
    .await
}

/// The protocol `read` shows, or how many bytes in all are needed to tell.
fn want(read: &[u8]) -> Result<Protocol, usize> {
    let preface = read.len().min(PREFACE.len());
    if read[..preface] != PREFACE[..preface] {
        return Ok(Protocol::Http1);
    }
    if read.len() < PREFACE.len() {
        return Err(PREFACE.len());
    }
    let frame = &read[PREFACE.len()..];
    if frame.len() < FRAME_HEADER {
        return Err(PREFACE.len() + FRAME_HEADER);
    }
    let length = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
    let whole = PREFACE.len() + FRAME_HEADER + length;
    // Not SETTINGS (hyper refuses the connection), or a SETTINGS frame larger than the read-ahead
    // (its rest comes under the HTTP/2 idle deadline): hyper takes it from here.
    if frame[3] != SETTINGS || whole > PREFIX || read.len() >= whole {
        return Ok(Protocol::Http2);
    }
    Err(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_unlike_the_preface_means_http1() {
        assert_eq!(want(b"G"), Ok(Protocol::Http1));
        assert_eq!(want(b"POST / HTTP/1.1\r\n"), Ok(Protocol::Http1));
        assert_eq!(want(b"PRI * HTTP/1.1\r\n"), Ok(Protocol::Http1));
        assert_eq!(want(b""), Err(24));
        assert_eq!(want(b"PRI * HT"), Err(24));
    }

    #[test]
    fn http2_waits_for_the_preface_and_its_settings() {
        let mut bytes = PREFACE.to_vec();
        assert_eq!(want(&bytes), Err(33));
        bytes.extend([0, 0, 12, SETTINGS, 0, 0, 0, 0, 0]);
        assert_eq!(want(&bytes), Err(45));
        bytes.extend([0; 11]);
        assert_eq!(want(&bytes), Err(45));
        bytes.push(0);
        assert_eq!(want(&bytes), Ok(Protocol::Http2));

        let mut other = PREFACE.to_vec();
        other.extend([0, 0, 8, 0x6, 0, 0, 0, 0, 0]);
        assert_eq!(want(&other), Ok(Protocol::Http2), "not SETTINGS: hyper refuses it");
        let mut huge = PREFACE.to_vec();
        huge.extend([0, 1, 0, SETTINGS, 0, 0, 0, 0, 0]);
        assert_eq!(want(&huge), Ok(Protocol::Http2), "larger than the read-ahead");
    }
}
