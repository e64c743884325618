//! Any datagram on the proxyDHCP ports: decoding and answering never panic, and an answer
//! never hands out an address.
#![no_main]

use std::net::Ipv4Addr;

use cloudlet_pxe::proxy_dhcp::{ProxyConfig, ProxyOffer, respond};
use cloudlet_pxe::proxy_dhcp::decode;
use dhcproto::{Encodable, Encoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode(data) else { return };
    let cfg = ProxyConfig {
        server: Ipv4Addr::new(10, 0, 0, 1),
        bios: "undionly.kpxe".into(),
        efi_x64: "ipxe.efi".into(),
        efi_arm64: Some("ipxe-arm64.efi".into()),
        ipxe_script: Some("http://10.0.0.1/boot.ipxe".into()),
        http_boot: Some("http://10.0.0.1/ipxe.efi".into()),
        http_boot_arm64: Some("http://10.0.0.1/ipxe-arm64.efi".into()),
        known: None,
        // Both offers, chosen by the datagram's last byte.
        offer: if data.last().is_some_and(|b| b & 1 == 1) {
            ProxyOffer::Port4011
        } else {
            ProxyOffer::BootFile
        },
    };
    if let Some(r) = respond(&msg, &cfg) {
        assert_eq!(r.yiaddr(), Ipv4Addr::UNSPECIFIED);
        let mut buf = Vec::new();
        r.encode(&mut Encoder::new(&mut buf)).expect("a reply encodes");
    }
});
