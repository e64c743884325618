//! Whole-lab validation: every rule with a valid and an invalid lab, asserting the code,
//! the message and the exact position.
#![allow(missing_docs)]

mod common;
use common::*;

fn at_nth(text: &str, needle: &str, n: usize) -> (usize, usize) {
    let mut off = 0;
    for _ in 0..n {
        off += text[off..].find(needle).expect("needle") + needle.len();
    }
    let i = off + text[off..].find(needle).expect("needle");
    let line = text[..i].matches('\n').count() + 1;
    let col = i - text[..i].rfind('\n').map_or(0, |p| p + 1) + 1;
    (line, col)
}

#[test]
fn the_base_lab_and_the_seed_are_valid() {
    assert_eq!(findings(BASE), vec![]);
    let seed = cloudlet::Lab::load(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed")).unwrap();
    assert_eq!(seed.validate().diagnostics, vec![]);
}

#[test]
fn address_outside_its_network() {
    let t = edit(BASE, "ip: 10.0.20.11,", "ip: 10.0.30.11,");
    let d = only(&t, "address-outside-network");
    assert_at(&d, at(&t, "10.0.30.11"));
    assert!(
        d.message
            .contains("not inside network `k8s` (10.0.20.0/24)"),
        "{}",
        d.message
    );
}

#[test]
fn network_and_broadcast_addresses_are_reserved() {
    let t = edit(BASE, "ip: 10.0.20.10}", "ip: 10.0.20.255}");
    let d = only(&t, "address-reserved");
    assert_at(&d, at(&t, "10.0.20.255"));
}

#[test]
fn an_address_used_twice() {
    let t = edit(BASE, "ip: 10.0.20.11,", "ip: 10.0.20.10,");
    let d = only(&t, "address-reused");
    assert_at(&d, at(&t, "10.0.20.10,"));
    assert_eq!(d.message, "address 10.0.20.10 is used twice");
    let rel = d.related[0].location.as_ref().unwrap();
    assert_eq!((rel.line, rel.column), at(&t, "10.0.20.10}"));
}

#[test]
fn only_the_router_holds_the_gateway() {
    let t = edit(BASE, "ip: 10.0.20.30}", "ip: 10.0.20.1}");
    let all = findings(&t);
    let d = all
        .iter()
        .find(|d| d.message.contains("is the gateway of network `k8s`"))
        .expect("gateway finding");
    assert_at(d, at_nth(&t, "10.0.20.1}", 1));
}

#[test]
fn static_addresses_dhcp_ranges_and_pools_do_not_overlap() {
    let t = edit(BASE, "ip: 10.0.20.30}", "ip: 10.0.20.120}");
    let d = only(&t, "range-overlap");
    assert_at(&d, at(&t, "10.0.20.120"));
    assert!(
        d.message
            .contains("address 10.0.20.120 overlaps DHCP range 10.0.20.100-10.0.20.150"),
        "{}",
        d.message
    );

    let t = edit(BASE, "10.0.20.100-10.0.20.150", "10.0.20.100-10.0.20.205");
    let d = only(&t, "range-overlap");
    assert_at(&d, at(&t, "10.0.20.200-10.0.20.220"));
    assert!(d.message.contains("MetalLB pool"));
}

#[test]
fn dhcp_range_outside_its_network() {
    let t = edit(BASE, "10.0.10.100-10.0.10.199", "10.0.11.100-10.0.11.199");
    let d = only(&t, "address-outside-network");
    assert_at(&d, at(&t, "10.0.11.100-10.0.11.199"));
}

#[test]
fn layer2_pools_sit_on_the_nodes_segment() {
    let t = edit(
        BASE,
        "addresses: [10.0.20.200-10.0.20.220]",
        "addresses: [10.0.10.200-10.0.10.220]",
    );
    let d = only(&t, "pool-off-segment");
    assert_at(&d, at(&t, "10.0.10.200-10.0.10.220"));
    assert!(
        d.message
            .contains("network `lan`, where no cluster node has a NIC")
    );
}

#[test]
fn pinned_vips_come_from_a_pool() {
    let t = edit(BASE, "ip: 10.0.20.200\n", "ip: 10.0.20.230\n");
    let d = only(&t, "vip-not-in-pool");
    assert_at(&d, at(&t, "10.0.20.230"));
}

#[test]
fn macs_are_unicast_and_unique() {
    let t = edit(BASE, "\"52:54:00:00:00:11\"", "\"53:54:00:00:00:11\"");
    let d = only(&t, "mac-invalid");
    assert_at(&d, at(&t, "\"53:54"));

    let t = edit(
        BASE,
        "ip: 10.0.20.30}",
        "ip: 10.0.20.30, mac: \"52:54:00:00:00:11\"}",
    );
    let d = only(&t, "mac-reused");
    assert_at(&d, at_nth(&t, "\"52:54:00:00:00:11\"", 1));
}

#[test]
fn names_are_dns_labels() {
    let t = edit(
        BASE,
        "networks:\n",
        "networks:\n  Bad_Net: {cidr: 172.16.0.0/24}\n",
    );
    let d = only(&t, "invalid-name");
    assert_at(&d, at(&t, "Bad_Net"));
    assert_eq!(d.message, "`Bad_Net` is not a valid network name");
    assert!(d.help.as_deref().unwrap().contains("bad-net"));
}

#[test]
fn references_to_unknown_things_suggest_the_nearest() {
    let t = edit(
        BASE,
        "{network: lan, ip: 10.0.10.1}",
        "{network: lna, ip: 10.0.10.1}",
    );
    let d = only(&t, "unknown-network");
    assert_at(&d, at(&t, "lna"));
    assert_eq!(d.help.as_deref(), Some("did you mean `lan`?"));

    let t = edit(BASE, "install: ubuntu\n", "install: ubuntoo\n");
    let d = only(&t, "unknown-profile");
    assert_at(&d, at(&t, "ubuntoo"));
    assert_eq!(d.help.as_deref(), Some("did you mean `ubuntu`?"));
}

#[test]
fn machines_say_their_host_when_there_are_several() {
    let t = edit(
        BASE,
        "hosts:\n",
        "hosts:\n  h2: {kind: esxi, cpus: 16, memory: 64GiB, storage: 1TiB}\n",
    );
    let all: Vec<_> = findings(&t)
        .into_iter()
        .filter(|d| d.code == "host-required")
        .collect();
    assert_eq!(all.len(), 4);
    assert_at(&all[0], at(&t, "gw:\n"));
}

#[test]
fn capacity_of_the_host() {
    let t = edit(BASE, "memory: 64GiB", "memory: 16GiB");
    let d = only(&t, "capacity");
    assert_at(&d, at(&t, "h1:"));
    assert!(
        d.message.contains("need 26GiB of memory; it has 16GiB"),
        "{}",
        d.message
    );
    let t = edit(
        &t,
        "{kind: esxi, cpus: 16, memory: 16GiB, storage: 1TiB}",
        "{kind: esxi, cpus: 16, memory: 16GiB, storage: 1TiB, overcommit: {memory: 2.0}}",
    );
    assert!(findings(&t).is_empty(), "overcommit is configurable");
}

#[test]
fn network_booting_machines_need_an_install_profile() {
    let t = edit(
        BASE,
        "mac: \"52:54:00:00:00:11\"}]\n",
        "mac: \"52:54:00:00:00:11\"}]\n    boot: [network, disk]\n",
    );
    let d = only(&t, "install-profile");
    assert_at(&d, at_nth(&t, "[network, disk]", 1));
    assert!(
        d.message
            .contains("machine `w1` boots from the network but has no install profile")
    );
}

#[test]
fn plaintext_passwords_are_refused() {
    let t = edit(
        BASE,
        "        - name: admin\n",
        "        - name: admin\n          password: hunter2\n",
    );
    let d = only(&t, "plaintext-password");
    assert_at(&d, at(&t, "password:"));
    assert!(d.help.unwrap().contains("mkpasswd -m sha-512"));
}

#[test]
fn a_password_comes_from_a_secret_or_a_hash_not_both() {
    let ok = edit(
        BASE,
        "        - name: admin\n",
        "        - name: admin\n          password_from: {env: ADMIN_PASSWORD}\n",
    );
    assert!(
        !findings(&ok).iter().any(|d| d.is_error()),
        "{:?}",
        findings(&ok)
    );
    let t = edit(
        BASE,
        "        - name: admin\n",
        "        - name: admin\n          password_from: {env: ADMIN_PASSWORD}\n          password_hash: \"$6$abc$def\"\n",
    );
    let d = only(&t, "password-twice");
    assert_at(&d, at(&t, "password_from:"));
    let plain = edit(
        BASE,
        "        - name: admin\n",
        "        - name: admin\n          password_from: hunter2\n",
    );
    let Err(e) = lab(&plain) else {
        panic!("a plain string is not a secret reference")
    };
    let diags = cloudlet::Report::from_error(&e).diagnostics;
    let text = format!("{diags:?}");
    assert!(
        text.contains("a secret is written as a reference")
            && text.contains("line: 54, column: 26")
            && !text.contains("hunter2"),
        "{text}"
    );
}

#[test]
fn password_hashes_must_be_strong_crypt_hashes() {
    let t = edit(
        BASE,
        "        - name: admin\n",
        "        - name: admin\n          password_hash: \"$1$abc$def\"\n",
    );
    let d = only(&t, "password-hash");
    assert_at(&d, at(&t, "\"$1$abc"));
    assert!(d.message.contains("MD5"));
}

#[test]
fn install_users_need_a_credential() {
    let t = edit(
        BASE,
        "          ssh_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINpHb06t6clW3i24r3Q/GyWHrc4rmvm8IrcBMu63IrvG a@b\"]\n",
        "",
    );
    let d = only(&t, "user-credentials");
    assert_at(&d, at(&t, "name: admin"));
}

#[test]
fn cluster_nodes_are_machines_listed_once() {
    let t = edit(BASE, "workers: [w1]", "workers: [w9]");
    let d = only(&t, "unknown-machine");
    assert_at(&d, at(&t, "w9"));
    let t = edit(BASE, "workers: [w1]", "workers: [w1, cp]");
    let d = only(&t, "cluster-nodes");
    assert_at(&d, at_nth(&t, "cp]", 1));
}

#[test]
fn sharing_a_vip_needs_the_same_key() {
    let t = edit(
        BASE,
        "ports: [{name: http, port: 80}]",
        "ports: [{name: http, port: 80}, {name: alt, port: 9000, expose: {vip: {ip: 10.0.20.200, sharing_key: other}}}]",
    );
    let d = only(&t, "sharing-key");
    assert!(
        d.message
            .contains("sharing key `other` by app `web` but `shared` by the ingress controller"),
        "{}",
        d.message
    );
    assert_at(&d, at(&t, "{vip:"));
}

#[test]
fn local_and_cluster_traffic_policies_never_share() {
    let t = edit(
        BASE,
        "    ip: 10.0.20.200\n",
        "    ip: 10.0.20.200\n    traffic_policy: local\n",
    );
    let d = only(&t, "sharing-backend");
    assert!(
        d.message
            .contains("MetalLB never puts Local and Cluster services on one IP")
    );
    assert_at(&d, at(&t, "shared}"));
}

#[test]
fn local_services_share_only_with_the_same_selector() {
    let extra = "    a1:\n      image: a\n      ports: [{port: 53, protocol: udp, expose: {vip: {ip: 10.0.20.201, sharing_key: dns, traffic_policy: local}}}]\n    a2:\n      image: a\n      ports: [{port: 53, expose: {vip: {ip: 10.0.20.201, sharing_key: dns, traffic_policy: local}}}]\n";
    let t = format!("{BASE}{extra}");
    let d = only(&t, "sharing-backend");
    assert!(
        d.message.contains("different pod selectors"),
        "{}",
        d.message
    );
    assert_at(&d, at_nth(&t, "{vip: {ip: 10.0.20.201", 1));
    // TCP/53 and UDP/53 on one IP are fine when the backends agree (Cluster policy).
    let t = t.replace("traffic_policy: local", "traffic_policy: cluster");
    assert!(findings(&t).is_empty(), "{:#?}", findings(&t));
}

#[test]
fn a_port_on_a_shared_vip_belongs_to_one_service() {
    let t = edit(
        BASE,
        "{name: wg, port: 51820, protocol: udp, expose: shared}",
        "{name: wg, port: 51820, protocol: udp, expose: shared}, {name: https, port: 443, expose: shared}",
    );
    let d = only(&t, "port-clash");
    assert!(
        d.message.contains(
            "TCP port 443 on 10.0.20.200 is claimed by the ingress controller and app `vpn`"
        ),
        "{}",
        d.message
    );
    assert_at(&d, at_nth(&t, "shared}", 1));
}

#[test]
fn two_apps_cannot_claim_the_same_host_and_path() {
    let t = format!(
        "{BASE}    web2:\n      image: nginx\n      ports: [{{port: 8080}}]\n      ingress: [{{host: web.example.com, path: /}}]\n"
    );
    let d = only(&t, "route-conflict");
    assert_at(&d, at_nth(&t, "web.example.com", 1));
    assert!(
        d.message
            .contains("host `web.example.com` path `/` is claimed twice")
    );
}

#[test]
fn every_tls_host_is_covered() {
    let t = edit(BASE, "host: web.example.com", "host: web.example.org");
    let d = only(&t, "tls-uncovered");
    assert_at(&d, at(&t, "web.example.org"));
}

#[test]
fn forwards_point_at_something_that_exposes_the_port() {
    let t = edit(
        BASE,
        "{port: 51820, protocol: udp, to: vpn}",
        "{port: 51821, protocol: udp, to: vpn}",
    );
    let d = only(&t, "forward-target");
    assert_eq!(d.message, "`vpn` does not expose UDP port 51821");
    assert_at(&d, at(&t, "vpn}"));
    let t = edit(
        BASE,
        "{port: 51820, protocol: udp, to: vpn}",
        "{port: 51820, protocol: udp, to: vnp}",
    );
    let d = only(&t, "forward-target");
    assert_eq!(d.help.as_deref(), Some("did you mean `vpn`?"));
    let t = edit(
        BASE,
        "    - {port: 443, to: ingress}\n",
        "    - {port: 443, to: ingress}\n    - {port: 443, to: web}\n",
    );
    let all = findings(&t);
    let dup = all
        .iter()
        .find(|d| d.code == "forward-duplicate")
        .expect("duplicate");
    assert_at(dup, at_nth(&t, "443", 1));
}

#[test]
fn volumes_use_exports_that_allow_the_nodes() {
    let t = edit(BASE, "allow: [k8s]", "allow: [lan]");
    let d = only(&t, "volume-export");
    assert!(
        d.message.contains("does not allow cluster node(s) cp, w1"),
        "{}",
        d.message
    );
    assert_at(&d, at(&t, "data, mount: /data"));
    let t = edit(BASE, "export: data,", "export: dta,");
    let d = only(&t, "volume-export");
    assert_eq!(d.help.as_deref(), Some("did you mean `data`?"));
}

#[test]
fn sqlite_on_nfs_is_a_warning() {
    let t = edit(BASE, "size: 1GiB}", "size: 1GiB, sqlite: true}");
    let d = only(&t, "sqlite-on-nfs");
    assert_eq!(d.severity, cloudlet::Severity::Warning);
    assert!(!lab(&t).unwrap().validate().has_errors());
}

#[test]
fn real_targets_need_a_tls_endpoint_and_credentials() {
    let t = edit(
        BASE,
        "hosts:\n",
        "targets:\n  hypervisor: {kind: vsphere, endpoint: \"http://vc.t.lan/sdk\"}\n  pxe: {kind: proxmox}\nhosts:\n",
    );
    let all = findings(&t);
    let codes: Vec<&str> = all.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(
        codes,
        vec!["target-credentials", "target-insecure", "target-kind"],
        "{all:#?}"
    );
    assert_at(&all[0], at(&t, "hypervisor:"));
    assert_at(&all[1], at(&t, "\"http://"));
    assert_at(&all[2], at(&t, "proxmox"));
}

#[test]
fn all_problems_are_reported_at_once() {
    let t = edit(BASE, "ip: 10.0.20.11,", "ip: 10.0.30.11,");
    let t = edit(&t, "workers: [w1]", "workers: [w1, w9]");
    let t = edit(&t, "host: web.example.com", "host: web.example.org");
    let all = findings(&t);
    let mut codes: Vec<&str> = all.iter().map(|d| d.code.as_str()).collect();
    codes.sort_unstable();
    // w1 moved off the k8s network, so the NFS export no longer allows it either.
    assert_eq!(
        codes,
        vec![
            "address-outside-network",
            "tls-uncovered",
            "unknown-machine",
            "volume-export"
        ]
    );
    // sorted by position
    let lines: Vec<usize> = all
        .iter()
        .map(|d| d.location.as_ref().unwrap().line)
        .collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted);
}

