//! Times `Lab::load` + `Lab::plan` of a lab through the Rust facade: the baseline the
//! bindings' benchmark (`bindings/bench.sh`) compares Python and Node against.
//!
//! `cargo run --release --example plan_timing -- LAB [RUNS]` prints the median in ms.
#![allow(clippy::print_stdout, clippy::disallowed_methods)]

use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), cloudlet::Error> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "examples/seed".into());
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(7);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let lab = cloudlet::Lab::load(&path)?;
        let plan = lab.plan().await?;
        std::hint::black_box(&plan);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!("{:.2}", times[times.len() / 2]);
    Ok(())
}
