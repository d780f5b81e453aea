//! Where an event and each of its deliveries stand, spelled once: the
//! `status` columns of the event log (`deliveries`, `events`), the admin API's
//! `status` filter and answers, and the console's lists (which take them from
//! `GET /admin/stats`). SQL that names a status is built from these.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// On the queue, waiting for its first attempt (or for a replay's).
    Queued,
    /// Put back, unattempted, while its destination's circuit is open (a delivery only).
    Held,
    /// Attempted, and waiting for its next attempt.
    Retrying,
    /// A destination answered 2xx.
    Delivered,
    /// Its schedule ran out, or the destination refused it for good: in the dead letters, replayable.
    Dead,
    /// No destination takes it (an event only): kept, replayable once one does.
    Unrouted,
    /// Not sent: the destination's transform made nothing of it (`null` or no output). Replayable (with the current program).
    Filtered,
}

impl Status {
    pub const ALL: [Status; 7] = [Self::Queued, Self::Held, Self::Retrying, Self::Delivered, Self::Dead, Self::Unrouted, Self::Filtered];

    /// A delivery not finished: still on a queue. The retention cron keeps its event, and a bulk replay leaves it.
    pub const UNFINISHED: [Status; 3] = [Self::Queued, Self::Held, Self::Retrying];

    /// What a bulk replay takes: a delivery that is on no queue.
    pub const REPLAYABLE: [Status; 3] = [Self::Dead, Self::Delivered, Self::Filtered];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Held => "held",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Unrouted => "unrouted",
            Self::Filtered => "filtered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// As an SQL string literal: `'dead'`.
    pub fn sql(self) -> String {
        format!("'{}'", self.as_str())
    }

    /// As an SQL list: `('queued', 'held', 'retrying')`.
    pub fn sql_list(list: &[Status]) -> String {
        format!("({})", list.iter().map(|s| s.sql()).collect::<Vec<_>>().join(", "))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_each_way() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(serde_json::from_value::<Status>(s.as_str().into()).unwrap(), s);
        }
        assert_eq!(Status::parse("Dead"), None);
        assert_eq!(Status::sql_list(&Status::UNFINISHED), "('queued', 'held', 'retrying')");
    }
}
