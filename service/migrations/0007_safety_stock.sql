-- Safety stock (docs/PERSISTENCE.md, "Safety stock"): units of an item kept back from sale,
-- set by an operator (SetSafetyStock). Reserves and decrements see only what lies above it;
-- it moves no unit. Items carry it, the ledger records each change of it (kind 'safety', with
-- delta_safety; every row also has the value after it, like on_hand_after), so that an item's
-- safety_stock is the sum of its ledger's delta_safety as on_hand is the sum of delta_on_hand.
-- Existing rows had none: 0. Constant defaults rewrite no table (the ledger is never rewritten).
ALTER TABLE items ADD COLUMN safety_stock bigint NOT NULL DEFAULT 0
    CONSTRAINT items_safety_valid CHECK (safety_stock >= 0);
ALTER TABLE ledger ADD COLUMN delta_safety bigint NOT NULL DEFAULT 0,
                   ADD COLUMN safety_after bigint NOT NULL DEFAULT 0;
-- The new kind. Rows already there passed the narrower check (and have safety_after 0), so the
-- new checks skip reading them (NOT VALID: they still hold for every row written from now on).
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check
    CHECK (kind IN ('reserve', 'commit', 'release', 'expire', 'decrement', 'adjust', 'set',
                    'safety')) NOT VALID;
ALTER TABLE ledger ADD CONSTRAINT ledger_safety_valid CHECK (safety_after >= 0) NOT VALID;

-- The journal log holds batches not yet projected, one array literal per table column: the new
-- columns of a row logged before this migration are zeros, one per item row or ledger row.
ALTER TABLE journal_log ADD COLUMN items__safety_stock text,
                        ADD COLUMN ledger__delta_safety text,
                        ADD COLUMN ledger__safety_after text;
UPDATE journal_log
   SET items__safety_stock = array_fill(0, ARRAY[cardinality(items__sku::text[])])::text,
       ledger__delta_safety = array_fill(0, ARRAY[cardinality(ledger__lsn::bigint[])])::text,
       ledger__safety_after = array_fill(0, ARRAY[cardinality(ledger__lsn::bigint[])])::text;
ALTER TABLE journal_log ALTER COLUMN items__safety_stock SET NOT NULL,
                        ALTER COLUMN ledger__delta_safety SET NOT NULL,
                        ALTER COLUMN ledger__safety_after SET NOT NULL;
-- lz4 as for the other columns (0004), where the server has it.
DO $$
BEGIN
    ALTER TABLE journal_log ALTER COLUMN items__safety_stock SET COMPRESSION lz4,
                            ALTER COLUMN ledger__delta_safety SET COMPRESSION lz4,
                            ALTER COLUMN ledger__safety_after SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 not available: the new journal_log columns keep the default compression';
END $$;
