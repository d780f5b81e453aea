//! The native core's speed per provider: authenticate + normalise of every
//! fixture, signed or addressed as the provider sends it. Prints one JSON
//! line per provider; `npm run bench` runs it with `--release`.

use mailhook::providers::Provider;
use mailhook::testkit::{as_sent_by, config_with};
use std::time::{Duration, Instant};

fn main() {
    let cfg = match config_with(&[]) {
        Ok(c) => c,
        Err(e) => panic!("bench configuration: {e}"),
    };
    let now = 1_735_689_600;
    for provider in Provider::ALL {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(provider.name());
        // JSON payloads, or raw mail for a source the platform feeds.
        let ext = if provider.posts() { ".json" } else { ".eml" };
        let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|f| f.ok())
            .filter(|f| f.file_name().to_string_lossy().ends_with(ext) && !f.file_name().to_string_lossy().ends_with(".expected.json"))
            .filter_map(|f| std::fs::read(f.path()).ok())
            .collect();
        bodies.sort();
        let requests: Vec<(mailhook::testkit::Sent, Vec<u8>)> =
            bodies.into_iter().map(|body| (as_sent_by(provider, &body), body)).collect();
        let run_once = || {
            let mut events = 0usize;
            for (sent, body) in &requests {
                let req = sent.inbound(body, now);
                if let Ok(e) = mailhook::testkit::ingest_json(provider, &cfg, &req) {
                    events += e.len();
                    std::hint::black_box(e.iter().map(Vec::len).sum::<usize>());
                }
            }
            events
        };
        let bytes: usize = requests.iter().map(|r| r.1.len()).sum();
        assert_eq!(run_once(), requests.len(), "{}: every fixture must be accepted", provider.name());
        for _ in 0..50 {
            run_once();
        }
        let (mut rounds, mut events) = (0u64, 0usize);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(700) {
            events += run_once();
            rounds += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"provider\":\"{}\",\"fixtures\":{},\"events\":{},\"ns_per_event\":{:.0},\"mb_per_s\":{:.1}}}",
            provider.name(),
            requests.len(),
            events,
            secs * 1e9 / events.max(1) as f64,
            (bytes as f64 * rounds as f64) / secs / 1e6
        );
    }
}
