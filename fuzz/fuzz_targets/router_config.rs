//! Any answer from a router's configuration download or web form: reading it never panics, a
//! form token is a bounded piece of the answer without quotes, and a configuration is
//! recognized only by its own root element.
#![no_main]

use cloudlet_network::{opnsense, pfsense};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Some(token) = pfsense::form_token(body) {
        assert!(!token.is_empty() && token.len() < 300);
        assert!(!token.contains('"') && !token.contains('\''));
        assert!(String::from_utf8_lossy(body).contains(&token));
    }
    let pf = pfsense::is_config_xml(body);
    let opn = opnsense::is_config_xml(body);
    assert!(!(pf && opn), "one root element, not both");
    if pf {
        assert!(String::from_utf8_lossy(body).contains("<pfsense"));
    }
    if opn {
        assert!(String::from_utf8_lossy(body).contains("<opnsense"));
    }
});
