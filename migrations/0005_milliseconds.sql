-- Times to the millisecond where latency is read from them: when each attempt
-- ended (`delivery_attempts.at_ms`, was `at` in seconds) and when the event
-- was accepted (`events.received_ms`, beside `received_at` in seconds, which the
-- filters and retention keep using). The console's latency read "1000 ms" for 140 ms.
-- Existing rows are converted (their sub-second part is unknown: .000).
ALTER TABLE delivery_attempts RENAME COLUMN at TO at_ms;
UPDATE delivery_attempts SET at_ms = at_ms * 1000;
ALTER TABLE events ADD COLUMN received_ms INTEGER;
UPDATE events SET received_ms = received_at * 1000;
