-- Events that could not be delivered: the schedule ran out, the origin refused
-- them permanently (410 and other 4xx), or the queue gave up on them. Each row
-- keeps the whole envelope (the event inline, or its R2 key), so it can be
-- listed and replayed. A replayed event that dies again replaces its row.
CREATE TABLE IF NOT EXISTS dead_letters (
  id          TEXT PRIMARY KEY,
  provider    TEXT NOT NULL,
  type        TEXT NOT NULL,
  attempts    INTEGER NOT NULL,
  last_status INTEGER,
  last_error  TEXT,
  dead_at     TEXT NOT NULL,
  envelope    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_time ON dead_letters (dead_at);
