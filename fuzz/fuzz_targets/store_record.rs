//! Records read from the store's files: lb's own decoders (`store::codec`, the latest format)
//! and the frozen decoders of every format in `lb_migrations::records`, on arbitrary bytes. They
//! must return errors, never panic or allocate without bound (libFuzzer's malloc limit); what
//! lb decodes and accepts must encode back to a record that decodes to the same.

#![no_main]

use lb::fuzzing::{decode_backend, decode_pool, encode_backend, encode_pool};
use lb_migrations::records::{v1, v2, v3};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Each decoder sees the bytes as they are, and with their format byte, so that the fuzzer
    // reaches every format's body from any input.
    for format in [None, Some(v1::FORMAT), Some(v2::FORMAT), Some(v3::FORMAT)] {
        let mut bytes = data.to_vec();
        if let (Some(format), Some(first)) = (format, bytes.first_mut()) {
            *first = format;
        }
        if let Ok(pool) = decode_pool("/".into(), &bytes) {
            assert_eq!(decode_pool("/".into(), &encode_pool(&pool)).as_ref(), Ok(&pool));
        }
        if let Ok((config, state)) = decode_backend(&bytes) {
            let again = decode_backend(&encode_backend(&config, &state));
            assert_eq!(again, Ok((config, state)));
        }
        if let Ok(pool) = v1::decode_pool(&bytes) {
            assert_eq!(v1::decode_pool(&v1::encode_pool(&pool)), Ok(pool));
        }
        if let Ok(backend) = v1::decode_backend(&bytes) {
            assert_eq!(v1::decode_backend(&v1::encode_backend(&backend)), Ok(backend));
        }
        if let Ok(pool) = v2::decode_pool(&bytes) {
            assert_eq!(v2::decode_pool(&v2::encode_pool(&pool)), Ok(pool));
        }
        if let Ok(backend) = v2::decode_backend(&bytes) {
            assert_eq!(v2::decode_backend(&v2::encode_backend(&backend)), Ok(backend));
        }
        if let Ok(pool) = v3::decode_pool(&bytes) {
            assert_eq!(v3::decode_pool(&v3::encode_pool(&pool)).as_ref(), Ok(&pool));
            // Migration 4's conversion and the manifest's format 2 twin lose nothing.
            if let Some(old) = v3::to_v2(&pool) {
                assert_eq!(v3::from_v2(old), pool);
            }
        }
    }
});
