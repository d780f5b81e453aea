//! What is wrong with a transform's program, said with where: a syntax error, a name that does not exist, a
//! definition that calls itself (recursion would be a loop the step budget could not end), a filter a transform
//! may not use.

use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::load::{self};
use jaq_core::path::Part;

/// Filters a transform may not call: they read or write outside the event (the clock included: it reads as
/// a panic in Wasm), stop the Worker, or grow without bound. Refused when the program names them, and made
/// to fail in the table too (`natives`), should a library definition reach one.
pub const REFUSED: [&str; 15] = [
    "now",
    "localtime",
    "strflocaltime",
    "halt",
    "halt_error",
    "input",
    "inputs",
    "env",
    "debug",
    "stderr",
    "input_filename",
    "combinations",
    "debug_empty",
    "stderr_empty",
    "_mh_step",
];

/// Where `part` (a slice of `source`) is: `line L, column C` (or `the library`, when it is not in `source`).
fn position(source: &str, part: &str) -> String {
    let (start, at) = (source.as_ptr() as usize, part.as_ptr() as usize);
    if at < start || at + part.len() > start + source.len() {
        return "the library".into();
    }
    let before = source.get(..at - start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

/// The first lexing or parsing error of `source`, where it is.
pub fn syntax_error(source: &str) -> String {
    let tokens = match load::Lexer::new(source).lex() {
        Ok(tokens) => tokens,
        Err(errs) => {
            return errs
                .first()
                .map(|(expect, at)| format!("syntax error at {}: expected {}", position(source, at), expect.as_str()))
                .unwrap_or_else(|| "syntax error".into())
        }
    };
    match load::Parser::new(&tokens).parse(|p| p.term()) {
        Ok(_) => "syntax error (a module directive or import, which a transform cannot have?)".into(),
        Err(errs) => errs
            .first()
            .map(|(expect, found)| match found {
                Some(token) => format!("syntax error at {}: expected {}", position(source, token.as_str()), expect.as_str()),
                None => format!("syntax error at the end: expected {}", expect.as_str()),
            })
            .unwrap_or_else(|| "syntax error".into()),
    }
}

/// The names that do not exist, where they are.
pub fn undefined(source: &str, errs: jaq_core::compile::Errors<&str, ()>) -> String {
    let names: Vec<String> = errs
        .iter()
        .flat_map(|(_, list)| list.iter())
        .map(|(name, what)| {
            let kind = match what {
                jaq_core::compile::Undefined::Filter(arity) => format!("filter {name}/{arity}"),
                jaq_core::compile::Undefined::Var => format!("variable {name}"),
                jaq_core::compile::Undefined::Label => format!("label {name}"),
                _ => format!("module {name}"),
            };
            format!("{kind} (at {})", position(source, name))
        })
        .collect();
    format!("no such {}", names.join(", "))
}

/// The longest program, and the most operators, brackets and nesting keywords it may hold: each may take parsing,
/// checking, compiling and running one level deeper, and each level is a few frames of a stack of about a megabyte
/// (natively in release, 256 levels of any kind fitted in 1 MB and 512 did not).
pub const MAX_PROGRAM_BYTES: usize = 4096;
pub const MAX_NESTING: usize = 200;

/// Refuses a program too long, or that may nest too deep, before it is read (a sender cannot write one; an
/// operator's typo, `-----…1`, must not take the Worker down when the configuration is read).
pub fn within_limits(source: &str) -> Result<(), String> {
    if source.len() > MAX_PROGRAM_BYTES {
        return Err(format!("the program is {} bytes; a transform takes at most {MAX_PROGRAM_BYTES}", source.len()));
    }
    const KEYWORDS: [&str; 13] = ["if", "elif", "then", "else", "try", "catch", "reduce", "foreach", "def", "label", "and", "or", "as"];
    let operators = source.chars().filter(|c| "|,+-*/%=<>!?([{".contains(*c)).count();
    let keywords = source.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| KEYWORDS.contains(w)).count();
    match operators + keywords {
        n if n > MAX_NESTING => Err(format!(
            "the program holds {n} operators, brackets and keywords; a transform takes at most {MAX_NESTING} (split the work, or shorten it)"
        )),
        _ => Ok(()),
    }
}

/// The program's term refused if it recurses or calls a `REFUSED` filter.
pub fn allowed(term: &Term<&str>) -> Result<(), String> {
    check(term, &mut Vec::new())
}

/// A definition in scope while checking: its name and arity, and whether its own body is being read.
struct Scope<'s> {
    name: &'s str,
    arity: usize,
    open: bool,
}

