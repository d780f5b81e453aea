-- Destinations: an event goes to every destination whose filter takes it,
-- each delivery with its own status, attempts and dead letter. `events.status`
-- becomes the summary of its deliveries (retrying while any is queued, held or
-- retrying; then dead if any died; else delivered). Rows of 0.2 belong to the
-- destination `origin` (ORIGIN_URL).
CREATE TABLE IF NOT EXISTS deliveries (
  event_id    TEXT NOT NULL,
  destination TEXT NOT NULL,
  status      TEXT NOT NULL,               -- queued | held | retrying | delivered | dead
  attempts    INTEGER NOT NULL DEFAULT 0,  -- delivery attempts, replays included
  last_status INTEGER,
  last_error  TEXT,
  updated_at  INTEGER NOT NULL,            -- Unix seconds
  PRIMARY KEY (event_id, destination)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_by_destination ON deliveries (destination, status);

-- Status filters go through `deliveries` now; each index is a row written per change (D1 bills it).
DROP INDEX IF EXISTS events_by_status;

INSERT OR IGNORE INTO deliveries (event_id, destination, status, attempts, last_status, last_error, updated_at)
  SELECT id, 'origin', status, attempts, last_status, last_error, updated_at FROM events;

-- Attempts now name their destination.
CREATE TABLE IF NOT EXISTS delivery_attempts_v3 (
  event_id    TEXT NOT NULL,
  destination TEXT NOT NULL,
  attempt     INTEGER NOT NULL,
  at          INTEGER NOT NULL,            -- Unix seconds
  status_code INTEGER,
  duration_ms INTEGER,
  error       TEXT,
  PRIMARY KEY (event_id, destination, at, attempt)
) WITHOUT ROWID;
INSERT OR IGNORE INTO delivery_attempts_v3 (event_id, destination, attempt, at, status_code, duration_ms, error)
  SELECT event_id, 'origin', attempt, at, status_code, duration_ms, error FROM delivery_attempts;
DROP TABLE IF EXISTS delivery_attempts;
ALTER TABLE delivery_attempts_v3 RENAME TO delivery_attempts;

-- Each destination's circuit breaker. Open after CIRCUIT_FAILURES consecutive
-- failed attempts; while open, deliveries are held and one probe goes at
-- `probe_at` (claimed by a conditional UPDATE, so only one consumer sends it).
CREATE TABLE IF NOT EXISTS circuits (
  destination TEXT PRIMARY KEY,
  open        INTEGER NOT NULL DEFAULT 0,
  failures    INTEGER NOT NULL DEFAULT 0,
  opened_at   INTEGER,
  probe_at    INTEGER,
  slow_until  INTEGER,                     -- its deliveries go to the slow lane until then
  updated_at  INTEGER NOT NULL
);
