//! A backend's response, as lb's own client reads it: the head (`upstream::codec::parse_head`)
//! and the body after it (`upstream::body`'s decoder), on arbitrary bytes. The first byte says
//! whether the request was a `HEAD` and seeds where the rest is split into reads; the bytes are
//! decoded once as they arrive in those reads and once all at once, and both must agree: the
//! same head, the same body bytes, and the same ending (complete, broken, or cut off).

#![no_main]

use bytes::{BufMut, BytesMut};
use lb::fuzzing::{parse_response_head, BodyDecoder, Decoded};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Ending {
    /// The head was refused.
    BadHead,
    /// The bytes ended inside the head.
    CutHead,
    Complete,
    Broken,
    /// The bytes ended inside the body (a normal end for a body read until close).
    CutBody,
}

#[derive(Debug, PartialEq)]
struct Read {
    head: Option<(u16, Vec<(String, Vec<u8>)>, bool, Option<u64>)>,
    body: Vec<u8>,
    ending: Ending,
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else { return };
    let head_request = flags & 1 == 1;
    let whole = read(stream, head_request, &mut std::iter::repeat(stream.len().max(1)));
    let mut seed = u32::from(flags >> 1) | 1;
    let mut sizes = std::iter::from_fn(move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        Some(1 + (seed % 64) as usize)
    });
    let pieces = read(stream, head_request, &mut sizes);
    assert_eq!(whole, pieces, "read whole vs in pieces");
});

/// Decodes `stream` as it arrives in reads of `sizes`.
fn read(stream: &[u8], head_request: bool, sizes: &mut dyn Iterator<Item = usize>) -> Read {
    let mut rest = stream;
    let mut buf = BytesMut::new();
    let mut feed = |buf: &mut BytesMut| -> bool {
        if rest.is_empty() {
            return false;
        }
        let n = sizes.next().unwrap().min(rest.len());
        buf.put_slice(&rest[..n]);
        rest = &rest[n..];
        true
    };
    let mut read = Read { head: None, body: Vec::new(), ending: Ending::CutHead };
    let head = loop {
        if !feed(&mut buf) {
            return read;
        }
        match parse_response_head(&mut buf, head_request) {
            Ok(Some(head)) => break head,
            Ok(None) => {}
            Err(_) => {
                read.ending = Ending::BadHead;
                return read;
            }
        }
    };
    let mut headers: Vec<(String, Vec<u8>)> =
        head.headers.iter().map(|(name, value)| (name.to_string(), value.as_bytes().to_vec())).collect();
    headers.sort();
    read.head = Some((head.status.as_u16(), headers, head.keep_alive, head.length));
    let mut body: BodyDecoder = head.body;
    loop {
        match body.next(&mut buf) {
            Decoded::Data(data) => {
                assert!(!data.is_empty(), "an empty data frame");
                read.body.extend_from_slice(&data);
                if let Some(length) = head.length {
                    assert!(read.body.len() as u64 <= length, "more body than content-length");
                }
            }
            Decoded::End => {
                assert!(body.is_done());
                if let Some(length) = head.length {
                    assert_eq!(read.body.len() as u64, length, "a body of content-length");
                }
                read.ending = Ending::Complete;
                return read;
            }
            Decoded::Broken(_) => {
                read.ending = Ending::Broken;
                return read;
            }
            Decoded::More => {
                if !feed(&mut buf) {
                    read.ending = Ending::CutBody;
                    return read;
                }
            }
        }
    }
}