#[test]
fn vlan_ids_are_in_range_and_not_shared() {
    let t = edit(
        BASE,
        "    cidr: 10.0.10.0/24\n",
        "    cidr: 10.0.10.0/24\n    vlan: 4095\n",
    );
    let d = only(&t, "vlan-invalid");
    assert_at(&d, at(&t, "4095"));
    let t = edit(
        BASE,
        "    cidr: 10.0.10.0/24\n",
        "    cidr: 10.0.10.0/24\n    vlan: 20\n",
    );
    let t = edit(
        &t,
        "    cidr: 10.0.20.0/24\n",
        "    cidr: 10.0.20.0/24\n    vlan: 20\n",
    );
    let d = only(&t, "vlan-reused");
    assert!(
        d.message.contains("`k8s` and `lan` are both VLAN 20"),
        "{}",
        d.message
    );
}

#[test]
fn overlapping_networks_are_named_as_such() {
    let t = edit(BASE, "    cidr: 10.0.10.0/24\n", "    cidr: 10.0.0.0/16\n");
    let d = only(&t, "network-overlap");
    // Points at the later of the two (k8s is written after lan).
    assert_at(&d, at(&t, "10.0.20.0/24"));
    assert!(
        d.message
            .contains("networks `k8s` (10.0.20.0/24) and `lan` (10.0.0.0/16) overlap"),
        "{}",
        d.message
    );
}

