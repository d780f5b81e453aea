-- Signing out of the console ends the session on the server: its id is kept here until the
-- session would have expired (the retention cron removes it then), and a cookie naming it is refused.
CREATE TABLE IF NOT EXISTS console_signouts (
  id      TEXT NOT NULL PRIMARY KEY,
  expires INTEGER NOT NULL
) WITHOUT ROWID;
