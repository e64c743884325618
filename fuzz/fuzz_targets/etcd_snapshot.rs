//! Any stream from etcd's snapshot gateway, cut anywhere: the decoder never panics, never
//! holds more than its bound, and accepts a database only with its hash.
#![no_main]

use cloudlet_backup::etcd::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u16>, &[u8])| {
    let (cuts, stream) = input;
    let mut d = Decoder::new(1 << 20);
    let (mut at, mut total) = (0, 0_usize);
    for c in cuts {
        let end = (at + usize::from(c)).min(stream.len());
        match d.feed(&stream[at..end]) {
            Ok(parts) => total += parts.iter().map(Vec::len).sum::<usize>(),
            Err(_) => return,
        }
        at = end;
    }
    match d.feed(&stream[at..]) {
        Ok(parts) => total += parts.iter().map(Vec::len).sum::<usize>(),
        Err(_) => return,
    }
    if let Ok((last, _)) = d.finish() {
        assert!(total + last.len() <= 1 << 20, "more than the bound came out");
    }
});