#[test]
fn an_unknown_time_zone_suggests_the_nearest() {
    let t = edit(BASE, "timezone: UTC", "timezone: Europe/Sofiya");
    let d = only(&t, "timezone-unknown");
    assert_at(&d, at(&t, "Europe/Sofiya"));
    assert_eq!(d.help.as_deref(), Some("did you mean `Europe/Sofia`?"));
    assert!(
        findings(&edit(
            BASE,
            "timezone: UTC",
            "timezone: America/Argentina/Buenos_Aires"
        ))
        .is_empty()
    );
}

#[test]
fn the_router_holds_the_gateways_and_the_nas_its_address() {
    let t = edit(
        BASE,
        "      - {network: lan, ip: 10.0.10.1}",
        "      - {network: lan, ip: 10.0.10.2}",
    );
    let d = only(&t, "router-gateway");
    assert_at(&d, at(&t, "10.0.10.2"));
    assert!(
        d.message
            .contains("has 10.0.10.2 on network `lan`, whose gateway is 10.0.10.1"),
        "{}",
        d.message
    );
    let t = edit(
        BASE,
        "  machine: nas\n",
        "  machine: nas\n  address: 10.0.20.31\n",
    );
    let d = only(&t, "nas-address");
    assert_at(&d, at(&t, "10.0.20.31"));
}

#[test]
fn two_things_on_one_mount_path_or_export_path() {
    let t = edit(
        BASE,
        "      volumes: [{name: data, export: data, mount: /data, size: 1GiB}]",
        "      volumes: [{name: data, export: data, mount: /data, size: 1GiB}, {name: more, export: data, mount: /data/, size: 1GiB}]",
    );
    let d = only(&t, "mount-reused");
    assert_at(&d, at(&t, "/data/"));
    let t = edit(
        BASE,
        "    data: {path: /mnt/tank/data, allow: [k8s]}\n",
        "    data: {path: /mnt/tank/data, allow: [k8s]}\n    again: {path: /mnt/tank/data, allow: [k8s]}\n",
    );
    let d = only(&t, "export-reused");
    // The later line, not the one that was there first.
    assert_eq!(d.location.as_ref().unwrap().line, at(&t, "again:").0);
}

#[test]
fn files_manifests_and_secret_files_stay_inside_the_lab_directory() {
    let t = edit(
        BASE,
        "      image: nginx:1.27\n",
        "      image: nginx:1.27\n      files: {/etc/app.conf: ../../etc/passwd}\n      secrets: {TOKEN: {file: ../token}, OK: {file: /run/secrets/ok}}\n",
    );
    let all = findings(&t);
    let outside: Vec<_> = all
        .iter()
        .filter(|d| d.code == "path-outside-lab")
        .collect();
    assert_eq!(outside.len(), 2, "{all:#?}");
    assert!(
        outside
            .iter()
            .any(|d| d.message.contains("file ../../etc/passwd"))
    );
    assert!(
        outside
            .iter()
            .any(|d| d.message.contains("secret file ../token"))
    );
    let t = edit(
        BASE,
        "  control_plane: [cp]\n",
        "  control_plane: [cp]\n  manifests: [../x.yaml]\n",
    );
    let e = lab(&t)
        .err()
        .map(|e| cloudlet::Report::from_error(&e).diagnostics);
    // Either refused while reading it or by validation, but never accepted.
    match e {
        Some(d) => assert!(!d.is_empty()),
        None => assert_eq!(only(&t, "path-outside-lab").code, "path-outside-lab"),
    }
}

#[test]
fn a_mistyped_network_is_one_finding() {
    let t = edit(
        BASE,
        "nics: [{network: k8s, ip: 10.0.20.10}]",
        "nics: [{network: k8z, ip: 10.0.20.10}]",
    );
    let all = findings(&t);
    let errors: Vec<_> = all.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].code, "unknown-network");
}

#[test]
fn a_reused_address_points_at_the_later_line() {
    let t = edit(BASE, "ip: 10.0.20.30}", "ip: 10.0.20.11}");
    // nas (10.0.20.11 now) is named before w1 but written before it too; rename it so the
    // model's order and the file's order disagree: the finding still points at the later line.
    let t = t
        .replace("  nas:\n", "  zz-nas:\n")
        .replace("machine: nas", "machine: zz-nas");
    let d = only(&t, "address-reused");
    let later = t
        .rfind("10.0.20.11")
        .map(|i| t[..i].matches('\n').count() + 1)
        .unwrap();
    assert_eq!(d.location.as_ref().unwrap().line, later);
    assert_eq!(
        d.related[0].location.as_ref().unwrap().line,
        at(&t, "10.0.20.11").0
    );
}

#[test]
fn what_the_lab_says_a_thing_runs_and_its_target_agree() {
    let creds = "endpoint: \"https://x.t.lan\", credentials: {env: T}";
    let t = edit(
        BASE,
        "hosts:\n",
        &format!(
            "targets:\n  router: {{kind: opnsense, {creds}}}\n  storage: {{kind: linux_nfs, {creds}}}\n  hypervisor: {{kind: proxmox, {creds}}}\nhosts:\n"
        ),
    );
    let all = findings(&t);
    let found: Vec<&cloudlet::Diagnostic> = all
        .iter()
        .filter(|d| d.code == "target-contradicts")
        .collect();
    assert_eq!(found.len(), 3, "{all:#?}");
    let messages: Vec<&str> = found.iter().map(|d| d.message.as_str()).collect();
    assert!(
        messages.contains(&"`router.kind` says pfsense, but `targets.router.kind` is opnsense"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"`storage.kind` says truenas, but `targets.storage.kind` is linux_nfs"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"`hosts.h1.kind` says esxi, but `targets.hypervisor.kind` is proxmox"),
        "{messages:?}"
    );
    // `local` renders any of them; matching kinds are fine.
    assert!(
        !findings(&edit(
            BASE,
            "hosts:\n",
            "targets:\n  router: {kind: local}\nhosts:\n"
        ))
        .iter()
        .any(|d| d.code == "target-contradicts")
    );
}

