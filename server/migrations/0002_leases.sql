-- samenop schema, version 2: leases of the periodic work.
--
-- The sweep (request expiry, consent ending), the retention purge and the
-- audit checkpoints run once per period across every replica: the replica
-- that takes the lease of the period does the work, the others wait for the
-- next one.

CREATE TABLE samenop_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    until timestamptz NOT NULL
);
COMMENT ON TABLE samenop_leases IS 'Which replica does a periodic task (sweep, retention, audit-checkpoint) in the current period, and until when (by the database''s clock).';
COMMENT ON COLUMN samenop_leases.holder IS 'The replica: its host name and process id, and a random id of its start.';
