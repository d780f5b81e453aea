-- Three D1 rows written for a small event delivered on its first attempt (it was six): its event
-- row with the index of its id, and its delivery row.
--  * No index of events by time: the console and the admin list read the log in one scan (README, Scale).
--    `events` stays a rowid table: kept in its primary key's b-tree (WITHOUT ROWID) it would write one row
--    fewer, but SQLite keeps at most about 1 KB of such a row in its page and puts the rest on an overflow
--    page of its own, so a small event took 4.7 KB of the database instead of 1.5 KB (measured), and the
--    10 GB a D1 database holds would keep a third as many events.
--  * A first attempt that succeeds is kept in its delivery row (`first_ok_*`), not in `delivery_attempts`,
--    which holds failures, later attempts and replays.
--  * `deliveries` is indexed by destination and status only while a delivery is not delivered.
--  * Rows copied from 0.1's dead letters name their R2 object only in their envelope: `payload_ref` says it
--    too, so the retention cron removes it with its row and its sweep of R2 never takes it for an orphan.
DROP INDEX IF EXISTS events_by_time;
ALTER TABLE deliveries ADD COLUMN first_ok_ms INTEGER;
ALTER TABLE deliveries ADD COLUMN first_ok_status INTEGER;
ALTER TABLE deliveries ADD COLUMN first_ok_duration_ms INTEGER;
DROP INDEX IF EXISTS deliveries_by_destination;
CREATE INDEX IF NOT EXISTS deliveries_waiting ON deliveries (destination, status) WHERE status != 'delivered';
UPDATE events SET payload_ref = json_extract(envelope, '$.r2_key')
  WHERE payload_ref IS NULL AND json_valid(envelope) AND json_extract(envelope, '$.r2_key') IS NOT NULL;