#[test]
fn a_target_field_its_backend_does_not_read_is_an_error_at_the_field() {
    let t = edit(
        BASE,
        "hosts:\n",
        "targets:\n  router:\n    kind: pfsense\n    endpoint: \"https://fw.t.lan\"\n    credentials: {env: FW_KEY}\n    fingerprint: \"AB:CD\"\n  storage:\n    kind: ganesha\n    endpoint: \"https://nas.t.lan\"\n  hypervisor:\n    kind: vsphere\n    endpoint: \"https://vc.t.lan\"\n    credentials: {env: VC}\n    datacentre: dc1\nhosts:\n",
    );
    let all = findings(&t);
    let fields: Vec<&cloudlet::Diagnostic> =
        all.iter().filter(|d| d.code == "target-field").collect();
    assert_eq!(fields.len(), 3, "{all:#?}");
    let by = |needle: &str| {
        *fields
            .iter()
            .find(|d| d.message.contains(needle))
            .unwrap_or_else(|| panic!("no finding about {needle}: {fields:#?}"))
    };
    let d = by("`fingerprint`");
    assert_eq!(
        d.message,
        "the `pfsense` backend does not read `fingerprint`"
    );
    assert_at(d, at(&t, "\"AB:CD\""));
    assert_eq!(
        d.help.as_deref(),
        Some("remove it; `pfsense` reads: endpoint, credentials, gui_credentials, ca")
    );
    // A backend on this machine takes no endpoint.
    let d = by("`ganesha`");
    assert_at(d, at(&t, "\"https://nas.t.lan\""));
    // A misspelt setting gets the nearest one the backend reads.
    let d = by("`datacentre`");
    assert_at(d, at(&t, "dc1"));
    assert_eq!(d.help.as_deref(), Some("did you mean `datacenter`?"));
}

#[test]
fn an_unknown_backend_kind_is_an_error_with_the_nearest_kind() {
    let t = edit(
        BASE,
        "hosts:\n",
        "targets:\n  hypervisor: {kind: vsphre, endpoint: \"https://vc.t.lan\", credentials: {env: VC}}\nhosts:\n",
    );
    let d = only(&t, "target-kind");
    assert_eq!(d.message, "unknown backend kind `vsphre`");
    assert_eq!(d.help.as_deref(), Some("did you mean `vsphere`?"));
    assert_at(&d, at(&t, "vsphre"));
}

#[test]
fn a_local_only_endpoint_is_checked_against_the_forms_its_backend_takes() {
    let t = edit(
        BASE,
        "hosts:\n",
        "targets:\n  hypervisor: {kind: libvirt, endpoint: \"qemu+ssh://kvm/system\"}\nhosts:\n  h0: {kind: libvirt, cpus: 16, memory: 64GiB, storage: 1TiB}\n",
    );
    let all = findings(&t);
    let d = all
        .iter()
        .find(|d| d.code == "target-endpoint")
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert_at(d, at(&t, "\"qemu+ssh://"));
    assert_eq!(
        d.message,
        "the `libvirt` backend cannot reach `qemu+ssh://kvm/system`"
    );
}

#[test]
fn the_backend_list_names_each_kind_once_and_serves_every_domain() {
    use cloudlet::core::Domain;
    let mut kinds: Vec<&str> = cloudlet::BACKENDS.iter().map(|b| b.kind).collect();
    let n = kinds.len();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), n, "a kind is listed twice: {kinds:?}");
    for d in Domain::ALL {
        assert!(
            cloudlet::BACKENDS
                .iter()
                .any(|b| b.serves(d) && b.kind == "local"),
            "{d} has no local backend"
        );
    }
    for b in cloudlet::BACKENDS {
        // An endpoint form is only given for a backend that reads `endpoint`.
        assert!(
            b.endpoint_schemes.is_empty() || b.field("endpoint").is_some(),
            "{}",
            b.kind
        );
        let mut names: Vec<&str> = b.fields.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            b.fields.len(),
            "{} lists a field twice",
            b.kind
        );
    }
}

#[test]
fn the_schema_lists_the_backends_kinds_and_their_settings() {
    let s = cloudlet::schema();
    let kinds: Vec<&str> = s["$defs"]["TargetKind"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    let listed: Vec<&str> = cloudlet::BACKENDS.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, listed);
    let props = s["$defs"]["Target"]["properties"].as_object().unwrap();
    for b in cloudlet::BACKENDS {
        for f in b.fields {
            assert!(props.contains_key(f.name), "{} of {}", f.name, b.kind);
        }
    }
}

#[test]
fn a_cluster_cloudlet_makes_is_valid_with_defaults() {
    let t = edit(
        BASE,
        "  workers: [w1]\n",
        "  workers: [w1]\n  kubernetes: {version: v1.36.3}\n",
    );
    assert_eq!(findings(&t), vec![]);
    let made = format!(
        "{t}targets:\n  cluster: {{kind: kubeadm, credentials: {{file: keys/install-user}}}}\n"
    );
    assert_eq!(findings(&made), vec![]);
}

#[test]
fn the_cluster_target_and_cluster_kubernetes_agree_on_who_makes_the_cluster() {
    // kubeadm makes a cluster the lab must describe.
    let t = format!(
        "{BASE}targets:\n  cluster: {{kind: kubeadm, credentials: {{file: keys/install-user}}}}\n"
    );
    let d = only(&t, "kubernetes-not-described");
    assert_at(&d, at(&t, "kubeadm"));
    assert!(
        d.help
            .as_deref()
            .unwrap_or("")
            .contains("cluster.kubernetes")
    );
    // A described cluster is not one made elsewhere.
    let t = edit(
        BASE,
        "  workers: [w1]\n",
        "  workers: [w1]\n  kubernetes: {version: v1.36.3}\n",
    );
    let t = format!("{t}targets:\n  cluster: {{kind: kubernetes}}\n");
    let d = only(&t, "kubernetes-made-elsewhere");
    assert_at(&d, at(&t, "{version: v1.36.3}"));
    assert!(d.help.as_deref().unwrap_or("").contains("kind: kubeadm"));
    // The install user's key is how the nodes are reached.
    let t = edit(
        BASE,
        "  workers: [w1]\n",
        "  workers: [w1]\n  kubernetes: {version: v1.36.3}\n",
    );
    let t = format!("{t}targets:\n  cluster: {{kind: kubeadm}}\n");
    let all = findings(&t);
    assert!(
        all.iter().any(|d| d.message.contains("credentials")),
        "{all:#?}"
    );
}

#[test]
fn the_kubernetes_version_must_be_a_supported_release() {
    let t = edit(
        BASE,
        "  workers: [w1]\n",
        "  workers: [w1]\n  kubernetes: {version: v1.37.0-rc.1}\n",
    );
    let d = only(&t, "kubernetes-version");
    assert_at(&d, at(&t, "v1.37.0-rc.1"));
    assert!(d.message.contains("pre-release"), "{}", d.message);
    let t = edit(
        BASE,
        "  workers: [w1]\n",
        "  workers: [w1]\n  kubernetes: {version: v1.19.4}\n",
    );
    let d = only(&t, "kubernetes-version");
    assert!(
        d.message
            .starts_with("Kubernetes 1.19 is not a release this build supports"),
        "{}",
        d.message
    );
}

#[test]
fn pod_and_service_ranges_share_no_address_with_anything() {
    let t = edit(
        BASE,
        "  workers: [w1]\n",
        "  workers: [w1]\n  kubernetes:\n    version: v1.36.3\n    pod_cidr: 10.0.0.0/16\n    service_cidr: 10.0.16.0/20\n",
    );
    let all = findings(&t);
    let found: Vec<&cloudlet::Diagnostic> = all
        .iter()
        .filter(|d| d.code == "kubernetes-cidr-overlap")
        .collect();
    let messages: Vec<&str> = found.iter().map(|d| d.message.as_str()).collect();
    // The two ranges overlap each other; the pod range holds lan, k8s, the pool and the
    // ingress VIP; the Service range holds k8s, the pool and the VIP.
    assert!(
        messages.contains(&"the Service range 10.0.16.0/20 overlaps the pod range 10.0.0.0/16"),
        "{messages:#?}"
    );
    assert!(
        messages.contains(&"the pod range 10.0.0.0/16 overlaps network `lan` (10.0.10.0/24)"),
        "{messages:#?}"
    );
    assert!(
        messages.contains(
            &"the Service range 10.0.16.0/20 overlaps MetalLB pool `default` (10.0.20.200-10.0.20.220)"
        ),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("the Service range 10.0.16.0/20 overlaps the VIP 10.0.20.200")),
        "{messages:#?}"
    );
    let d = found
        .iter()
        .find(|d| d.message.contains("network `lan`"))
        .unwrap();
    assert_at(d, at(&t, "10.0.0.0/16"));
    assert_eq!(
        d.related[0].location.as_ref().unwrap().line,
        at(&t, "10.0.10.0/24").0
    );
}

