//! Counts of the platform operations this isolate performed, the ones the
//! Workers pricing charges for: invocations, KV reads and writes, queue
//! operations (per 64 KB), R2 class A and B operations, D1 rows read and
//! written (from D1's own `meta`). Each request's and each queue batch's log
//! line carries the counts since the previous line (`ops`), so summing them
//! over a log gives what the traffic cost; `bench/cost.mjs` does that.
//! Concurrent requests in one isolate may share a line's counts; the sums are exact.

use crate::limits::queue_units;
use serde::Serialize;
use std::cell::RefCell;
use worker::D1Result;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Ops {
    pub requests: u64,
    pub kv_read: u64,
    pub kv_write: u64,
    pub queue_write: u64,
    pub queue_read: u64,
    pub queue_delete: u64,
    pub r2_class_a: u64,
    pub r2_class_b: u64,
    pub d1_queries: u64,
    pub d1_rows_read: u64,
    pub d1_rows_written: u64,
    pub subrequests: u64,
}

thread_local! {
    static OPS: RefCell<Ops> = RefCell::new(Ops::default());
}

fn add(f: impl FnOnce(&mut Ops)) {
    OPS.with(|o| f(&mut o.borrow_mut()));
}

pub fn request() {
    add(|o| o.requests += 1);
}
pub fn kv_read() {
    add(|o| o.kv_read += 1);
}
pub fn kv_write() {
    add(|o| o.kv_write += 1);
}
pub fn queue_write(bytes: usize) {
    add(|o| o.queue_write += queue_units(bytes));
}
pub fn queue_read(bytes: usize) {
    add(|o| o.queue_read += queue_units(bytes));
}
pub fn queue_delete(bytes: usize) {
    add(|o| o.queue_delete += queue_units(bytes));
}
/// PutObject, ListObjects.
pub fn r2_class_a() {
    add(|o| o.r2_class_a += 1);
}
/// GetObject, HeadObject.
pub fn r2_class_b() {
    add(|o| o.r2_class_b += 1);
}
pub fn subrequest() {
    add(|o| o.subrequests += 1);
}

/// The rows that D1 says a call (a query, or each statement of a batch) read and wrote.
pub fn d1(results: &[D1Result]) {
    add(|o| o.d1_queries += 1);
    for r in results {
        if let Ok(Some(m)) = r.meta() {
            add(|o| {
                o.d1_rows_read += m.rows_read.unwrap_or(0) as u64;
                o.d1_rows_written += m.rows_written.unwrap_or(0) as u64;
            });
        }
    }
}

/// The counts since the last call, for a log line.
pub fn take() -> Ops {
    OPS.with(|o| std::mem::take(&mut *o.borrow_mut()))
}
