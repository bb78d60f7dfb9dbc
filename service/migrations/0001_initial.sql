-- 0001: the write-through copy of the engine state, plus the append-only ledger.
-- Times are Unix epoch milliseconds (bigint), exactly the engine's clock values.

CREATE TABLE items (
    location    text   NOT NULL,
    sku         text   NOT NULL,
    on_hand     bigint NOT NULL,
    reserved    bigint NOT NULL,
    -- The engine holds this invariant; the schema checks it a second time so a bug can never
    -- commit negative or over-reserved stock.
    CONSTRAINT items_levels_valid CHECK (on_hand >= 0 AND reserved >= 0 AND reserved <= on_hand),
    PRIMARY KEY (location, sku)
);

CREATE TABLE reservations (
    reservation_id text   PRIMARY KEY,
    order_id       text   NOT NULL,
    status         text   NOT NULL
        CHECK (status IN ('active', 'committed', 'released', 'expired')),
    expires_at_ms  bigint NOT NULL,
    created_at_ms  bigint NOT NULL,
    updated_at_ms  bigint NOT NULL,
    request_id     text
);
-- Recovery loads only active holds.
CREATE INDEX reservations_active ON reservations (reservation_id) WHERE status = 'active';

CREATE TABLE reservation_lines (
    reservation_id     text   NOT NULL REFERENCES reservations (reservation_id),
    sku                text   NOT NULL,
    location           text   NOT NULL,
    quantity           bigint NOT NULL CHECK (quantity > 0),
    quantity_committed bigint NOT NULL DEFAULT 0
        CHECK (quantity_committed >= 0 AND quantity_committed <= quantity),
    -- Position of the line in the request, so a reloaded reservation lists its lines as before.
    line_number        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (reservation_id, sku, location)
);

CREATE TABLE idempotency (
    request_id    text   PRIMARY KEY,
    fingerprint   bigint NOT NULL,
    operation     text   NOT NULL,
    -- Kept as the engine wrote it (text, not jsonb) so recovery hands back the same bytes.
    outcome_json  text   NOT NULL,
    lsn           bigint NOT NULL,
    created_at_ms bigint NOT NULL
);
CREATE INDEX idempotency_created ON idempotency (created_at_ms);

-- One row per item change: who (actor, request_id), what (kind, deltas, levels after) and why
-- (reason). `id` orders rows across engine rebuilds (the engine's LSN restarts with it).
CREATE TABLE ledger (
    id             bigserial PRIMARY KEY,
    lsn            bigint NOT NULL,
    at_ms          bigint NOT NULL,
    sku            text   NOT NULL,
    location       text   NOT NULL,
    kind           text   NOT NULL
        CHECK (kind IN ('reserve', 'commit', 'release', 'expire', 'decrement', 'adjust', 'set')),
    delta_on_hand  bigint NOT NULL,
    delta_reserved bigint NOT NULL,
    on_hand_after  bigint NOT NULL,
    reserved_after bigint NOT NULL,
    reservation_id text   NOT NULL,
    order_id       text   NOT NULL,
    request_id     text   NOT NULL,
    reason         text   NOT NULL,
    actor          text   NOT NULL,
    committed_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_levels_valid
        CHECK (on_hand_after >= 0 AND reserved_after >= 0 AND reserved_after <= on_hand_after)
);
CREATE INDEX ledger_item ON ledger (location, sku, id);

-- The ledger is append-only: no update, no delete, no truncate, whoever asks.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER ledger_no_update_delete BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