#[test]
fn several_control_planes_share_a_vip_endpoint_every_node_reaches() {
    let three = edit(
        BASE,
        "  control_plane: [cp]\n  workers: [w1]\n",
        "  control_plane: [cp, cp2, cp3]\n  workers: [w1]\n  kubernetes: {version: v1.36.3}\n",
    );
    let three = edit(
        &three,
        "  w1:\n",
        "  cp2: {cpus: 4, memory: 8GiB, nics: [{network: k8s, ip: 10.0.20.12}]}\n  cp3: {cpus: 4, memory: 8GiB, nics: [{network: lan, ip: 10.0.10.13}]}\n  w1:\n",
    );
    let all = findings(&three);
    let d = all
        .iter()
        .find(|d| d.code == "kubernetes-endpoint")
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert_eq!(
        d.message,
        "with 3 control planes the API needs an `endpoint` they share"
    );
    assert_at(d, at(&three, "kubernetes:"));
    // With a VIP on k8s, cp3 (only on lan) cannot reach it.
    let vip = edit(
        &three,
        "{version: v1.36.3}",
        "{version: v1.36.3, endpoint: 10.0.20.5}",
    );
    let d = only(&vip, "node-off-endpoint-segment");
    assert_eq!(
        d.message,
        "node `cp3` has no NIC on `k8s` (10.0.20.0/24), the segment of the API endpoint 10.0.20.5"
    );
    assert_at(&d, at(&vip, "cp3]"));
    // A machine's own address is not a VIP; an even count is a warning.
    let taken = edit(&vip, "endpoint: 10.0.20.5", "endpoint: 10.0.20.12");
    assert!(
        findings(&taken)
            .iter()
            .any(|d| d.code == "kubernetes-endpoint" && d.message.contains("`cp2`'s address")),
        "{:#?}",
        findings(&taken)
    );
    let four = edit(&vip, "[cp, cp2, cp3]", "[cp, cp2]");
    let d = only(&four, "control-plane-even");
    assert_eq!(d.severity, cloudlet::Severity::Warning);
}

#[test]
fn a_machine_is_either_a_control_plane_or_a_worker() {
    let t = edit(BASE, "  workers: [w1]\n", "  workers: [w1, cp]\n");
    let d = only(&t, "cluster-nodes");
    assert_eq!(
        d.message,
        "machine `cp` is both a control-plane node and a worker"
    );
    assert_at(&d, at(&t, "cp]\n  metallb"));
}

#[test]
fn the_committed_lab_format_reference_is_the_one_this_build_makes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(root.join("docs/lab-format.md")).unwrap_or_default();
    let made = cloudlet::schema_reference();
    assert!(
        committed == made,
        "docs/lab-format.md is stale: run `cargo run -p cloudlet-cli -- schema --markdown > docs/lab-format.md`"
    );
    // Every type of the schema has its section, every key of the root its row.
    let schema = cloudlet::schema();
    for name in schema["$defs"].as_object().unwrap().keys() {
        assert!(made.contains(&format!("\n## {name}\n")), "{name}");
    }
    for key in schema["properties"].as_object().unwrap().keys() {
        assert!(made.contains(&format!("| `{key}` |")), "{key}");
    }
}

#[test]
fn the_committed_schema_is_the_one_this_build_makes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(root.join("schema/lab.schema.json")).unwrap();
    let made = format!(
        "{}\n",
        serde_json::to_string_pretty(&cloudlet::schema()).unwrap()
    );
    assert!(
        committed == made,
        "schema/lab.schema.json is stale: run `cargo run -p cloudlet-cli -- schema > schema/lab.schema.json`"
    );
}

#[test]
fn every_seed_file_names_the_schema_and_each_fits_it_alone() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = cloudlet::schema();
    assert_eq!(schema["$id"], cloudlet::SCHEMA_ID);
    assert!(
        schema.get("required").is_none(),
        "a file of a directory lab holds only some root keys"
    );
    let known: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    let files = example_files(&root.join("examples/seed"));
    for (p, text) in &files {
        // Each root key of the file is one the schema describes.
        for line in text.lines() {
            if let Some((key, _)) = line.split_once(':')
                && !line.starts_with([' ', '#', '-'])
                && !key.is_empty()
            {
                assert!(
                    known.iter().any(|k| k.as_str() == key),
                    "{}: `{key}`",
                    p.display()
                );
            }
        }
    }
    assert_eq!(files.len(), 5);
}

/// The YAML files of an example directory with their texts, each checked to start with the
/// schema's modeline.
fn example_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=../../schema/lab.schema.json"),
            "{}",
            p.display()
        );
        out.push((p, text));
    }
    out
}

/// BASE with a platform block appended to its cluster.
fn with_platform(block: &str) -> String {
    format!("{BASE}  platform:\n{block}")
}

#[test]
fn a_component_the_lab_needs_cannot_be_switched_off() {
    // An app with a route and Traefik off.
    let t = with_platform("    traefik: {enabled: false}\n");
    let d = only(&t, "platform-needed");
    assert_at(&d, at(&t, "false}"));
    assert!(
        d.message.contains(
            "`traefik` is switched off but the lab needs it: app `web` routes web.example.com"
        ),
        "{}",
        d.message
    );
    let rel = d.related[0].location.as_ref().unwrap();
    assert_eq!((rel.line, rel.column), at(&t, "web.example.com}"));
    assert!(d.help.as_deref().unwrap().contains("external: true"));

    // A shared VIP with MetalLB off.
    let t = with_platform("    metallb: {enabled: false}\n");
    let d = only(&t, "platform-needed");
    assert!(
        d.message
            .contains("the ingress VIP 10.0.20.200 is a MetalLB address"),
        "{}",
        d.message
    );
    assert_eq!(
        d.related[0].location.as_ref().unwrap().line,
        at(&t, "ip: 10.0.20.200").0
    );

    // A dynamic export with csi-driver-nfs off.
    let t = edit(
        &with_platform("    csi_driver_nfs: {enabled: false}\n"),
        "data: {path: /mnt/tank/data, allow: [k8s]}",
        "data: {path: /mnt/tank/data, allow: [k8s], dynamic: true}",
    );
    let d = only(&t, "platform-needed");
    assert!(
        d.message.contains("export `data` is dynamic"),
        "{}",
        d.message
    );
    assert_eq!(
        d.related[0].location.as_ref().unwrap().line,
        at(&t, "dynamic: true").0
    );

    // Installed by other means: fine.
    let t = with_platform(
        "    traefik: {enabled: false, external: true}\n    metallb: {external: true}\n",
    );
    assert!(
        findings(&t).iter().all(|d| d.code != "platform-needed"),
        "{:#?}",
        findings(&t)
    );
}

#[test]
fn a_release_this_build_does_not_know_needs_its_files() {
    let t = with_platform("    metallb: {version: v0.99.0}\n");
    let d = only(&t, "platform-release");
    assert_at(&d, at(&t, "v0.99.0"));
    assert!(
        d.message
            .contains("MetalLB v0.99.0 is not a release this build knows (it knows v0.16.1"),
        "{}",
        d.message
    );

    let t = with_platform(
        "    metallb:\n      version: v0.99.0\n      files: [{url: \"https://example.com/m.yaml\", sha256: abc}]\n",
    );
    let d = only(&t, "release-checksum");
    assert_at(&d, at(&t, "abc}"));

    let sha = "a".repeat(64);
    let t = with_platform(&format!(
        "    metallb:\n      version: v0.99.0\n      files: [{{url: \"ftp://example.com/m.yaml\", sha256: {sha}}}]\n"
    ));
    let d = only(&t, "release-url");
    assert_at(&d, at(&t, "\"ftp://"));

    // cert-manager's release asset has no checksum this build could read: the lab gives it.
    let t = edit(
        &with_platform(
            "    cert_manager: {acme: {email: admin@example.com, cloudflare: {env: CF_TOKEN}}}\n",
        ),
        "secret: wildcard",
        "cluster_issuer: letsencrypt",
    );
    let d = only(&t, "platform-release");
    assert!(d.message.contains("does not know the SHA-256 of https://github.com/cert-manager/cert-manager/releases/download/v1.21.1/cert-manager.yaml"), "{}", d.message);
}

