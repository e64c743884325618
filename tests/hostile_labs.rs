//! Lab files written carelessly or with intent: alias bombs, secrets written in the clear,
//! bytes that are not UTF-8, escape sequences, FIFOs, link loops and huge lines. Each is
//! refused with a position and bounded in memory, and no secret is echoed.
#![allow(missing_docs, clippy::print_stderr)] // the tests print what they measure

mod common;
use cloudlet::core::LoadError;
use common::*;

fn load_errors(text: &str) -> (Vec<cloudlet::Diagnostic>, String) {
    match lab(text) {
        Err(cloudlet::Error::Load(LoadError::Invalid {
            diagnostics,
            sources,
        })) => {
            let rendered = diagnostics.iter().map(|d| d.render(&sources)).collect();
            (diagnostics, rendered)
        }
        other => panic!("expected a load error, got {other:?}"),
    }
}

/// The process's peak resident memory in KiB (nextest runs each test in its own process).
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn nested_aliases_are_refused_at_the_alias_with_bounded_memory() {
    // The "billion laughs" shape: 9 levels of 9 aliases, 9^9 nodes if expanded.
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 9].join(", ");
        text.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
    }
    assert!(text.len() < 600, "{}", text.len());
    let (errors, _) = load_errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].message.starts_with("aliases expand"),
        "{errors:#?}"
    );
    let loc = errors[0].location.as_ref().unwrap();
    assert!(loc.line > 1 && loc.line < 9, "{loc}");
    // 9^9 nodes would be hundreds of gigabytes; the budget is 100,000 nodes.
    let peak = peak_kib();
    eprintln!("peak resident memory: {peak} KiB");
    assert!(peak < 256 * 1024, "peak {peak} KiB");
}

#[test]
fn a_secret_written_in_the_clear_is_never_echoed() {
    for (from, to) in [
        (
            "      ports: [{name: wg, port: 51820, protocol: udp, expose: shared}]\n",
            "      ports: [{name: wg, port: 51820, protocol: udp, expose: shared}]\n      secrets: {KEY: Hunter2-Secret}\n",
        ),
        (
            "      ports: [{name: wg, port: 51820, protocol: udp, expose: shared}]\n",
            "      ports: [{name: wg, port: 51820, protocol: udp, expose: shared}]\n      secrets:\n        KEY: {value: Hunter2-Secret}\n",
        ),
        (
            "      ports: [{name: wg, port: 51820, protocol: udp, expose: shared}]\n",
            "      ports: [{name: wg, port: 51820, protocol: udp, expose: shared}]\n      secrets:\n        KEY: Hunter2-Secret\n",
        ),
    ] {
        let t = edit(BASE, from, to);
        let (errors, rendered) = load_errors(&t);
        assert!(!rendered.contains("Hunter2"), "{rendered}");
        assert!(!format!("{errors:?}").contains("Hunter2"), "{errors:?}");
        let json = serde_json::to_string(&errors).unwrap();
        assert!(!json.contains("Hunter2"), "{json}");
        assert!(rendered.contains("<redacted>"), "{rendered}");
        assert!(
            errors[0].message.contains("secret"),
            "{}",
            errors[0].message
        );
        assert_eq!(
            errors[0].location.as_ref().unwrap().line,
            at(&t, "Hunter2").0
        );
    }
}

#[test]
fn a_plaintext_password_is_masked_in_the_excerpt() {
    let t = edit(
        BASE,
        "        - name: admin\n",
        "        - name: admin\n          password: Hunter2-Secret\n",
    );
    let lab = lab(&t).unwrap();
    let report = lab.validate();
    let d = report
        .diagnostics
        .iter()
        .find(|d| d.code == "plaintext-password")
        .unwrap();
    let rendered = d.render(lab.sources());
    assert!(!rendered.contains("Hunter2"), "{rendered}");
    assert!(rendered.contains("password: <redacted>"), "{rendered}");
}

#[test]
fn escape_sequences_and_huge_values_are_not_echoed_raw() {
    let value = format!("\"\\e[2J\\e]0;owned\\a{}\"", "x".repeat(2_000_000));
    let t = edit(
        BASE,
        "cpus: 4\n    memory: 8GiB\n    disks: [{size: 50GiB}]",
        &format!("cpus: {value}\n    memory: 8GiB\n    disks: [{{size: 50GiB}}]"),
    );
    let (errors, rendered) = load_errors(&t);
    assert_eq!(errors.len(), 1, "{}", errors.len());
    assert!(!rendered.contains('\u{1b}'), "escape sequence echoed");
    assert!(!rendered.contains('\u{7}'), "bell echoed");
    assert!(
        rendered.len() < 2_000,
        "{} bytes of diagnostics",
        rendered.len()
    );
}

#[test]
fn a_byte_that_is_not_utf8_has_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"name: t\nsite: {domain: t.lan}\nnetworks:\n  caf".to_vec();
    bytes.push(0xe9);
    bytes.extend_from_slice(b": {cidr: 10.0.0.0/24}\n");
    std::fs::write(dir.path().join("lab.yaml"), &bytes).unwrap();
    let e = cloudlet::Lab::load(dir.path()).unwrap_err();
    let report = cloudlet::Report::from_error(&e);
    assert_eq!(report.diagnostics.len(), 1);
    let d = &report.diagnostics[0];
    assert_eq!(d.code, "encoding");
    let loc = d.location.as_ref().unwrap();
    assert_eq!((loc.line, loc.column), (4, 6));
    assert!(d.message.contains("0xe9"), "{}", d.message);
}

#[test]
fn an_os_error_names_its_cause_once() {
    let e = cloudlet::Lab::load("/nonexistent/lab").unwrap_err();
    let chain = cloudlet::core::error::chain(&e);
    assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
}

#[test]
fn a_fifo_named_yaml_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lab.yaml"),
        "name: t\nsite: {domain: t.lan}\n",
    )
    .unwrap();
    let fifo = dir.path().join("pipe.yaml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let e = cloudlet::Lab::load(dir.path()).unwrap_err();
    assert!(
        matches!(&e, cloudlet::Error::Load(LoadError::NotAFile { path }) if path == &fifo),
        "{e:?}"
    );
}

#[test]
fn a_directory_link_loop_is_one_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lab.yaml"),
        "name: t\nsite: {domain: t.lan}\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/more.yaml"), "networks: {}\n").unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/loop")).unwrap();
    let e = cloudlet::Lab::load(dir.path()).unwrap_err();
    let report = cloudlet::Report::from_error(&e);
    assert_eq!(report.diagnostics.len(), 1, "{report:#?}");
    assert_eq!(report.diagnostics[0].code, "directory-loop");
}

#[test]
fn a_file_larger_than_a_lab_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join("lab.yaml")).unwrap();
    f.set_len(200 << 20).unwrap();
    let e = cloudlet::Lab::load(dir.path()).unwrap_err();
    assert!(
        matches!(&e, cloudlet::Error::Load(LoadError::TooLarge { size, .. }) if *size == 200 << 20),
        "{e:?}"
    );
    assert!(peak_kib() < 128 * 1024);
}
