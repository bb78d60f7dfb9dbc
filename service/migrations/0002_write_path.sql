-- Cheaper batch writes (docs/PERSISTENCE.md, "What one reservation costs PostgreSQL").

-- Every batch rewrites the levels of the items it touched. With room left on each page, that
-- update stays on the same page and adds no index entry (a HOT update): on_hand and reserved
-- are in no index, so every such update qualifies. Applies to pages written from now on;
-- `VACUUM FULL items` (in a quiet moment) repacks an existing table.
ALTER TABLE items SET (fillfactor = 50);

-- A line is only ever written in the same statement as its reservation (one journal batch), so
-- the foreign key could not catch anything the engine does not already guarantee, and its
-- per-line look-up was about a tenth of PostgreSQL's time per reservation (EXPLAIN ANALYZE
-- of a 1,000-reservation batch: 4.7 of 41.5 ms).
ALTER TABLE reservation_lines DROP CONSTRAINT reservation_lines_reservation_id_fkey;