#[test]
fn acme_needs_an_issuer_an_address_and_dns01_for_a_wildcard() {
    let sha = "b".repeat(64);
    let files = format!(
        "version: v1.21.1, files: [{{url: \"https://example.com/cm.yaml\", sha256: {sha}}}]"
    );
    let issued = |acme: &str| {
        edit(
            &with_platform(&format!("    cert_manager: {{{files}, acme: {acme}}}\n")),
            "secret: wildcard",
            "cluster_issuer: letsencrypt",
        )
    };
    assert_eq!(
        findings(&issued(
            "{email: admin@example.com, cloudflare: {env: CF_TOKEN}}"
        )),
        vec![]
    );
    let t = issued("{email: admin@example.com}");
    let d = only(&t, "acme-wildcard");
    assert!(d.message.contains("`*.example.com`"), "{}", d.message);
    let t = issued("{email: admin, cloudflare: {env: CF_TOKEN}}");
    assert_at(&only(&t, "acme-email"), at(&t, "admin,"));
    let t = issued(
        "{email: a@example.com, server: \"http://acme.lan/dir\", cloudflare: {env: CF_TOKEN}}",
    );
    only(&t, "acme-server");
    // Without an issuer naming it, the account is for nothing.
    let t = with_platform(&format!(
        "    cert_manager: {{{files}, enabled: true, acme: {{email: a@example.com}}}}\n"
    ));
    only(&t, "acme-issuer");
    let t = with_platform("    metallb: {acme: {email: a@example.com}}\n");
    only(&t, "acme-component");
}

#[test]
fn the_mirror_and_the_registry_are_checked() {
    let t = with_platform("    mirror: \"ftp://mirror.lan/\"\n    registry: \"https://reg.lan\"\n");
    assert_at(&only(&t, "platform-mirror"), at(&t, "\"ftp://"));
    assert_at(
        &only(&t, "platform-registry"),
        at(&t, "\"https://reg.lan\""),
    );
    let t = with_platform("    mirror: releases/\n    registry: reg.lan:5000/mirror\n");
    assert_eq!(findings(&t), vec![]);
}

/// BASE with a backup block.
fn with_backup(block: &str) -> String {
    format!("{BASE}backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n{block}")
}

#[test]
fn a_backup_class_names_a_target_the_lab_has() {
    let ok = with_backup(
        "  targets: {nas: {dir: /mnt/backup}}\n  state: {target: nas, every: 1h, keep: {last: 3}}\n",
    );
    assert_eq!(findings(&ok), vec![]);
    let t =
        with_backup("  targets: {nas: {dir: /mnt/backup}}\n  state: {target: usb, every: 1h}\n");
    let d = only(&t, "backup-target");
    assert_at(&d, at(&t, "usb"));
    assert_eq!(d.message, "no backup target `usb`");
    assert_eq!(d.help.as_deref(), Some("one of: nas"));
}

#[test]
fn a_backup_schedule_divides_a_day_and_keeps_something() {
    let t = with_backup("  targets: {nas: {dir: /mnt/b}}\n  state: {target: nas, every: 7h}\n");
    let d = only(&t, "backup-every");
    assert_at(&d, at(&t, "7h"));
    assert!(d.message.contains("does not divide a day"), "{}", d.message);
    let t = with_backup("  targets: {nas: {dir: /mnt/b}}\n  state: {target: nas, every: 1m}\n");
    assert_at(&only(&t, "backup-every"), at(&t, "1m"));
    for ok in ["15m", "6h", "1d", "7d"] {
        let t = with_backup(&format!(
            "  targets: {{nas: {{dir: /mnt/b}}}}\n  state: {{target: nas, every: {ok}}}\n"
        ));
        assert_eq!(findings(&t), vec![], "{ok}");
    }
    let t = with_backup(
        "  targets: {nas: {dir: /mnt/b}}\n  state: {target: nas, every: 1h, keep: {daily: 0}}\n",
    );
    let d = only(&t, "backup-keep");
    assert_at(&d, at(&t, "0}}"));
}

#[test]
fn a_backup_target_is_a_directory_or_an_s3_store_over_tls() {
    let s3 = |endpoint: &str, bucket: &str, prefix: &str| {
        with_backup(&format!(
            "  targets:\n    off:\n      s3: {{endpoint: {endpoint}, bucket: {bucket}, prefix: {prefix:?}, access_key: {{env: K}}, secret_key: {{file: s}}}}\n  state: {{target: off, every: 1h}}\n"
        ))
    };
    assert_eq!(
        findings(&s3("https://minio.lan:9000", "lab-backups", "home/seed")),
        vec![]
    );
    assert_eq!(
        findings(&s3("https://s3.example.org/", "b.c-d", "")),
        vec![]
    );

    let t = s3("http://minio.lan:9000", "lab-backups", "");
    let d = only(&t, "backup-s3-endpoint");
    assert_at(&d, at(&t, "http://"));
    assert!(d.message.contains("travel in clear"), "{}", d.message);
    let t = s3("https://minio.lan/lab-backups", "lab-backups", "");
    assert_eq!(
        only(&t, "backup-s3-endpoint").message,
        "`https://minio.lan/lab-backups` is not `https://HOST[:PORT]`"
    );
    assert_at(
        &only(&t, "backup-s3-endpoint"),
        at(&t, "https://minio.lan/"),
    );

    for bad in ["ab", "Lab_Backups", "-lab", "lab-"] {
        let t = s3("https://minio.lan", bad, "");
        let d = only(&t, "backup-s3-bucket");
        assert_eq!(d.message, format!("`{bad}` is not a bucket name"));
    }
    for bad in ["/home", "home/", "a//b", "a/../b"] {
        let t = s3("https://minio.lan", "lab-backups", bad);
        assert_eq!(
            only(&t, "backup-s3-prefix").message,
            format!("`{bad}` is not a path inside the bucket")
        );
    }

    let t = with_backup(
        "  targets:\n    off: {dir: /mnt/b, s3: {endpoint: https://m, bucket: bbb, access_key: {env: K}, secret_key: {env: S}}}\n  state: {target: off, every: 1h}\n",
    );
    let d = only(&t, "backup-target-kind");
    assert_eq!(
        d.message,
        "target `off` needs exactly one of `dir`, `sftp` and `s3`, not several"
    );
    let t = with_backup("  targets:\n    off: {}\n  state: {target: off, every: 1h}\n");
    assert_eq!(
        only(&t, "backup-target-kind").message,
        "target `off` needs exactly one of `dir`, `sftp` and `s3`"
    );
}

