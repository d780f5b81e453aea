-- The event log: one row per event, written at its first delivery attempt
-- and updated on every later one; dead letters are the rows with status 'dead'. `envelope` is the
-- queue message (the event inline, or `r2_key`), kept for replay until
-- LOG_RETENTION_DAYS, when the retention cron removes the row, its attempts
-- and the R2 object it references (`payload_ref`).
CREATE TABLE IF NOT EXISTS events (
  id          TEXT PRIMARY KEY,
  provider    TEXT NOT NULL,
  type        TEXT NOT NULL,
  received_at INTEGER NOT NULL,            -- Unix seconds
  status      TEXT NOT NULL,               -- queued | retrying | delivered | dead
  attempts    INTEGER NOT NULL DEFAULT 0,  -- delivery attempts, replays included
  last_status INTEGER,
  last_error  TEXT,
  payload_ref TEXT,                        -- R2 key of a large event
  envelope    TEXT,
  updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (received_at);
CREATE INDEX IF NOT EXISTS events_by_status ON events (status, received_at);

CREATE TABLE IF NOT EXISTS delivery_attempts (
  event_id    TEXT NOT NULL,
  attempt     INTEGER NOT NULL,
  at          INTEGER NOT NULL,            -- Unix seconds
  status_code INTEGER,
  duration_ms INTEGER,
  error       TEXT,
  PRIMARY KEY (event_id, at, attempt)
);

-- Dead letters recorded before the event log existed.
INSERT OR IGNORE INTO events (id, provider, type, received_at, status, attempts, last_status, last_error, envelope, updated_at)
  SELECT id, provider, type, CAST(strftime('%s', dead_at) AS INTEGER), 'dead', attempts, last_status, last_error, envelope,
         CAST(strftime('%s', dead_at) AS INTEGER)
  FROM dead_letters;
DROP TABLE IF EXISTS dead_letters;