/// Refuses recursion (a call to a definition from its own body, directly or through one inside it) and the
/// `REFUSED` filters; `scope` holds the definitions and filter arguments visible, innermost last.
fn check<'s>(term: &Term<&'s str>, scope: &mut Vec<Scope<'s>>) -> Result<(), String> {
    let each = |ts: &mut dyn Iterator<Item = &Term<&'s str>>, scope: &mut Vec<Scope<'s>>| {
        for t in ts {
            check(t, scope)?;
        }
        Ok::<(), String>(())
    };
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => Ok(()),
        Term::Str(fmt, parts) => {
            // `@name "…"` calls the format `@name`, which a definition may be (`def @r: @r "\(.)";`).
            if let Some(f) = fmt {
                check(&Term::Call(*f, Vec::new()), scope)?;
            }
            each(&mut parts.iter().filter_map(|p| if let load::lex::StrPart::Term(t) = p { Some(t) } else { None }), scope)
        }
        Term::Arr(t) => each(&mut t.iter().map(|t| &**t), scope),
        Term::Obj(kvs) => each(&mut kvs.iter().flat_map(|(k, v)| std::iter::once(k).chain(v)), scope),
        Term::Neg(t) | Term::Label(_, t) => check(t, scope),
        Term::BinOp(l, op, r) => {
            if let BinaryOp::Pipe(Some(p)) = op {
                check_pattern(p, scope)?;
            }
            check(l, scope)?;
            check(r, scope)
        }
        Term::Fold(_, xs, p, args) => {
            check(xs, scope)?;
            check_pattern(p, scope)?;
            each(&mut args.iter(), scope)
        }
        Term::TryCatch(t, c) => {
            check(t, scope)?;
            each(&mut c.iter().map(|c| &**c), scope)
        }
        Term::IfThenElse(branches, otherwise) => {
            each(&mut branches.iter().flat_map(|(c, t)| [c, t]), scope)?;
            each(&mut otherwise.iter().map(|o| &**o), scope)
        }
        Term::Path(t, path) => {
            check(t, scope)?;
            for (part, _) in &path.0 {
                match part {
                    Part::Index(i) => check(i, scope)?,
                    Part::Range(from, to) => each(&mut from.iter().chain(to.iter()), scope)?,
                }
            }
            Ok(())
        }
        Term::Call(name, args) => {
            let arity = args.len();
            match scope.iter().rev().find(|s| s.name == *name && s.arity == arity) {
                Some(s) if s.open => return Err(format!("{name}/{arity} calls itself: a transform may not recurse (its work is bounded)")),
                Some(_) => {}
                None if REFUSED.contains(name) || name.starts_with("_mh_") => {
                    return Err(format!("{name} is not available in a transform"))
                }
                None => {}
            }
            each(&mut args.iter(), scope)
        }
        Term::Def(defs, rest) => {
            let depth = scope.len();
            for def in defs {
                check_def(def, scope)?;
            }
            let result = check(rest, scope);
            scope.truncate(depth);
            result
        }
    }
}

