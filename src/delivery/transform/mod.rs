//! `transform` per destination: a jq program (jaq) applied to the canonical event, whose output is the body.
//!
//! Compiled once, at configuration time: a syntax error, a name that does not exist, a recursive definition, a
//! filter a transform may not use or a program too long or too deep (`check`) is a configuration error naming the
//! destination. Run on each delivery with a bounded amount of work, so no program and no event keeps the consumer busy:
//! - **steps**: every term of the program begins with a step (`instrument`), and every term jaq evaluates, the
//!   library's included, is counted (`Budget::lut`); past `MAX_STEPS` the program continues with a twin compiled
//!   from the same source whose every native filter, the step included, fails, so whatever it evaluates next fails;
//! - **loops**: a definition may not call itself (`check`), the library's own loops (`repeat`, `recurse`, `while`,
//!   `until`) take a step each round (`PRELUDE`), `range` counts each value it makes, `combinations` is refused
//!   (its outputs grow exponentially with its input), and `fromjson` refuses JSON nested deeper than `MAX_JSON_DEPTH`;
//! - **output**: at most one value, its JSON at most the caller's limit.
//!
//! What the budget cannot see: the items of one operation over whole arrays (`[$a[] + $a[]]`: one term makes the
//! product), one operation's memory (`"-" * 1e12`), and a native filter's own cost on a long string (a regular
//! expression, `indices`). README, Destinations, says so.

use crate::limits::MAX_JSON_DEPTH;
use jaq_core::load::parse::Def;
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::native::{Filter as NativeFilter, Fun};
use jaq_core::{data::HasLut, Compiler, Ctx, DataT, Error, Lut, Native, PathsPtr, RunPtr, UpdatePtr, Vars};
use jaq_json::Val;
use std::cell::Cell;

mod check;
mod instrument;

use check::{allowed, syntax_error, undefined, within_limits, REFUSED};
use instrument::{instrument, STEP};

/// How many terms one run may evaluate: about 60 ms of the Worker's CPU (BENCHMARKS.md, "Transforms").
pub const MAX_STEPS: u64 = 1_000_000;

/// The definition that holds the program.
const MAIN: &str = "_mh_main";

/// The library's loops, each with a step (`_mh_step`, which fails once the budget is spent) in every round.
const PRELUDE: &str = "
def repeat(f): def rec: f, (_mh_step | rec); rec;
def recurse(f): def rec: ., (f | _mh_step | rec); rec;
def while(cond; update): def rec: if cond then ., (update | _mh_step | rec) else empty end; rec;
def until(cond; update): def rec: if cond then . else update | _mh_step | rec end; rec;
";

/// What a program's run reads: its two look-up tables and the steps taken so far.
struct Mh;

impl DataT for Mh {
    type V<'a> = Val;
    type Data<'a> = Budget<'a>;
}

#[derive(Clone)]
struct Budget<'a> {
    lut: &'a Lut<Mh>,
    /// The same program with every native filter failing: what runs once the steps are spent.
    spent: &'a Lut<Mh>,
    steps: &'a Cell<u64>,
}

impl<'a> HasLut<'a, Mh> for Budget<'a> {
    fn lut(&self) -> &'a Lut<Mh> {
        let n = self.steps.get().saturating_add(1);
        self.steps.set(n);
        if n > MAX_STEPS {
            self.spent
        } else {
            self.lut
        }
    }
}

fn too_much_work() -> Error<Val> {
    Error::str(format!("the transform took more than {MAX_STEPS} steps; make it do less (a loop without an end?)"))
}

/// Every native filter of the spent twin.
fn spent<'a>(_: jaq_core::Cv<'a, Mh>) -> jaq_core::ValXs<'a, <Mh as DataT>::V<'a>> {
    Box::new(std::iter::once(Err(too_much_work().into())))
}

/// `range/3`, a step per value.
fn range<'a>(mut cv: jaq_core::Cv<'a, Mh>) -> jaq_core::ValXs<'a, <Mh as DataT>::V<'a>> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let mut from = cv.0.pop_var();
    let steps = cv.0.data().steps;
    let cmp = by.partial_cmp(&Val::from(0isize)).unwrap_or(Equal);
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let more = match cmp {
            Greater => from < to,
            Less => from > to,
            Equal => from != to,
        };
        if !more {
            return None;
        }
        steps.set(steps.get().saturating_add(1));
        if steps.get() > MAX_STEPS {
            done = true;
            return Some(Err(too_much_work().into()));
        }
        match from.clone() + by.clone() {
            Ok(next) => Some(Ok(std::mem::replace(&mut from, next))),
            Err(e) => {
                done = true;
                Some(Err(e.into()))
            }
        }
    }))
}

