//! How cloudlet reaches a backend, shared by the domain crates (which may not depend on each
//! other): an HTTPS client whose TLS is always verified ([`http`], [`tls`]), commands and files
//! on a backend's machine, here or over SSH ([`exec`]), and retries with backoff ([`retry`]).
//! Every failure is a typed error with its cause as its `source`.

#![cfg_attr(test, allow(clippy::disallowed_methods))] // #[tokio::test] builds a runtime per test

pub mod download;
pub mod exec;
pub mod http;
pub mod retry;
pub mod served;
pub mod tls;

/// `e` and its causes, `: `-separated (`reading ca.pem: No such file or directory`).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