/// One definition: its body read with itself open and its filter arguments in scope; then it is closed.
fn check_def<'s>(def: &Def<&'s str, Term<&'s str>>, scope: &mut Vec<Scope<'s>>) -> Result<(), String> {
    scope.push(Scope { name: def.name, arity: def.args.len(), open: true });
    let at = scope.len();
    scope.extend(def.args.iter().filter(|a| !a.starts_with('$')).map(|a| Scope { name: a, arity: 0, open: false }));
    let result = check(&def.body, scope);
    scope.truncate(at);
    if let Some(s) = scope.last_mut() {
        s.open = false;
    }
    result
}

fn check_pattern<'s>(p: &Pattern<&'s str>, scope: &mut Vec<Scope<'s>>) -> Result<(), String> {
    match p {
        Pattern::Var(_) => Ok(()),
        Pattern::Arr(ps) => ps.iter().try_for_each(|p| check_pattern(p, scope)),
        Pattern::Obj(kvs) => kvs.iter().try_for_each(|(k, p)| check(k, scope).and_then(|()| check_pattern(p, scope))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Transform;
    use super::MAX_NESTING;

    #[test]
    fn configuration_errors_say_what_and_where() {
        let e = Transform::compile("{a: .b").unwrap_err();
        assert!(e.starts_with("syntax error"), "{e}");
        let e = Transform::compile(".data |\n  nosuchthing(1)").unwrap_err();
        assert_eq!(e, "no such filter nosuchthing/1 (at line 2, column 3)");
        let e = Transform::compile("$nope").unwrap_err();
        assert!(e.contains("variable $nope"), "{e}");
        let e = Transform::compile("def f: f; f").unwrap_err();
        assert!(e.contains("f/0 calls itself"), "{e}");
        let e = Transform::compile("def @r: @r \"\\(.)\"; @r").unwrap_err();
        assert!(e.contains("@r/0 calls itself"), "{e}");
        let e = Transform::compile("def @r: {(@r \"\\(.)\"): 1}; @r").unwrap_err();
        assert!(e.contains("@r/0 calls itself"), "{e}");
        let e = Transform::compile("def f: def g: f; g; f").unwrap_err();
        assert!(e.contains("f/0 calls itself"), "{e}");
        assert!(Transform::compile("def f: def f: 1; f; f").is_ok(), "the inner f is another definition");
        assert!(Transform::compile("def f(g): g; f(.)").is_ok());
        assert!(Transform::compile("def f(f): f; f(1)").is_ok(), "the argument f shadows");
        for refused in ["halt", "input", "env", "$ENV", "combinations", "_mh_step", "_mh_main", "\"\\(input)\""] {
            assert!(Transform::compile(refused).is_err(), "{refused}");
        }
        assert!(Transform::compile("import \"x\" as x; .").is_err());
        // Too long, or able to nest too deep: refused before it is read; at the limit, read and run without overflowing (a 16 MB stack in this
        // debug build, whose frames are several times larger; in release 1 MB held 256 levels of each kind).
        assert!(Transform::compile(&" ".repeat(5000)).unwrap_err().contains("at most 4096"));
        assert!(Transform::compile(&"-".repeat(300)).unwrap_err().contains("at most 200"));
        let n = MAX_NESTING;
        let deepest = [
            ". | ".repeat(n) + ".",
            "-".repeat(n) + "1",
            "[".repeat(n) + &"]".repeat(n),
            "try ".repeat(n) + "1",
            "1".to_string() + &" + 1".repeat(n),
            "if . then ".repeat(n / 2) + "1" + &" end".repeat(n / 2),
        ];
        for p in deepest {
            let r = std::thread::Builder::new()
                .stack_size(16 << 20)
                .spawn(move || Transform::compile(&p).map(|t| t.apply(b"{}", 1 << 20).is_ok()))
                .unwrap()
                .join();
            assert!(r.is_ok(), "it did not overflow the stack");
        }
        assert_eq!(Transform::compile("{a: .b").unwrap_err(), "syntax error at line 1, column 7: expected closing brace");
        assert_eq!(Transform::compile("if . then 1").unwrap_err(), "syntax error at the end: expected else or end");
    }
}
