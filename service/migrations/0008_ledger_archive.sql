-- Ledger archive (docs/PERSISTENCE.md, "Ledger archive"; service/ledger_archive.py): an
-- operator moves an item's oldest ledger rows to a file and leaves in their place one row of
-- kind 'opening' that carries their sums and the levels after the last of them, in one
-- transaction. Every item's counters still equal the sums of its ledger, and its chain still
-- continues; the table stops growing without bound.
--
-- The ledger stays append-only for everyone else: UPDATE and TRUNCATE are refused whoever
-- asks, and a DELETE only passes inside a transaction that named a cutoff for itself
-- (SET LOCAL stock.ledger_archive_before_ms), and only for rows older than that cutoff.
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check
    CHECK (kind IN ('reserve', 'commit', 'release', 'expire', 'decrement', 'adjust', 'set',
                    'safety', 'opening')) NOT VALID;

CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    before_ms bigint := nullif(current_setting('stock.ledger_archive_before_ms', true), '')::bigint;
BEGIN
    IF TG_OP = 'DELETE' AND before_ms IS NOT NULL AND OLD.at_ms < before_ms THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'ledger is append-only (% refused)', TG_OP;
END;
$$;
