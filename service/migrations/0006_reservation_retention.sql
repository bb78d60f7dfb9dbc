-- Ended reservations are pruned after STOCK_RESERVATION_RETENTION_MS (docs/PERSISTENCE.md,
-- "Retention"): this index finds them by the time they ended without reading the table. It
-- holds only ended reservations, so a reservation costs it one entry, written when it ends;
-- reserving adds nothing. On a large existing table the build takes a while at the first
-- start of this version, before the service serves (nothing else writes then).
CREATE INDEX reservations_ended ON reservations (updated_at_ms) WHERE status <> 'active';