/// A refused filter, should it be reached.
fn unavailable<'a>(_: jaq_core::Cv<'a, Mh>) -> jaq_core::ValXs<'a, <Mh as DataT>::V<'a>> {
    Box::new(std::iter::once(Err(Error::str("this filter is not available in a transform").into())))
}

/// `fromjson`, refusing JSON nested deeper than `MAX_JSON_DEPTH` before it is parsed: jaq-json's reader
/// recurses once per level, and a sender's 3 KB of `[` would overflow the stack (which `try` cannot catch).
fn fromjson<'a>(cv: jaq_core::Cv<'a, Mh>) -> jaq_core::ValXs<'a, <Mh as DataT>::V<'a>> {
    use jaq_std::ValT as _;
    let fail = |m: String| Box::new(std::iter::once(Err(Error::str(m).into()))) as jaq_core::ValXs<'a, Val>;
    let Some(bytes) = cv.1.as_utf8_bytes() else { return fail(format!("cannot parse {} as JSON: not a string", cv.1)) };
    if crate::providers::payload::nested_deeper_than(bytes, MAX_JSON_DEPTH) {
        return fail(format!("cannot parse a string as JSON: it nests deeper than {MAX_JSON_DEPTH} levels"));
    }
    // The values up to the first error (the reader does not move past one: it would yield it for ever).
    let mut values = Vec::new();
    for r in jaq_json::read::parse_many(bytes) {
        let failed = r.is_err();
        values.push(r.map_err(|e| Error::str(format!("cannot parse a string as JSON: {e}")).into()));
        if failed {
            break;
        }
    }
    Box::new(values.into_iter())
}

/// `_mh_step`: its input, unchanged (the spent twin's fails).
fn step<'a>(cv: jaq_core::Cv<'a, Mh>) -> jaq_core::ValXs<'a, <Mh as DataT>::V<'a>> {
    Box::new(std::iter::once(Ok(cv.1)))
}

/// The native filters: jaq's, its standard library's and its JSON's, with `range` and `_mh_step` ours.
fn natives() -> Vec<Fun<Mh>> {
    let (range, step, fromjson): (RunPtr<Mh>, RunPtr<Mh>, RunPtr<Mh>) = (range, step, fromjson);
    // A step is the identity for paths and updates too: `(_mh_step | .a) |= f` is `.a |= f`.
    let step_paths: PathsPtr<Mh> = |cv| Box::new(std::iter::once(Ok(cv.1)));
    let step_update: UpdatePtr<Mh> = |cv, f| f(cv.1);
    let step = Native::<Mh>::new(step).with_paths(step_paths).with_update(step_update);
    let ours: [NativeFilter<Native<Mh>>; 3] = [
        ("range", jaq_core::native::v(3), Native::<Mh>::new(range)),
        (STEP, jaq_core::native::v(0), step),
        ("fromjson", jaq_core::native::v(0), Native::<Mh>::new(fromjson)),
    ];
    let unavailable: RunPtr<Mh> = unavailable;
    let replaced: Vec<(&str, usize)> = ours.iter().map(|(name, arity, _)| (*name, arity.len())).collect();
    jaq_core::funs::<Mh>()
        .chain(jaq_std::funs::<Mh>())
        .chain(jaq_json::funs::<Mh>())
        .filter(|(name, arity, _)| !replaced.contains(&(*name, arity.len())))
        .map(|(name, arity, native)| match REFUSED.contains(&name) {
            true => (name, arity, Native::<Mh>::new(unavailable)),
            false => (name, arity, native),
        })
        .chain(ours)
        .collect()
}

/// The library's definitions, its loops ours (each where the library's was: later definitions call it).
fn prelude() -> Vec<Def<&'static str>> {
    let ours = load::parse(PRELUDE, |p| p.defs()).unwrap_or_default();
    let mine = |d: &Def<&str>| ours.iter().find(|o| o.name == d.name && o.args.len() == d.args.len()).cloned();
    jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs()).map(|d| mine(&d).unwrap_or(d)).collect()
}

/// A compiled transform: its source, and the program with its spent twin.
pub struct Transform {
    source: String,
    program: jaq_core::Filter<Mh>,
    spent: jaq_core::Filter<Mh>,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transform({:?})", self.source)
    }
}

