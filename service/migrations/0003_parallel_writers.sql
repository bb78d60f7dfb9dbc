-- Batches may be written on several connections at once, and a later batch may commit first
-- (docs/PERSISTENCE.md, "Parallel writers"). Every keyed row records the batch that wrote it
-- (its stamp: engine epoch in the high bits, the batch's last LSN in the low 40), and a row is
-- only overwritten by a later batch's. Rows written before this migration have stamp 0.
CREATE SEQUENCE engine_epochs;
ALTER TABLE items ADD COLUMN stamp bigint NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN stamp bigint NOT NULL DEFAULT 0;
ALTER TABLE reservation_lines ADD COLUMN stamp bigint NOT NULL DEFAULT 0;
ALTER TABLE idempotency ADD COLUMN stamp bigint NOT NULL DEFAULT 0;
-- The ledger's change order is (stamp, id): two batches written at once may get their ids in
-- either order, their stamps never.
ALTER TABLE ledger ADD COLUMN stamp bigint NOT NULL DEFAULT 0;
DROP INDEX ledger_item;
CREATE INDEX ledger_item ON ledger (location, sku, stamp, id);
