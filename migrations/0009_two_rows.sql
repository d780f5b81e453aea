-- Two D1 rows written for a small event delivered on its first attempt (it was three): its event row
-- and the index of its id. The delivery is kept in the event's row (`ok_destination`, `first_ok_*`)
-- when it is the first thing logged of the event and its first attempt succeeded; `deliveries` holds
-- every other delivery. Readers read both as one table (`admin::delivery_rows`: one UNION ALL, each
-- side by its own index; a view would not be, SQLite reads it whole behind a correlated or `IN` condition).
-- A later step of such a delivery (a replay, a second copy) first copies it into `deliveries`
-- (`admin::MATERIALISE`); readers then see that row and no longer the event's own.
ALTER TABLE events ADD COLUMN ok_destination TEXT;
ALTER TABLE events ADD COLUMN first_ok_ms INTEGER;
ALTER TABLE events ADD COLUMN first_ok_status INTEGER;
ALTER TABLE events ADD COLUMN first_ok_duration_ms INTEGER;
