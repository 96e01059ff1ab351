-- What an adjustment needs to be computed against: the daily use a bill (or its latest
-- correction) was based on, and the order of corrections to one bill. Two runs racing to
-- correct the same bill from the same state collide on (bill_id, sequence), so at most one
-- correction is recorded per state; the same inputs may recur later (A, then B, then A).
ALTER TABLE billing.bills
    ADD COLUMN daily_wh bigint[] NOT NULL DEFAULT '{}';   -- use per day of the period, in Wh (kWh x 1000)

ALTER TABLE billing.bill_adjustments
    ADD COLUMN sequence integer NOT NULL DEFAULT 1,
    ADD COLUMN daily_wh bigint[] NOT NULL DEFAULT '{}',
    DROP CONSTRAINT bill_adjustments_bill_id_inputs_fingerprint_key,
    ADD CONSTRAINT bill_adjustments_bill_id_sequence_key UNIQUE (bill_id, sequence);

ALTER TABLE billing.bill_adjustments ALTER COLUMN sequence DROP DEFAULT;

CREATE INDEX bills_period ON billing.bills (period_start, status);
