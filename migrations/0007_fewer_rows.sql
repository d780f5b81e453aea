-- Two D1 rows written for a small event delivered on its first attempt (it was six):
-- its event row and its delivery row, and nothing else.
--  * `events` is kept in its primary key's b-tree (WITHOUT ROWID): no second b-tree for the id, and no
--    index by time (the console and the admin list read the log in one scan: see README, Scale).
--  * A first attempt that succeeds is kept in its delivery row (`first_ok_*`), not in `delivery_attempts`,
--    which holds failures, later attempts and replays.
--  * `deliveries` is indexed by destination and status only while a delivery is not delivered.
CREATE TABLE IF NOT EXISTS events_v7 (
  id          TEXT NOT NULL PRIMARY KEY,
  provider    TEXT NOT NULL,
  type        TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  status      TEXT NOT NULL,
  attempts    INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error  TEXT,
  payload_ref TEXT,
  envelope    TEXT,
  updated_at  INTEGER NOT NULL,
  received_ms INTEGER
) WITHOUT ROWID;
INSERT OR IGNORE INTO events_v7 (id, provider, type, received_at, status, attempts, last_status, last_error, payload_ref, envelope, updated_at, received_ms)
  SELECT id, provider, type, received_at, status, attempts, last_status, last_error, payload_ref, envelope, updated_at, received_ms FROM events;
DROP TABLE events;
ALTER TABLE events_v7 RENAME TO events;
ALTER TABLE deliveries ADD COLUMN first_ok_ms INTEGER;
ALTER TABLE deliveries ADD COLUMN first_ok_status INTEGER;
ALTER TABLE deliveries ADD COLUMN first_ok_duration_ms INTEGER;
DROP INDEX IF EXISTS deliveries_by_destination;
CREATE INDEX IF NOT EXISTS deliveries_waiting ON deliveries (destination, status) WHERE status != 'delivered';
