-- Alerts (ALERT_URL): what waits to be told, sent by the minute cron as one
-- message; and who is sending now (a claim, so two crons never send twice).
CREATE TABLE IF NOT EXISTS alert_outbox (
  seq  INTEGER PRIMARY KEY AUTOINCREMENT,
  at   INTEGER NOT NULL,                   -- Unix seconds
  item TEXT NOT NULL                       -- alerts::Item as JSON
);
-- The minute's clean-up of items older than a day reads only those.
CREATE INDEX IF NOT EXISTS alert_outbox_by_at ON alert_outbox (at);
CREATE TABLE IF NOT EXISTS alert_state (
  id            INTEGER PRIMARY KEY CHECK (id = 1),
  sending_until INTEGER NOT NULL DEFAULT 0 -- Unix seconds; a flush holds it while it sends
);
INSERT OR IGNORE INTO alert_state (id, sending_until) VALUES (1, 0);
