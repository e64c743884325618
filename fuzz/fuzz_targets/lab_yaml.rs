//! Any lab file text: loading gives a lab or diagnostics (with positions), never a panic; a
//! lab that loads validates without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if text.len() > 1 << 16 {
        return;
    }
    match cloudlet_core::load::load_texts(vec![("fuzz.yaml".into(), text.to_string())], ".".into()) {
        Ok(l) => {
            let _ = cloudlet_core::validate::validate(&l.lab);
        }
        Err(cloudlet_core::LoadError::Invalid { diagnostics, .. }) => assert!(!diagnostics.is_empty()),
        Err(_) => {}
    }
});
