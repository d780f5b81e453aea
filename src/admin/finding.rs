//! A finding of the doctor: what is wrong, how bad, and what to do about it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Something does not work: fix it.
    Error,
    /// It works, but look at it.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    /// What is wrong.
    pub what: String,
    /// What to do about it.
    pub fix: String,
}

pub fn finding(level: Level, what: String, fix: impl Into<String>) -> Finding {
    Finding { level, what, fix: fix.into() }
}
