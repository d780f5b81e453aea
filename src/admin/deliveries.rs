//! Deliveries as rows of SQL, whichever table keeps them (`migrations/0009_two_rows.sql`): a delivery
//! that succeeded at its first attempt, and was the first thing logged of its event, is kept in the
//! event's own row (`ok_destination`, `first_ok_*`: two D1 rows written for such an event, not three);
//! every other delivery has a row in `deliveries`. A later step of an own delivery first copies it
//! into `deliveries` (`MATERIALISE`), and from then on that row is the delivery.

use crate::status::Status;

/// The columns of a delivery as rows read them.
pub const DELIVERY_COLUMNS: &str =
    "event_id, destination, status, attempts, last_status, last_error, updated_at, first_ok_ms, first_ok_status, first_ok_duration_ms";

/// An event's own delivery, as a row of `deliveries` would hold it (`e`: its event's row).
fn own_columns(e: &str) -> String {
    format!(
        "{e}.id AS event_id, {e}.ok_destination AS destination, {} AS status, 1 AS attempts, {e}.first_ok_status AS last_status, \
         NULL AS last_error, {e}.first_ok_ms / 1000 AS updated_at, {e}.first_ok_ms AS first_ok_ms, \
         {e}.first_ok_status AS first_ok_status, {e}.first_ok_duration_ms AS first_ok_duration_ms",
        Status::Delivered.sql()
    )
}

/// The event `e` has an own delivery, not copied into `deliveries`.
pub fn has_own_delivery(e: &str) -> String {
    format!(
        "{e}.ok_destination IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = {e}.id AND x.destination = {e}.ok_destination)"
    )
}

/// The columns of an event `e`'s own delivery, for conditions that name them (`admin::EventQuery::delivery_where_clause`).
pub const OWN_DELIVERY: DeliveryColumns =
    DeliveryColumns { destination: "e.ok_destination", status: "'delivered'", updated_at: "(e.first_ok_ms / 1000)" };

/// The columns of a row of `deliveries d`.
pub const DELIVERY_ROW: DeliveryColumns = DeliveryColumns { destination: "d.destination", status: "d.status", updated_at: "d.updated_at" };

/// Where conditions find a delivery's destination, status and time of its last change.
pub struct DeliveryColumns {
    pub destination: &'static str,
    pub status: &'static str,
    pub updated_at: &'static str,
}

/// Every delivery for which `cond` holds, as one table (use it in `FROM`, with an alias). `cond` names
/// the columns of `DELIVERY_COLUMNS` without a table, and may name an outer query's table other than
/// `ev` and `x`. Each side is read by its own index: the condition is written into both, not left to
/// SQLite, which reads a view or a compound subquery whole behind a correlated or `IN` condition.
pub fn delivery_rows(cond: &str) -> String {
    format!(
        "(SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {cond} \
          UNION ALL SELECT * FROM (SELECT {} FROM events ev WHERE {}) WHERE {cond})",
        own_columns("ev"),
        has_own_delivery("ev")
    )
}

/// Copies event `?1`'s own delivery to destination `?2` into `deliveries`, if it is still its own:
/// the first statement of any write to that delivery.
pub static MATERIALISE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO deliveries ({DELIVERY_COLUMNS}) SELECT {} FROM events ev WHERE ev.id = ?1 AND ev.ok_destination = ?2 AND {} \
         ON CONFLICT (event_id, destination) DO NOTHING",
        own_columns("ev"),
        has_own_delivery("ev")
    )
});

/// The same for the events `e` that `filter` (a `WHERE …`, which `has_own_delivery("e")` is part of) and
/// `order_limit` (e.g. `ORDER BY … LIMIT ?3`) pick.
pub fn materialise_where(filter: &str, order_limit: &str) -> String {
    format!(
        "INSERT INTO deliveries ({DELIVERY_COLUMNS}) SELECT {} FROM events e{filter} {order_limit} \
         ON CONFLICT (event_id, destination) DO NOTHING",
        own_columns("e")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_carry_the_condition() {
        let sql = delivery_rows("event_id = ?1");
        assert_eq!(sql.matches("WHERE event_id = ?1").count(), 2, "{sql}");
        assert!(sql.contains("'delivered' AS status"));
        assert!(MATERIALISE.contains("ev.id = ?1 AND ev.ok_destination = ?2"));
    }
}
