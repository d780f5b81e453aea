//! `transform` per destination: a jq program (jaq) applied to the canonical event, whose output is the body.
//!
//! Compiled once, at configuration time: a syntax error, a name that does not exist, a recursive definition or a
//! filter a transform may not use is a configuration error naming the destination. Run on each delivery with a
//! bounded amount of work, so no program and no event keeps the consumer busy:
//! - **steps**: every term jaq evaluates is counted (`Budget::lut`); past `MAX_STEPS` the program continues with
//!   a twin compiled from the same source whose every native filter fails, so whatever it calls next ends it
//!   with an error;
//! - **loops**: a definition may not call itself (`check`), and the library's own loops (`repeat`, `recurse`,
//!   `while`, `until`) are defined here with a native step in each round (`PRELUDE`); `range` counts each value
//!   it makes; `combinations` is refused (its outputs grow exponentially with its input);
//! - **output**: at most one value, its JSON at most the caller's limit.
//!
//! What the budget cannot stop: once it is spent, a loop over the event's own arrays or objects (`.[]`, `..`) whose
//! body calls no filter runs on to their end, so nested iteration is bounded by the sizes of what it iterates; and
//! the memory of one operation the program asks for (`"-" * 1e12`).

use jaq_core::load::parse::Def;
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::native::{Filter as NativeFilter, Fun};
use jaq_core::{data::HasLut, Compiler, Ctx, DataT, Error, Lut, Native, RunPtr, Vars};
use jaq_json::Val;
use std::cell::Cell;

mod check;

use check::{allowed, syntax_error, undefined, REFUSED};

/// How many terms one run may evaluate: about 60 ms of the Worker's CPU (BENCHMARKS.md, "Transforms").
pub const MAX_STEPS: u64 = 1_000_000;

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

/// `_mh_step`: its input, unchanged (the spent twin's fails).
fn step<'a>(cv: jaq_core::Cv<'a, Mh>) -> jaq_core::ValXs<'a, <Mh as DataT>::V<'a>> {
    Box::new(std::iter::once(Ok(cv.1)))
}

/// The native filters: jaq's, its standard library's and its JSON's, with `range` and `_mh_step` ours.
fn natives() -> Vec<Fun<Mh>> {
    let (range, step): (RunPtr<Mh>, RunPtr<Mh>) = (range, step);
    let ours: [NativeFilter<Native<Mh>>; 2] =
        [("range", jaq_core::native::v(3), Native::<Mh>::new(range)), ("_mh_step", jaq_core::native::v(0), Native::<Mh>::new(step))];
    let unavailable: RunPtr<Mh> = unavailable;
    jaq_core::funs::<Mh>()
        .chain(jaq_std::funs::<Mh>())
        .chain(jaq_json::funs::<Mh>())
        .filter(|(name, arity, _)| !(*name == "range" && arity.len() == 3))
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
        let term = load::parse(source, |p| p.term()).ok_or_else(|| syntax_error(source))?;
        allowed(&term)?;
        let arena = Arena::default();
        let compile = |funs: Vec<Fun<Mh>>| {
            let modules = Loader::new(prelude()).load(&arena, File { code: source, path: () }).map_err(|_| syntax_error(source))?;
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
        if outputs.next().is_some() {
            return Err("the transform gave more than one value; collect them into one (`[…]`) or pick one (`first(…)`)".into());
        }
        let Some(value) = first.filter(|v| *v != Val::Null) else { return Ok(Output::Filtered) };
        // Through serde_json: what is not JSON (NaN, infinities, byte strings) is said here, not sent.
        let text = value.to_string();
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|_| "the transform's output is not JSON (NaN, an infinity or bytes?)".to_string())?;
        let body = json.to_string();
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
            Ok(Output::Body(r#"{"t":"email.bounced","who":["a@x","b@x"]}"#.into()))
        );
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
        // Caught, the error still ends the run (this test ends): what is left is cheap.
        let _ = run("[try repeat(.) catch 1] | length", EVENT);
        let _ = run("[.[] | try last(range(1e15)) catch 0]", EVENT);
        assert!(run("[limit(5; repeat(1))] | length", EVENT).is_ok());
        assert!(run("[range(10)] | add", EVENT).is_ok());
    }
}
