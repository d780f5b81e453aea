//! One reverse-DNS check (Mail-Plus), as steps for the executor: it answers
//! each [`RdnsStep`] and passes the answer back to [`Rdns::step`] until `Done`.

use crate::dns::{self, RecordType, VerdictCache};
use crate::error::ApiError;
use crate::providers::RdnsCheck;
use std::net::IpAddr;

/// One reverse-DNS check.
///
/// The cost of one unauthenticated request is bounded: a cached verdict costs
/// nothing (isolate memory) or one KV read (a pass another isolate found);
/// otherwise one PTR fetch and at most `MAX_FORWARD_LOOKUPS` forward fetches.
/// Only passes are written to KV, so a stream of refused addresses writes nothing.
#[derive(Debug)]
pub struct Rdns {
    check: RdnsCheck,
    key: String,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    Start,
    Kv,
    Ptr,
    Forward { names: Vec<String>, next: usize },
    Done,
}

/// What the executor must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdnsStep {
    /// Read this KV key (a verdict another isolate cached), and answer `RdnsInput::Kv`.
    KvGet(String),
    /// GET this DoH URL (`accept: application/dns-json`), and answer `RdnsInput::Answer` or `Failed`.
    Fetch { url: String, name: String },
    /// The verdict; when `remember` is set, write that KV key as "pass" with that TTL.
    Done { passed: bool, remember: Option<(String, u64)> },
}

