//! The heap an Email Routing message costs the core: a message of N MiB with
//! four base64 attachments, through `payload` (mail-parser, then the JSON
//! payload) and the pipeline (skeleton, normalise, the events as parts),
//! measured with a counting allocator, the message itself not counted. Prints one JSON line per size:
//! `cargo run --release --example mail_memory`.

use mailhook::providers::Provider;
use mailhook::testkit::{as_sent_by, config_with, TEST_NONCE};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

struct Counting;
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            PEAK.fetch_max(NOW.fetch_add(l.size(), Relaxed) + l.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        NOW.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A message whose attachments (four) hold `total` bytes in all, base64 in 76-character lines.
fn message(total: usize) -> Vec<u8> {
    use base64::Engine as _;
    let mut m = b"From: a@example.net\r\nTo: b@mailhook.test\r\nMessage-ID: <big@example.net>\r\nSubject: big\r\nMIME-Version: 1.0\r\n\
                  Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        .to_vec();
    let mut x: u32 = 1;
    for i in 0..4 {
        let bytes: Vec<u8> = (0..total / 4)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        m.extend_from_slice(format!("--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"f{i}.bin\"\r\n\r\n").as_bytes());
        for line in b64.as_bytes().chunks(76) {
            m.extend_from_slice(line);
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(b"--b--\r\n");
    m
}

fn main() {
    let cfg = config_with(&[]).unwrap_or_else(|e| panic!("bench configuration: {e}"));
    let p = Provider::EmailRouting;
    for mib in [1usize, 8, 25] {
        let raw = message(mib * 1024 * 1024 * 3 / 4);
        let sent = as_sent_by(p, &raw);
        let before = NOW.load(Relaxed);
        PEAK.store(before, Relaxed);
        let start = Instant::now();
        // What the Worker does: the pipeline, and the events as parts of the payload (never materialised for a large one).
        let ingested =
            mailhook::pipeline::ingest(&cfg, p, &sent.inbound(&raw, 1_735_689_600), TEST_NONCE).unwrap_or_else(|e| panic!("refused: {e}"));
        let parts = ingested.render();
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let payload = ingested.payload.as_ref().map_or(0, Vec::len);
        println!(
            "{{\"message_bytes\":{},\"payload_bytes\":{},\"peak_heap_bytes\":{},\"peak_over_message\":{:.2},\"events\":{},\"ms\":{:.0}}}",
            raw.len(),
            payload,
            PEAK.load(Relaxed) - before,
            (PEAK.load(Relaxed) - before) as f64 / raw.len() as f64,
            parts.len(),
            ms
        );
    }
}
