//! Any datagram: the TFTP parser returns a packet or an error, never panics, and what it
//! parses re-encodes consistently.
#![no_main]

use cloudlet_pxe::tftp::packet::{self, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Packet::Data { block, data: payload }) = packet::parse(data) {
        let mut out = Vec::new();
        packet::data(&mut out, block, payload);
        assert_eq!(out, data);
    }
});
