//! Any requested file name: a name the namespace accepts never leaves the served root.
#![no_main]

use cloudlet_pxe::tftp::namespace::check_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|name: &str| {
    if let Ok(n) = check_name(name) {
        assert!(!n.starts_with('/'));
        assert!(!n.split('/').any(|s| s == ".." || s == "." || s.is_empty()));
        assert!(!n.contains('\\') && !n.contains('\0'));
    }
});
