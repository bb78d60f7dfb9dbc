-- Identifiers (skus, locations, reservation and request ids) are opaque strings, compared and
-- ordered byte by byte: collation "C". Under the database's default collation every B-tree
-- comparison of a key went through the C library's strcoll (C.UTF-8 here, slower still under
-- en_US.UTF-8 and the like): the primary-key look-ups of ON CONFLICT, index inserts and the
-- batch statement's sort. Measured on the writer backend's own CPU per reservation, batches
-- of 1,000: 3-5 % less under C.UTF-8, 12-16 % less under ICU en-US (docs/BENCHMARKS.md,
-- "Identifier collation"). Equality was byte-wise before too (deterministic collations), so
-- no key that was distinct becomes equal, and no row changes.
-- Only the indexes on these columns are rebuilt (a collation change rewrites no table); on a
-- large ledger that is one index build of ledger_item, under this migration's lock.
ALTER TABLE items ALTER COLUMN sku TYPE text COLLATE "C",
                  ALTER COLUMN location TYPE text COLLATE "C";
ALTER TABLE reservations ALTER COLUMN reservation_id TYPE text COLLATE "C";
ALTER TABLE reservation_lines ALTER COLUMN reservation_id TYPE text COLLATE "C",
                              ALTER COLUMN sku TYPE text COLLATE "C",
                              ALTER COLUMN location TYPE text COLLATE "C";
ALTER TABLE idempotency ALTER COLUMN request_id TYPE text COLLATE "C";
ALTER TABLE ledger ALTER COLUMN sku TYPE text COLLATE "C",
                   ALTER COLUMN location TYPE text COLLATE "C";
