//! Shared helpers of the integration tests.
#![allow(dead_code, unreachable_pub)]

use cloudlet::{Diagnostic, Lab};

/// A small lab that uses every part of the format and is valid.
pub const BASE: &str = r#"name: t
site: {domain: t.lan, timezone: UTC}
hosts:
  h1: {kind: esxi, cpus: 16, memory: 64GiB, storage: 1TiB}
networks:
  wan: {cidr: 192.168.1.0/24, gateway: 192.168.1.1, wan: true}
  lan:
    cidr: 10.0.10.0/24
    gateway: 10.0.10.1
    dhcp: {ranges: [10.0.10.100-10.0.10.199]}
  k8s:
    cidr: 10.0.20.0/24
    gateway: 10.0.20.1
    dhcp: {ranges: [10.0.20.100-10.0.20.150]}
router:
  kind: pfsense
  machine: gw
  forwards:
    - {port: 443, to: ingress}
    - {port: 51820, protocol: udp, to: vpn}
machines:
  gw:
    cpus: 2
    memory: 2GiB
    nics:
      - {network: wan, ip: 192.168.1.2}
      - {network: lan, ip: 10.0.10.1}
      - {network: k8s, ip: 10.0.20.1}
  nas:
    cpus: 2
    memory: 8GiB
    disks: [{size: 100GiB}]
    nics: [{network: k8s, ip: 10.0.20.30}]
  cp:
    cpus: 4
    memory: 8GiB
    disks: [{size: 50GiB}]
    nics: [{network: k8s, ip: 10.0.20.10}]
    boot: [network, disk]
    install: ubuntu
  w1:
    cpus: 4
    memory: 8GiB
    nics: [{network: k8s, ip: 10.0.20.11, mac: "52:54:00:00:00:11"}]
pxe:
  menu: {default: ubuntu}
  profiles:
    ubuntu:
      kernel: ubuntu/linux
      initrd: ubuntu/initrd.gz
      format: kickstart
      users:
        - name: admin
          ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINpHb06t6clW3i24r3Q/GyWHrc4rmvm8IrcBMu63IrvG a@b"]
storage:
  kind: truenas
  machine: nas
  exports:
    data: {path: /mnt/tank/data, allow: [k8s]}
cluster:
  control_plane: [cp]
  workers: [w1]
  metallb:
    pools:
      default: {addresses: [10.0.20.200-10.0.20.220]}
  ingress:
    ip: 10.0.20.200
    tls: {hosts: ["*.example.com"], secret: wildcard}
  apps:
    web:
      image: nginx:1.27
      ports: [{name: http, port: 80}]
      ingress: [{host: web.example.com}]
      volumes: [{name: data, export: data, mount: /data, size: 1GiB}]
    vpn:
      image: wireguard:1
      ports: [{name: wg, port: 51820, protocol: udp, expose: shared}]
"#;

/// Loads a lab from one in-memory file named `lab.yaml`.
pub fn lab(text: &str) -> Result<Lab, cloudlet::Error> {
    Lab::from_texts(vec![("lab.yaml".into(), text.to_string())], ".")
}

/// Replaces exactly one occurrence of `from` (panics otherwise, so a test cannot silently test nothing).
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "`{from}` must occur exactly once"
    );
    text.replacen(from, to, 1)
}

/// The 1-based line and column of the first occurrence of `needle` (after `after`, if given).
pub fn at(text: &str, needle: &str) -> (usize, usize) {
    let i = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in the lab"));
    let line = text[..i].matches('\n').count() + 1;
    let col = text[..i].rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// Validation findings of a lab that loads.
pub fn findings(text: &str) -> Vec<Diagnostic> {
    lab(text).expect("the lab loads").validate().diagnostics
}

/// The one finding with `code`, asserting there is exactly one.
pub fn only(text: &str, code: &str) -> Diagnostic {
    let all = findings(text);
    let with: Vec<&Diagnostic> = all.iter().filter(|d| d.code == code).collect();
    assert_eq!(with.len(), 1, "expected one `{code}` finding, got {all:#?}");
    with[0].clone()
}

/// Asserts a diagnostic's position.
pub fn assert_at(d: &Diagnostic, pos: (usize, usize)) {
    let loc = d
        .location
        .as_ref()
        .unwrap_or_else(|| panic!("no location: {d:?}"));
    assert_eq!(loc.file.to_str(), Some("lab.yaml"));
    assert_eq!((loc.line, loc.column), pos, "{d}");
}
