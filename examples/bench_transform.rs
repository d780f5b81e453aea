//! A transform's CPU natively: the README's CRM program and the budget's worst case (a program that spends every step),
//! on the Mailtura bounce fixture; and compiling a program (once per isolate, when the configuration is read).
//! `cargo run --release --example bench_transform` prints one JSON line.

use mailhook::delivery::Transform;
use std::time::Instant;

const CRM: &str =
    r#"{contact: (.data.recipient // .data.to[0].email), event: (.type | ltrimstr("email.")), at: .time, provider: .data.provider}"#;

fn per_run(t: &Transform, event: &[u8], runs: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..runs {
        let _ = std::hint::black_box(t.apply(event, 1 << 20));
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(runs)
}

fn main() {
    let event = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/mailtura/bounced.expected.json")).unwrap();
    let start = Instant::now();
    let crm = Transform::compile(CRM).unwrap();
    let compile_us = start.elapsed().as_secs_f64() * 1e6;
    let budget = Transform::compile("{n: last(range(1e15))}").unwrap();
    let crm_us = per_run(&crm, &event, 2000);
    let budget_us = per_run(&budget, &event, 5);
    println!(r#"{{"compile_us": {compile_us:.0}, "crm_us": {crm_us:.1}, "budget_us": {budget_us:.0}}}"#);
}
