"""Read-only checks of PostgreSQL's copy, shared by `stockctl` (service/cli.py) and the load
tests' database check (loadtest/db_check.py).

Kept apart from service/persistence.py, the service's statements, because stockctl must run
without the native engine module, which persistence.py imports.
"""

from __future__ import annotations

# The audit of every item whose SKU matches the LIKE pattern $1, one row each: its counters
# beside the sums of its ledger rows (all of them, and per kind: units committed, received by
# adjustment, set by counts) and the units of its active holds, with whether the counters
# differ from the sums (`counters_differ`) and whether reserved differs from the held units
# (`holds_differ`). An item with rows on one side only is there too, the missing side NULL (a
# ledger without its item row, holds of an unknown item), and differs. A hold past its expiry
# counts until the sweeper's expiry is written: the counter and the hold change in the same
# transaction. Unordered. Read by `stockctl reconcile` (service/cli.py) and by the Locust run's
# database check (loadtest/db_check.py); both read it in one repeatable-read snapshot.
ITEM_AUDIT_STATEMENT = """
WITH i AS (SELECT sku, location, on_hand, reserved, safety_stock FROM items WHERE sku LIKE $1),
sums AS (
    SELECT sku, location, sum(delta_on_hand)::bigint AS on_hand,
           sum(delta_reserved)::bigint AS reserved, sum(delta_safety)::bigint AS safety_stock,
           (-sum(delta_on_hand) FILTER (WHERE kind = 'commit'))::bigint AS committed,
           (sum(delta_on_hand) FILTER (WHERE kind = 'adjust'))::bigint AS received,
           (sum(delta_on_hand) FILTER (WHERE kind = 'set'))::bigint AS set_total
      FROM ledger WHERE sku LIKE $1 GROUP BY sku, location),
h AS (
    SELECT l.sku, l.location, sum(l.quantity)::bigint AS held
      FROM reservations r JOIN reservation_lines l USING (reservation_id)
     WHERE r.status = 'active' AND l.sku LIKE $1 GROUP BY l.sku, l.location)
SELECT sku, location, i.on_hand, i.reserved, i.safety_stock,
       sums.on_hand AS ledger_on_hand, sums.reserved AS ledger_reserved,
       sums.safety_stock AS ledger_safety_stock,
       coalesce(sums.committed, 0) AS ledger_committed,
       coalesce(sums.received, 0) AS ledger_received,
       coalesce(sums.set_total, 0) AS ledger_set, coalesce(h.held, 0) AS held,
       (i.on_hand IS DISTINCT FROM sums.on_hand OR i.reserved IS DISTINCT FROM sums.reserved
        OR i.safety_stock IS DISTINCT FROM sums.safety_stock) AS counters_differ,
       (i.sku IS NOT NULL OR h.sku IS NOT NULL)
        AND coalesce(i.reserved, -1) <> coalesce(h.held, 0) AS holds_differ
  FROM i FULL JOIN sums USING (sku, location) FULL JOIN h USING (sku, location)
"""

# Operations durable in the journal log but not yet projected into the tables (the service
# projects them once bulk load pauses; docs/PERSISTENCE.md, "The journal log"). Read by
# `stockctl reconcile` and `ledger`, and by the ledger archive, which waits for an empty log.
JOURNAL_LOG_OPERATIONS = "SELECT coalesce(sum(operations), 0)::bigint FROM journal_log"
