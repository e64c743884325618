//! Any record on the doctor's NFS connection: reading it never panics, only a reply to the
//! call's id is read, and a reply that mounts reports a type and rights it was sent.
#![no_main]

use cloudlet_storage::nfs::{MAX_REPLY, reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((xid, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let xid = u32::from_be_bytes(*xid);
    if let Ok(m) = reply(body, xid, "/mnt/main/mail") {
        assert!(body.len() <= MAX_REPLY);
        assert_eq!(u32::from_be_bytes([body[0], body[1], body[2], body[3]]), xid);
        // PUTROOTFH, three LOOKUPs, GETATTR and ACCESS: at least 6 results of 8 bytes.
        assert!(body.len() >= 6 * 8);
        if m.space.is_some() {
            assert!(body.len() >= 6 * 8 + 24);
        }
    }
});