/// What a transform made of an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// The body: the output's JSON.
    Body(String),
    /// `null`, or no output: the destination does not take this event.
    Filtered,
}

impl Transform {
    /// Compiles `source`, or says what is wrong with it (with its line and column).
    pub fn compile(source: &str) -> Result<Transform, String> {
        within_limits(source)?;
        let term = load::parse(source, |p| p.term()).ok_or_else(|| syntax_error(source))?;
        allowed(&term)?;
        // The program is the library's last definition, each of its terms after a step (`instrument`); what is
        // compiled is a call of it. Its names are still slices of `source`, so errors say where they are.
        let main = Def { name: MAIN, args: Vec::new(), body: instrument(term) };
        let arena = Arena::default();
        let compile = |funs: Vec<Fun<Mh>>| {
            let defs = prelude().into_iter().chain([main.clone()]);
            let modules = Loader::new(defs).load(&arena, File { code: MAIN, path: () }).map_err(|_| syntax_error(source))?;
            Compiler::default().with_funs(funs).compile(modules).map_err(|errs| undefined(source, errs))
        };
        let program = compile(natives())?;
        let fail: RunPtr<Mh> = spent;
        let spent = compile(natives().into_iter().map(|(name, arity, _)| (name, arity, Native::<Mh>::new(fail))).collect())?;
        Ok(Transform { source: source.to_string(), program, spent })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs on `event` (the canonical event's JSON): its one output, as JSON of at most `max_bytes`, or why not.
    pub fn apply(&self, event: &[u8], max_bytes: usize) -> Result<Output, String> {
        let input = jaq_json::read::parse_single(event).map_err(|e| format!("the event is not readable as JSON ({e})"))?;
        let steps = Cell::new(0);
        let budget = Budget { lut: &self.program.lut, spent: &self.spent.lut, steps: &steps };
        let mut outputs = self.program.id.run((Ctx::<Mh>::new(budget, Vars::new([])), input));
        let first = outputs.next().transpose().map_err(|e| failed(e, &steps))?;
        match outputs.next() {
            None => {}
            Some(Err(e)) => return Err(failed(e, &steps)),
            Some(Ok(_)) => {
                return Err("the transform gave more than one value; collect them into one (`[…]`) or pick one (`first(…)`)".into())
            }
        }
        let Some(value) = first.filter(|v| *v != Val::Null) else { return Ok(Output::Filtered) };
        // jaq's JSON as it is (its keys in their order, its numbers as written), checked to be JSON: what is not
        // (NaN, an infinity) is said here, not sent.
        let body = value.to_string();
        if serde_json::from_str::<serde::de::IgnoredAny>(&body).is_err() {
            return Err("the transform's output is not JSON: NaN or an infinity, or nested deeper than 128 levels".into());
        }
        if body.len() > max_bytes {
            return Err(format!("the transform's output is {} bytes, over the {max_bytes} this destination takes", body.len()));
        }
        Ok(Output::Body(body))
    }
}

/// A run's error as the event log says it.
fn failed(e: jaq_core::Exn<'_, Val>, steps: &Cell<u64>) -> String {
    if steps.get() > MAX_STEPS {
        return too_much_work().to_string();
    }
    match e.get_err() {
        Ok(err) => format!("the transform failed: {err}"),
        Err(_) => "the transform stopped (halt or break out of its program)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(program: &str, event: &str) -> Result<Output, String> {
        Transform::compile(program)?.apply(event.as_bytes(), 1 << 20)
    }

    const EVENT: &str =
        r#"{"id":"evt_1","type":"email.bounced","data":{"to":[{"email":"a@x"},{"email":"b@x"}],"subject":"Hi","bounce":{"kind":"hard"}}}"#;

    #[test]
    fn reshapes_filters_and_fails() {
        assert_eq!(
            run("{who: [.data.to[].email], t: .type}", EVENT),
            Ok(Output::Body(r#"{"who":["a@x","b@x"],"t":"email.bounced"}"#.into()))
        );
        assert_eq!(
            run("{b: 1, a: 123456789012345678901234567890}", EVENT),
            Ok(Output::Body(r#"{"b":1,"a":123456789012345678901234567890}"#.into()))
        );
        assert!(run("{n: nan}", EVENT).unwrap_err().contains("not JSON"));
        assert!(run("1, error(\"boom\")", EVENT).unwrap_err().contains("boom"));
        assert_eq!(run(r#"select(.type == "email.delivered")"#, EVENT), Ok(Output::Filtered));
        assert_eq!(run("null", EVENT), Ok(Output::Filtered));
        assert_eq!(
            run("if .data.bounce then {text: \"bounce: \\(.data.subject)\"} else empty end", EVENT),
            Ok(Output::Body(r#"{"text":"bounce: Hi"}"#.into()))
        );
        let e = run(".data.subject | tonumber", EVENT).unwrap_err();
        assert!(e.starts_with("the transform failed"), "{e}");
        assert!(run(".data.to[]", EVENT).unwrap_err().contains("more than one value"));
        assert!(run("{x: (\"a\" * 100)}", EVENT).is_ok());
        let big = Transform::compile("[range(1000)]").unwrap().apply(EVENT.as_bytes(), 100).unwrap_err();
        assert!(big.contains("over the 100"), "{big}");
    }

    #[test]
    fn paths_and_updates_see_through_the_steps() {
        let body = |p: &str| match run(p, EVENT) {
            Ok(Output::Body(b)) => b,
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(body(".data.subject |= ascii_downcase | .data.subject"), r#""hi""#);
        assert_eq!(body("del(.data.to) | .data | keys"), r#"["bounce","subject"]"#);
        assert_eq!(body("[paths] | length > 5"), "true");
        assert_eq!(body("(.. | select(type == \"string\")) |= ascii_upcase | .type"), r#""EMAIL.BOUNCED""#);
        assert_eq!(body(".data.to[0].email as $e | {$e, n: (.data.to | length)}"), r#"{"e":"a@x","n":2}"#);
        assert_eq!(body("reduce .data.to[] as {email: $m} (\"\"; . + $m)"), r#""a@xb@x""#);
        assert_eq!(body("to_entries | map(select(.key == \"id\")) | from_entries"), r#"{"id":"evt_1"}"#);
        assert_eq!(body("{a: 1} | .a += 1 | .b //= 3"), r#"{"a":2,"b":3}"#);
        assert_eq!(body("label $out | .data.to[] | .email | if . == \"a@x\" then ., break $out else . end"), r#""a@x""#);
    }

    #[test]
    fn a_senders_deep_json_is_refused_not_parsed() {
        let deep = format!(r#"{{"data":{{"subject":"{}"}}}}"#, "[".repeat(3000));
        let out = run(r#".data.subject | try fromjson catch "refused""#, &deep);
        assert_eq!(out, Ok(Output::Body(r#""refused""#.into())));
        assert_eq!(run(r#""[1, {\"a\": 2}]" | fromjson | .[1].a"#, EVENT), Ok(Output::Body("2".into())));
        assert_eq!(run(r#"[("1 2" | fromjson), ("12" | tonumber)]"#, EVENT), Ok(Output::Body("[1,2,12]".into())));
        assert!(run(r#""Hi" | tonumber"#, EVENT).unwrap_err().contains("cannot parse"));
    }

    #[test]
    fn loops_end() {
        for program in [
            "last(range(1e15))",
            "[repeat(.)]",
            "until(false; .)",
            "[limit(1e9; repeat(1))] | length",
            "last(recurse(.))",
            "[while(true; .)]",
        ] {
            let e = run(program, EVENT).unwrap_err();
            assert!(e.contains("more than 1000000 steps"), "{program}: {e}");
        }
        // Loops of pure terms (no native filter in them): every term takes a step, so they end too.
        for program in [
            "reduce (def a: .,.; def b: a|a|a|a|a|a|a|a; b|b|b|b|b|b|b|b) as $x (0; .+1)",
            "1, (def a: .,.; def b: a|a|a|a|a|a|a|a; b|b|b|b|b|b|b|b | empty)",
            "[range(1000)] as $a | reduce ($a[]|$a[]|$a[]|$a[]) as $x (0; .+1)",
            "[range(1000)] as $a | reduce ($a[] + $a[] + $a[] + $a[]) as $x (0; .+$x)",
        ] {
            let e = run(program, EVENT).unwrap_err();
            assert!(e.contains("steps") || e.contains("more than one value"), "{program}: {e}");
        }
        // Caught, the error still ends the run (this test ends): what is left is cheap.
        let _ = run("[try repeat(.) catch 1] | length", EVENT);
        let _ = run("[.[] | try last(range(1e15)) catch 0]", EVENT);
        assert!(run("[limit(5; repeat(1))] | length", EVENT).is_ok());
        assert!(run("[range(10)] | add", EVENT).is_ok());
    }
}