/// The executor's answer to the last step.
#[derive(Debug, Clone, Copy)]
pub enum RdnsInput<'a> {
    Start,
    /// The KV value, or `None` (absent, or the read failed).
    Kv(Option<&'a str>),
    Answer {
        status: u16,
        body: &'a [u8],
    },
    /// The fetch failed: a connection error, a timeout.
    Failed(&'a str),
}

impl Rdns {
    pub fn new(check: RdnsCheck) -> Self {
        let key = dns::cache_key(check.ip, &check.suffix);
        Rdns { check, key, stage: Stage::Start }
    }

    pub fn ip(&self) -> IpAddr {
        self.check.ip
    }

    /// The next step. A resolver failure is 503 (the provider retries), not a refusal.
    pub fn step(&mut self, input: RdnsInput, cache: &mut VerdictCache, now: i64) -> Result<RdnsStep, ApiError> {
        let ip = self.check.ip;
        match (std::mem::replace(&mut self.stage, Stage::Done), input) {
            (Stage::Start, RdnsInput::Start) => match cache.get(&self.key, now) {
                Some(passed) => Ok(RdnsStep::Done { passed, remember: None }),
                None => {
                    self.stage = Stage::Kv;
                    Ok(RdnsStep::KvGet(self.key.clone()))
                }
            },
            (Stage::Kv, RdnsInput::Kv(Some(v))) => {
                let passed = v == "pass";
                cache.put(self.key.clone(), passed, now);
                Ok(RdnsStep::Done { passed, remember: None })
            }
            (Stage::Kv, RdnsInput::Kv(None)) => {
                self.stage = Stage::Ptr;
                let name = dns::ptr_name(ip);
                Ok(RdnsStep::Fetch { url: dns::query_url(&self.check.doh_url, &name, RecordType::Ptr), name })
            }
            (Stage::Ptr, input) => {
                let names = dns::candidate_names(&answer(input, RecordType::Ptr)?, &self.check.suffix, dns::MAX_FORWARD_LOOKUPS);
                self.forward(names, 0, cache, now)
            }
            (Stage::Forward { names, next }, input) => {
                if dns::forward_confirms(&answer(input, dns::forward_type(ip))?, ip) {
                    Ok(self.finish(true, cache, now))
                } else {
                    self.forward(names, next, cache, now)
                }
            }
            (stage, _) => Err(ApiError::Unavailable(format!(
                "reverse DNS could not be checked (a step was answered out of order at {stage:?}); nothing was accepted, please retry"
            ))),
        }
    }

    /// The forward lookup of `names[next]`, or the verdict when none is left.
    fn forward(&mut self, names: Vec<String>, next: usize, cache: &mut VerdictCache, now: i64) -> Result<RdnsStep, ApiError> {
        match names.get(next) {
            Some(name) => {
                let (url, name) = (dns::query_url(&self.check.doh_url, name, dns::forward_type(self.check.ip)), name.clone());
                self.stage = Stage::Forward { names, next: next + 1 };
                Ok(RdnsStep::Fetch { url, name })
            }
            None => Ok(self.finish(false, cache, now)),
        }
    }

    fn finish(&mut self, passed: bool, cache: &mut VerdictCache, now: i64) -> RdnsStep {
        cache.put(self.key.clone(), passed, now);
        RdnsStep::Done { passed, remember: passed.then(|| (self.key.clone(), dns::cache_ttl(true))) }
    }
}

/// The records of a DoH answer, or 503.
fn answer(input: RdnsInput, rtype: RecordType) -> Result<Vec<String>, ApiError> {
    let unavailable =
        |why: String| ApiError::Unavailable(format!("reverse DNS could not be checked ({why}); nothing was accepted, please retry"));
    match input {
        RdnsInput::Answer { status: 200, body } => dns::parse_answer(body, rtype).map_err(unavailable),
        RdnsInput::Answer { status, .. } => Err(unavailable(format!("DoH answered HTTP {status}"))),
        RdnsInput::Failed(why) => Err(unavailable(why.to_string())),
        RdnsInput::Start | RdnsInput::Kv(_) => Err(unavailable("a DoH answer was expected".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> RdnsCheck {
        RdnsCheck { ip: "192.0.2.7".parse().unwrap(), suffix: "mail-plus.com".into(), doh_url: "https://doh.test/dns-query".into() }
    }

    fn json(records: &[(u16, &str)]) -> Vec<u8> {
        let answers: Vec<_> = records.iter().map(|(t, d)| serde_json::json!({"name": "x", "type": t, "data": d})).collect();
        serde_json::to_vec(&serde_json::json!({"Status": 0, "Answer": answers})).unwrap()
    }

    #[test]
    fn a_pass_takes_a_ptr_and_a_forward_lookup_and_is_remembered() {
        let mut cache = VerdictCache::default();
        let mut r = Rdns::new(check());
        assert_eq!(r.step(RdnsInput::Start, &mut cache, 0).unwrap(), RdnsStep::KvGet("rdns:mail-plus.com:192.0.2.7".into()));
        let RdnsStep::Fetch { url: ptr, .. } = r.step(RdnsInput::Kv(None), &mut cache, 0).unwrap() else { panic!("a PTR fetch") };
        assert!(ptr.contains("name=7.2.0.192.in-addr.arpa") && ptr.contains("type=PTR"), "{ptr}");
        let body = json(&[(12, "mx1.mail-plus.com.")]);
        let RdnsStep::Fetch { url: fwd, .. } = r.step(RdnsInput::Answer { status: 200, body: &body }, &mut cache, 0).unwrap() else {
            panic!()
        };
        assert!(fwd.contains("name=mx1.mail-plus.com") && fwd.contains("type=A"), "{fwd}");
        let body = json(&[(1, "192.0.2.7")]);
        let done = r.step(RdnsInput::Answer { status: 200, body: &body }, &mut cache, 0).unwrap();
        assert_eq!(done, RdnsStep::Done { passed: true, remember: Some(("rdns:mail-plus.com:192.0.2.7".into(), 3600)) });
        // The isolate remembers it: the next check costs nothing.
        let mut again = Rdns::new(check());
        assert_eq!(again.step(RdnsInput::Start, &mut cache, 10).unwrap(), RdnsStep::Done { passed: true, remember: None });
    }

    #[test]
    fn names_outside_the_suffix_cost_no_forward_lookup_and_refusals_are_not_written() {
        let mut cache = VerdictCache::default();
        let mut r = Rdns::new(check());
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        r.step(RdnsInput::Kv(None), &mut cache, 0).unwrap();
        let body = json(&[(12, "evilmail-plus.com."), (12, "mail-plus.com.evil.net.")]);
        assert_eq!(
            r.step(RdnsInput::Answer { status: 200, body: &body }, &mut cache, 0).unwrap(),
            RdnsStep::Done { passed: false, remember: None }
        );
    }

    #[test]
    fn at_most_two_forward_lookups_and_resolver_failures_are_503() {
        let mut cache = VerdictCache::default();
        let mut r = Rdns::new(check());
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        r.step(RdnsInput::Kv(None), &mut cache, 0).unwrap();
        let body = json(&[(12, "a.mail-plus.com"), (12, "b.mail-plus.com"), (12, "c.mail-plus.com")]);
        let mut fetches = 0;
        let mut step = r.step(RdnsInput::Answer { status: 200, body: &body }, &mut cache, 0).unwrap();
        while let RdnsStep::Fetch { .. } = step {
            fetches += 1;
            let wrong = json(&[(1, "198.51.100.1")]);
            step = r.step(RdnsInput::Answer { status: 200, body: &wrong }, &mut cache, 0).unwrap();
        }
        assert_eq!((fetches, step), (2, RdnsStep::Done { passed: false, remember: None }));

        let mut r = Rdns::new(check());
        let mut cache = VerdictCache::default();
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        r.step(RdnsInput::Kv(None), &mut cache, 0).unwrap();
        let e = r.step(RdnsInput::Answer { status: 502, body: b"" }, &mut cache, 0).unwrap_err();
        assert_eq!(e.status(), 503);
        assert!(e.to_string().contains("HTTP 502"));
        // Out of order: 503, never a verdict.
        assert_eq!(r.step(RdnsInput::Start, &mut cache, 0).unwrap_err().status(), 503);
        let mut r = Rdns::new(check());
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        r.step(RdnsInput::Kv(None), &mut cache, 0).unwrap();
        assert!(r.step(RdnsInput::Failed("timed out after 5 s"), &mut cache, 0).unwrap_err().to_string().contains("timed out"));
    }

    #[test]
    fn a_cached_kv_verdict_is_taken_as_written() {
        let mut cache = VerdictCache::default();
        let mut r = Rdns::new(check());
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        assert_eq!(r.step(RdnsInput::Kv(Some("pass")), &mut cache, 0).unwrap(), RdnsStep::Done { passed: true, remember: None });
        let mut r = Rdns::new(check());
        let mut cache = VerdictCache::default();
        r.step(RdnsInput::Start, &mut cache, 0).unwrap();
        assert_eq!(r.step(RdnsInput::Kv(Some("fail")), &mut cache, 0).unwrap(), RdnsStep::Done { passed: false, remember: None });
    }
}
