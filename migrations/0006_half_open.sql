-- A half-open circuit lets several probes through per interval (HALF_OPEN_PROBES):
-- `probes` counts those claimed since the window opened at `probe_at`.
ALTER TABLE circuits ADD COLUMN probes INTEGER NOT NULL DEFAULT 0;