#[test]
fn sftp_targets_name_a_host_a_user_and_a_path_ssh_cannot_misread() {
    let sftp = |body: &str| {
        with_backup(&format!(
            "  targets:\n    nas:\n      sftp: {body}\n  state: {{target: nas, every: 1h}}\n"
        ))
    };
    let ok = sftp(
        "{host: nas.lan, port: 2222, user: backup, path: /tank/backups/lab, identity: secrets/backup_ed25519, known_hosts: secrets/known_hosts}",
    );
    assert_eq!(findings(&ok), vec![]);
    assert_eq!(
        findings(&sftp(
            "{host: 192.168.1.20, user: backup, path: backups/lab}"
        )),
        vec![],
        "the port defaults to 22, ssh's own keys and known hosts apply"
    );
    let t = sftp("{host: -oProxyCommand=evil, user: backup, path: /b}");
    let d = only(&t, "backup-sftp-host");
    assert_eq!(
        d.message,
        "`-oProxyCommand=evil` is not a host name or address"
    );
    assert_at(&d, at(&t, "-oProxyCommand"));
    let t = sftp("{host: nas.lan, user: \"backup@nas\", path: /b}");
    assert_eq!(
        only(&t, "backup-sftp-user").message,
        "`backup@nas` is not a user name"
    );
    let t = sftp("{host: nas.lan, user: backup, path: \" \"}");
    only(&t, "backup-sftp-path");
    let t = sftp("{host: nas.lan, user: backup, path: /b, port: 0}");
    only(&t, "backup-sftp-port");
    let e = lab(&sftp("{host: nas.lan, user: backup}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("path"), "{e}");
    let t = with_backup(
        "  targets:\n    off: {dir: /mnt/b, sftp: {host: nas.lan, user: backup, path: /b}}\n  state: {target: off, every: 1h}\n",
    );
    only(&t, "backup-target-kind");
}

#[test]
fn volume_backups_need_a_target_pods_reach_and_warn_about_live_databases() {
    let s3 = "  targets:\n    off:\n      s3: {endpoint: https://minio.lan:9000, bucket: lab-backups, access_key: {env: K}, secret_key: {env: S}}\n    nas: {dir: /mnt/b}\n";
    let ok = with_backup(&format!(
        "{s3}  volumes: {{target: off, every: 6h, keep: {{daily: 7}}}}\n"
    ));
    assert_eq!(findings(&ok), vec![]);
    let t = with_backup(&format!("{s3}  volumes: {{target: nas, every: 6h}}\n"));
    let d = only(&t, "backup-volumes-target");
    assert_at(&d, at(&t, "nas, every: 6h"));
    assert!(
        d.message.contains("reach only an `s3` or `sftp` target"),
        "{}",
        d.message
    );
    // SFTP is reached from a pod with the key and host key the target names, so it needs both.
    let sftp = "    box: {sftp: {host: nas.lan, user: backup, path: /b, identity: keys/id, known_hosts: keys/kh}}\n    bare: {sftp: {host: nas.lan, user: backup, path: /b}}\n";
    let t = with_backup(&format!(
        "{s3}{sftp}  volumes: {{target: box, every: 6h}}\n"
    ));
    assert_eq!(findings(&t), vec![]);
    let t = with_backup(&format!(
        "{s3}{sftp}  volumes: {{target: bare, every: 6h}}\n"
    ));
    let d: Vec<_> = findings(&t);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d.iter().all(|x| x.code == "backup-volumes-sftp"), "{d:?}");
    assert!(
        d[0].message.ends_with("the target needs `identity`"),
        "{}",
        d[0].message
    );
    let t = with_backup(&format!("{s3}  volumes: {{target: off, every: 7h}}\n"));
    assert_at(&only(&t, "backup-every"), at(&t, "7h"));
    let t = with_backup(&format!(
        "{s3}  volumes: {{target: off, every: 1h, image: \"\"}}\n"
    ));
    only(&t, "backup-volumes-image");
    let t = edit(
        &ok,
        "{name: data, export: data, mount: /data, size: 1GiB}",
        "{name: data, export: data, mount: /data, size: 1GiB, database: true}",
    );
    let d = only(&t, "backup-volumes-database");
    assert!(!d.is_error(), "a warning: {d:?}");
    assert_at(&d, at(&t, "true}]"));
}

#[test]
fn a_router_backup_needs_a_router_whose_backend_exports_its_configuration() {
    let block = "  targets: {nas: {dir: /mnt/b}}\n  router: {target: nas, every: 1d}\n";
    // Every target local: nothing but rendered files, nothing to back up.
    let t = with_backup(block);
    let d = only(&t, "backup-router");
    assert_at(&d, at(&t, "{target: nas, every: 1d}"));
    assert!(
        d.message.contains("renders files from the lab"),
        "{}",
        d.message
    );
    assert!(
        d.help
            .as_deref()
            .unwrap_or("")
            .contains("pfsense, opnsense, linux"),
        "{:?}",
        d.help
    );
    // pfSense hands out config.xml only to its web interface: the target needs its
    // credentials, and with them it is valid.
    let pf = edit(
        &t,
        "name: t\n",
        "name: t\ntargets:\n  router: {kind: pfsense, endpoint: https://gw.t.lan, credentials: {env: PF_KEY}}\n",
    );
    let d = only(&pf, "target-field-missing");
    assert_eq!(
        d.message,
        "`backup.router` needs the pfsense target's `gui_credentials`"
    );
    assert!(
        d.help
            .as_deref()
            .unwrap_or("")
            .contains("WebCfg - Diagnostics: Backup & Restore"),
        "{:?}",
        d.help
    );
    let pf = edit(
        &pf,
        "credentials: {env: PF_KEY}}",
        "credentials: {env: PF_KEY}, gui_credentials: {file: secrets/pf-gui.txt}}",
    );
    assert_eq!(findings(&pf), vec![]);
    // OPNsense does.
    let opn = edit(
        &edit(&t, "  kind: pfsense\n", "  kind: opnsense\n"),
        "name: t\n",
        "name: t\ntargets:\n  router: {kind: opnsense, endpoint: https://gw.t.lan, credentials: {env: OPN_KEY}}\n",
    );
    assert_eq!(findings(&opn), vec![]);
}

#[test]
fn the_watch_runs_in_a_cluster_with_a_sane_cadence_and_variables_a_pod_takes() {
    // The base lab renders its cluster locally: nowhere for the watch to run.
    let t = format!("{BASE}watch: {{image: r.example/cloudlet:1, replicas: 2}}\n");
    let d = only(&t, "watch-cluster");
    assert_at(&d, at(&t, "watch:"));
    assert!(d.message.contains("`targets.cluster` is `local`"), "{d}");

    let kube = "targets:\n  cluster: {kind: kubernetes, credentials: {file: kubeconfig}}\n";
    let ok = format!(
        "{BASE}{kube}watch: {{image: r.example/cloudlet:1, webhooks: [{{format: ntfy, url: {{env: NTFY_URL}}}}]}}\n"
    );
    assert_eq!(findings(&ok), vec![]);
    // No image: cloudlet publishes none, so the lab names one.
    let t = format!("{BASE}{kube}watch: {{replicas: 2}}\n");
    let d = only(&t, "watch-image");
    assert_at(&d, at(&t, "watch:"));

    let t = format!(
        "{BASE}{kube}watch: {{image: r.example/c:1, replicas: 0, interval: 5s, lease: 2s}}\n"
    );
    assert_at(&only(&t, "watch-replicas"), at(&t, "0, interval"));
    assert_at(&only(&t, "watch-interval"), at(&t, "5s, lease"));
    assert_at(&only(&t, "watch-lease"), at(&t, "2s}"));

    let t = format!(
        "{BASE}{kube}watch: {{image: r.example/c:1, webhooks: [{{format: slack, url: {{env: SLACK-URL}}}}]}}\n"
    );
    let d = only(&t, "watch-env");
    assert_at(&d, at(&t, "{env: SLACK-URL}"));
    assert!(d.message.contains("`SLACK-URL`"), "{d}");

    let t = format!(
        "{BASE}{kube}watch: {{image: r.example/c:1, webhooks: [{{format: teams, url: {{env: X}}}}]}}\n"
    );
    assert!(
        lab(&t).is_err(),
        "an unknown format is refused where it is written"
    );
}

#[test]
fn a_dump_goes_into_backed_up_volumes_with_its_password_port_and_command() {
    let dump = |d: &str| {
        edit(
            BASE,
            "      volumes: [{name: data, export: data, mount: /data, size: 1GiB}]\n",
            &format!(
                "      volumes: [{{name: data, export: data, mount: /data, size: 1GiB}}]\n      secrets: {{PW: {{env: PW}}}}\n      dump: {d}\n"
            ),
        )
    };
    // The lab backs up no volumes: a dump has nowhere to go.
    let t = dump("{kind: postgres, password: PW}");
    let d = only(&t, "dump-without-backup");
    assert_at(&d, at(&t, "dump:"));
    assert!(d.message.contains("`backup.volumes`"), "{d}");

    let backed = |t: String| {
        format!(
            "{t}backup:\n  key: {{env: K}}\n  targets:\n    s3t:\n      s3: {{endpoint: \"https://s3.lan\", bucket: lab-backups, access_key: {{env: A}}, secret_key: {{env: S}}}}\n  volumes: {{target: s3t, every: 6h}}\n"
        )
    };
    assert_eq!(
        findings(&backed(dump("{kind: postgres, password: PW}"))),
        vec![]
    );
    let t = backed(dump("{kind: postgres, password: PWD}"));
    let d = only(&t, "dump-password");
    assert_at(&d, at(&t, "PWD"));
    assert_eq!(d.help.as_deref(), Some("did you mean `PW`?"));

    let t = backed(dump("{kind: command}"));
    assert_at(&only(&t, "dump-command"), at(&t, "dump:"));
    assert_eq!(
        findings(&backed(dump(
            "{kind: command, command: [sh, -c, \"cp /data/db $DUMP_DIR/\"]}"
        ))),
        vec![]
    );
    let t = backed(dump("{kind: postgres, command: [x]}"));
    assert_at(&only(&t, "dump-command"), at(&t, "[x]"));
    let t = backed(dump("{kind: command, command: [x], verify: \"SELECT 1\"}"));
    assert_at(&only(&t, "dump-verify"), at(&t, "\"SELECT 1\""));

    // pg_dump reaches the server through the app's Service: an app without a port has none.
    let t = backed(edit(
        &dump("{kind: postgres}"),
        "      ports: [{name: http, port: 80}]\n      ingress: [{host: web.example.com}]\n",
        "",
    ));
    let d = only(&t, "dump-port");
    assert_at(&d, at(&t, "dump:"));

    // mysql: the same rules, with its own tool and port named.
    assert_eq!(
        findings(&backed(dump(
            "{kind: mysql, password: PW, verify: \"SELECT count(*) FROM t\"}"
        ))),
        vec![]
    );
    let t = backed(dump("{kind: mysql, command: [x]}"));
    let d = only(&t, "dump-command");
    assert!(d.message.contains("a mysql dump runs mysqldump"), "{d}");
    let t = backed(edit(
        &dump("{kind: mysql}"),
        "      ports: [{name: http, port: 80}]\n      ingress: [{host: web.example.com}]\n",
        "",
    ));
    let d = only(&t, "dump-port");
    assert_eq!(
        d.help.as_deref(),
        Some("add `ports: [{port: 3306}]` to the app")
    );

    // The load makes the database again by its name: a name the server takes, or none.
    let t = backed(dump("{kind: mysql, database: \"shop`; DROP\"}"));
    let d = only(&t, "dump-database");
    assert_at(&d, at(&t, "\"shop`; DROP\""));
    assert!(d.message.contains("is not a letter, digit"), "{d}");
    let long = "d".repeat(65);
    let t = backed(dump(&format!("{{kind: mysql, database: {long}}}")));
    assert!(
        only(&t, "dump-database")
            .message
            .contains("65 bytes long, the server takes 64")
    );
}

#[test]
fn the_example_labs_are_valid_and_every_backend_has_one() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/backends");
    let mut used: std::collections::BTreeSet<String> = Default::default();
    let files = example_files(&root);
    for (p, _) in &files {
        let lab = cloudlet::Lab::load(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let report = lab.validate();
        assert!(
            report.diagnostics.is_empty(),
            "{}: {:#?}",
            p.display(),
            report.diagnostics
        );
        for (_, t) in lab.model().targets.each() {
            used.insert(t.kind.to_string());
        }
    }
    assert_eq!(files.len(), 3);
    let missing: Vec<&str> = cloudlet::BACKENDS
        .iter()
        .map(|b| b.kind)
        .filter(|k| !used.contains(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "backends without an example lab in examples/backends: {missing:?}"
    );
}

#[test]
fn the_boot_server_is_named_by_routers_that_can_and_left_to_the_person_by_the_others() {
    let t = edit(
        BASE,
        "pxe:\n  menu:",
        "pxe:\n  serve: {address: 10.0.20.5}\n  menu:",
    );
    let boot_servers = |text: &str| -> Vec<serde_json::Value> {
        lab(text)
            .unwrap()
            .expand()
            .into_iter()
            .filter(|r| &*r.id.kind == "boot-server")
            .map(|r| r.body.value().clone())
            .collect()
    };
    // The default (local) router target holds it: next-server on the install segment.
    assert_eq!(
        boot_servers(&t),
        vec![serde_json::json!({"interface": "k8s", "next_server": "10.0.20.5"})]
    );
    assert!(
        findings(&t).iter().all(|d| d.code != "boot-server-manual"),
        "{:#?}",
        findings(&t)
    );
    // pfSense's API has no next-server: nothing planned, a warning saying what to set.
    let pf = edit(
        &t,
        "hosts:\n",
        "targets:\n  router: {kind: pfsense, endpoint: \"https://gw.t.lan\", credentials: {env: PF_KEY}}\nhosts:\n",
    );
    assert!(boot_servers(&pf).is_empty());
    let d = only(&pf, "boot-server-manual");
    assert_eq!(d.severity, cloudlet::Severity::Warning);
    assert!(
        d.message.contains("10.0.20.5") && d.message.contains("`k8s`"),
        "{}",
        d.message
    );
    assert!(!lab(&pf).unwrap().validate().has_errors());
    // A boot server on another segment is not this rule's (proxyDHCP does not reach there).
    let other = edit(
        BASE,
        "pxe:\n  menu:",
        "pxe:\n  serve: {address: 10.0.10.5}\n  menu:",
    );
    assert!(boot_servers(&other).is_empty());
}

#[test]
fn replicated_snapshots_name_a_dataset_apart_from_theirs_kept_for_whole_hours() {
    let with = |r: &str| {
        edit(
            BASE,
            "data: {path: /mnt/tank/data, allow: [k8s]}",
            &format!(
                "data: {{path: /mnt/tank/data, allow: [k8s], snapshots: {{every: 1h, keep: 24, replicate: {r}}}}}"
            ),
        )
    };
    assert_eq!(
        findings(&with("{to: backup/lab/data, keep_for: 30d}")),
        vec![]
    );
    assert_eq!(
        findings(&with("{to: tank/data-copy, ssh: offsite}")),
        vec![]
    );
    // Over SSH the same name is another machine's dataset.
    assert_eq!(findings(&with("{to: tank/data, ssh: offsite}")), vec![]);

    let t = with("{to: /mnt/backup/data}");
    let d = only(&t, "replicate-to");
    assert_at(&d, at(&t, "/mnt/backup/data"));
    assert!(d.help.as_deref().unwrap().contains("no leading `/`"), "{d}");
    let t = with("{to: backup}");
    assert_at(&only(&t, "replicate-to"), at(&t, "backup}"));
    // On the NAS itself, into the dataset it copies or one that holds it.
    for to in ["tank/data/copies", "tank/data"] {
        let t = with(&format!("{{to: {to}}}"));
        let d = only(&t, "replicate-to");
        assert!(d.message.contains("hold one another"), "{to}: {d}");
    }
    let t = with("{to: backup/data, keep_for: 90m}");
    assert_at(&only(&t, "replicate-keep"), at(&t, "90m"));
    let t = with("{to: backup/data, ssh: \" \"}");
    only(&t, "replicate-ssh");

    // A volume's own policy: its dataset is its export's path and its directory.
    let t = edit(
        BASE,
        "size: 1GiB}",
        "size: 1GiB, snapshots: {every: 1h, keep: 2, replicate: {to: tank/data/web}}}",
    );
    let d = only(&t, "replicate-to");
    assert!(d.message.contains("`tank/data/web/data`"), "{d}");
}

#[test]
fn the_cluster_is_backed_up_when_a_target_reaches_a_running_one() {
    let block = "  targets: {nas: {dir: /mnt/backup}}\n  cluster: {target: nas, every: 1h}\n";
    // Without targets, the cluster target renders files: nothing runs to back up.
    let t = with_backup(block);
    let d = only(&t, "backup-cluster");
    assert!(d.message.contains("the cluster target is `local`"), "{d}");
    assert!(d.help.as_deref().unwrap().contains("`kubernetes`"), "{d}");
    for kind in ["kubeadm", "kubernetes"] {
        let t = format!(
            "{}targets:\n  cluster: {{kind: {kind}, credentials: {{file: kubeconfig}}}}\n",
            with_backup(block)
        );
        assert!(
            !findings(&t).iter().any(|f| f.code == "backup-cluster"),
            "{kind}: {:?}",
            findings(&t)
        );
    }
}
