//! Any boot service request path and Range header: routing never panics, an install route
//! names a plain machine and token, a file route never climbs out, and a byte range always
//! lies inside the file.
#![no_main]

use cloudlet_pxe::http::byte_range;
use cloudlet_pxe::service::{Route, route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &str, &str, u32)| {
    let (post, path, range, len) = input;
    match route(post, path) {
        Route::Install { machine, token, .. } => {
            for s in [machine, token] {
                assert!(!s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            }
        }
        Route::File(name) => {
            // The namespace checks names before opening anything.
            if cloudlet_pxe::tftp::namespace::check_name(name).is_ok() {
                assert!(!name.split('/').any(|s| s == ".."));
            }
        }
        _ => {}
    }
    let len = u64::from(len);
    if let Ok(Some((a, b))) = byte_range(Some(range), len) {
        assert!(a <= b && b < len, "{range:?} in {len}: {a}-{b}");
    }
});
