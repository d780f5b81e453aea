//! The program with a step before every term: `t` becomes `_mh_step | t`, all the way down. Once the budget is spent,
//! the spent twin's `_mh_step` fails, so every term the program evaluates next fails, not only the native filters
//! (a loop of pure terms, `reduce (def a: .,.; a|a|a|…) as $x (0; .+1)`, would otherwise run on). `_mh_step` is the
//! identity for paths and updates too, so `(_mh_step | .a) |= f` is still `.a |= f`.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::path::{Part, Path};

/// The native filter every term begins with.
pub const STEP: &str = "_mh_step";

/// `t`, each of its terms after a step.
pub fn instrument(t: Term<&str>) -> Term<&str> {
    let inner = inside(t);
    Term::BinOp(Box::new(Term::Call(STEP, Vec::new())), BinaryOp::Pipe(None), Box::new(inner))
}

#[allow(clippy::boxed_local)] // the terms come boxed, and go boxed
fn boxed(t: Box<Term<&str>>) -> Box<Term<&str>> {
    Box::new(instrument(*t))
}

/// `t` itself unchanged, its parts instrumented: for what the compiler reads by its form (object keys, pattern keys).
fn inside(t: Term<&str>) -> Term<&str> {
    match t {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => t,
        Term::Str(fmt, parts) => Term::Str(
            fmt,
            parts
                .into_iter()
                .map(|p| match p {
                    StrPart::Term(t) => StrPart::Term(instrument(t)),
                    other => other,
                })
                .collect(),
        ),
        Term::Arr(t) => Term::Arr(t.map(boxed)),
        Term::Obj(entries) => Term::Obj(
            entries
                .into_iter()
                .map(|(k, v)| match v {
                    // `{$x}` and `{a}` are read by their form.
                    None => (inside(k), None),
                    Some(v) => (inside(k), Some(instrument(v))),
                })
                .collect(),
        ),
        Term::Neg(t) => Term::Neg(boxed(t)),
        Term::BinOp(l, op, r) => {
            let op = match op {
                BinaryOp::Pipe(Some(p)) => BinaryOp::Pipe(Some(pattern(p))),
                other => other,
            };
            Term::BinOp(boxed(l), op, boxed(r))
        }
        Term::Label(name, t) => Term::Label(name, boxed(t)),
        Term::Fold(kind, xs, p, args) => Term::Fold(kind, boxed(xs), pattern(p), args.into_iter().map(instrument).collect()),
        Term::TryCatch(t, c) => Term::TryCatch(boxed(t), c.map(boxed)),
        Term::IfThenElse(branches, otherwise) => {
            Term::IfThenElse(branches.into_iter().map(|(c, t)| (instrument(c), instrument(t))).collect(), otherwise.map(boxed))
        }
        Term::Def(defs, rest) => Term::Def(defs.into_iter().map(def).collect(), boxed(rest)),
        Term::Call(name, args) => Term::Call(name, args.into_iter().map(instrument).collect()),
        Term::Path(t, path) => Term::Path(
            boxed(t),
            Path(
                path.0
                    .into_iter()
                    .map(|(part, opt)| {
                        let part = match part {
                            Part::Index(i) => Part::Index(instrument(i)),
                            Part::Range(from, to) => Part::Range(from.map(instrument), to.map(instrument)),
                        };
                        (part, opt)
                    })
                    .collect(),
            ),
        ),
    }
}

fn def<'s>(d: Def<&'s str, Term<&'s str>>) -> Def<&'s str, Term<&'s str>> {
    Def { name: d.name, args: d.args, body: instrument(d.body) }
}

fn pattern(p: Pattern<&str>) -> Pattern<&str> {
    match p {
        Pattern::Var(_) => p,
        Pattern::Arr(ps) => Pattern::Arr(ps.into_iter().map(pattern).collect()),
        Pattern::Obj(entries) => Pattern::Obj(entries.into_iter().map(|(k, p)| (inside(k), pattern(p))).collect()),
    }
}
