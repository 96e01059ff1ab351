-- The billing ledger: one bill per customer and month, and the adjustments that correct
-- issued bills. Money is numeric, rounded once per line by the code that writes it.
CREATE SCHEMA IF NOT EXISTS billing;

CREATE TABLE billing.bills (
    bill_id             text PRIMARY KEY,          -- deterministic: customer and period
    customer_id         integer NOT NULL,
    period_start        date NOT NULL,             -- local calendar month, first day
    period_end          date NOT NULL,             -- exclusive
    measured_kwh        numeric(14, 3) NOT NULL,
    estimated_kwh       numeric(14, 3) NOT NULL,
    energy_by_band      jsonb NOT NULL,            -- band -> {kwh, rate, amount}
    energy_charge       numeric(12, 2) NOT NULL,
    supply_days         integer NOT NULL,
    standing_charge     numeric(12, 2) NOT NULL,
    adjustments_carried numeric(12, 2) NOT NULL DEFAULT 0,
    tax                 numeric(12, 2) NOT NULL,
    total_due           numeric(12, 2) NOT NULL,
    is_estimated        boolean NOT NULL,
    currency            text NOT NULL DEFAULT 'GBP',
    status              text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'issued')),
    issued_at           timestamptz,
    inputs_fingerprint  text NOT NULL,
    computed_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, period_start),
    CHECK (period_end > period_start),
    CHECK ((status = 'issued') = (issued_at IS NOT NULL))
);

CREATE TABLE billing.bill_adjustments (
    adjustment_id      bigserial PRIMARY KEY,
    bill_id            text NOT NULL REFERENCES billing.bills (bill_id),
    customer_id        integer NOT NULL,
    delta_kwh          numeric(14, 3) NOT NULL,
    delta_amount       numeric(12, 2) NOT NULL,    -- what the corrected bill would differ by
    charged_amount     numeric(12, 2) NOT NULL,    -- what is carried: undercharges past the
                                                   -- back-billing limit are not recovered
    reason             text NOT NULL,
    changed_partitions text[] NOT NULL,
    inputs_fingerprint text NOT NULL,
    found_at           timestamptz NOT NULL DEFAULT now(),
    carried_on_bill_id text REFERENCES billing.bills (bill_id),
    UNIQUE (bill_id, inputs_fingerprint)
);

CREATE INDEX bill_adjustments_open ON billing.bill_adjustments (customer_id) WHERE carried_on_bill_id IS NULL;

-- Sealing is the database's job, not only the application's: an issued bill, and an
-- adjustment once a bill carries it, can be neither changed nor removed.
CREATE FUNCTION billing.refuse_sealed_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'billing.% is a ledger and cannot be truncated', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_TABLE_NAME = 'bills' THEN
        RAISE EXCEPTION 'bill % is issued and sealed: % refused', OLD.bill_id, TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RAISE EXCEPTION 'adjustment % is carried on bill % and sealed: % refused',
        OLD.adjustment_id, OLD.carried_on_bill_id, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER issued_bills_are_sealed
    BEFORE UPDATE OR DELETE ON billing.bills
    FOR EACH ROW WHEN (OLD.status = 'issued')
    EXECUTE FUNCTION billing.refuse_sealed_change();

CREATE TRIGGER bills_are_never_truncated
    BEFORE TRUNCATE ON billing.bills
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_sealed_change();

CREATE TRIGGER carried_adjustments_are_sealed
    BEFORE UPDATE OR DELETE ON billing.bill_adjustments
    FOR EACH ROW WHEN (OLD.carried_on_bill_id IS NOT NULL)
    EXECUTE FUNCTION billing.refuse_sealed_change();

CREATE TRIGGER adjustments_are_never_truncated
    BEFORE TRUNCATE ON billing.bill_adjustments
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_sealed_change();
