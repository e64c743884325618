//! Any datagram on the doctor's DNS socket: reading it never panics, only a response with
//! the query's id is an answer, and an answer holds no more addresses than the datagram
//! could carry.
#![no_main]

use cloudlet_network::doctor::{Answer, MAX_ANSWER, answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((id, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let id = u16::from_be_bytes(*id);
    if let Some(a) = answer(body, id) {
        assert!(body.len() <= MAX_ANSWER);
        assert_eq!(u16::from_be_bytes([body[0], body[1]]), id);
        if let Answer::Addresses(v) = a {
            // Each A record takes at least 12 bytes after the header.
            assert!(v.len() * 12 <= body.len());
        }
    }
});
