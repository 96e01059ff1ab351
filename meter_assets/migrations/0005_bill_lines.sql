-- Pricing rules 2: a bill's breakdown is its lines, and the database checks they add up.
--
-- Each bill now carries its energy lines (one per time-of-use band and unit rate, with
-- measured and estimated kWh, rate and amount) and its standing-charge lines (one per daily
-- rate, with days and amount), the tax rate it was taxed at, and the version of the pricing
-- rules it was computed under. The constraints below hold for every bill written from now
-- on: each line rounded once, half up, from its own kWh and rate; one line per band and
-- rate; the lines sum to the charges; tax is one rounding of the charges; the total follows.
--
-- Bills issued before this migration are sealed and stay as issued (rules 1, the old
-- `energy_by_band` map): the constraints are NOT VALID and the line checks run on the rows
-- a statement writes, so those rows are not re-checked, while any row inserted or updated
-- must satisfy them. A recomputation under rules 2 that moves an issued bill's money
-- corrects it with an adjustment row naming the rules change.
ALTER TABLE billing.bills
    ADD COLUMN pricing_rules  smallint NOT NULL DEFAULT 1,
    ADD COLUMN tax_rate       numeric(6, 4),
    ADD COLUMN energy_lines   jsonb,              -- [{band, unit_rate, measured_kwh, estimated_kwh, kwh, amount}]
    ADD COLUMN standing_lines jsonb,              -- [{daily_rate, days, amount}]
    ALTER COLUMN energy_by_band DROP NOT NULL;    -- rules 1 only

ALTER TABLE billing.bills ALTER COLUMN pricing_rules DROP DEFAULT;

ALTER TABLE billing.bill_adjustments ADD COLUMN pricing_rules smallint NOT NULL DEFAULT 1;
ALTER TABLE billing.bill_adjustments ALTER COLUMN pricing_rules DROP DEFAULT;

-- A bill's lines are written once: every bill a statement inserts is checked at once, from
-- the rows it wrote (a transition table), in one set-based query for a month of 200,000
-- bills, where a per-row CHECK calling a function cost several times as much. A draft
-- whose inputs changed is replaced (deleted and inserted), never updated in place, so
-- this sees every bill's lines. The error names the bill and what is off.
CREATE FUNCTION billing.refuse_lines_that_do_not_add_up() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    offending record;
BEGIN
    SELECT bills.bill_id, verdict.problem INTO offending
    FROM written_bills AS bills
    CROSS JOIN LATERAL (
        SELECT
            coalesce(bool_and((line -> 'kwh')::numeric
                              = (line -> 'measured_kwh')::numeric + (line -> 'estimated_kwh')::numeric
                              AND (line -> 'measured_kwh')::numeric >= 0
                              AND (line -> 'estimated_kwh')::numeric >= 0), true)                     AS split,
            coalesce(bool_and((line -> 'amount')::numeric
                              = round((line -> 'kwh')::numeric * (line -> 'unit_rate')::numeric, 2)), true) AS rounded,
            count(*) = count(DISTINCT (line ->> 'band', (line -> 'unit_rate')::numeric))           AS one_per_price,
            coalesce(sum((line -> 'amount')::numeric), 0)                                        AS amount,
            coalesce(sum((line -> 'measured_kwh')::numeric), 0)                                  AS measured_kwh,
            coalesce(sum((line -> 'estimated_kwh')::numeric), 0)                                 AS estimated_kwh
        FROM jsonb_array_elements(bills.energy_lines) AS line
    ) AS energy
    CROSS JOIN LATERAL (
        SELECT
            coalesce(bool_and((line -> 'days')::integer > 0
                              AND (line -> 'amount')::numeric
                                  = round((line -> 'daily_rate')::numeric * (line -> 'days')::integer, 2)), true) AS rounded,
            count(*) = count(DISTINCT (line -> 'daily_rate')::numeric)                            AS one_per_rate,
            coalesce(sum((line -> 'amount')::numeric), 0)                                        AS amount,
            coalesce(sum((line -> 'days')::integer), 0)                                          AS days
        FROM jsonb_array_elements(bills.standing_lines) AS line
    ) AS standing
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN NOT energy.split
                THEN 'an energy line''s kWh is not its measured plus its estimated kWh'
            WHEN NOT energy.rounded
                THEN 'an energy line''s amount is not round(kWh x unit rate, 2)'
            WHEN NOT energy.one_per_price
                THEN 'two energy lines have the same band and unit rate'
            WHEN energy.amount <> bills.energy_charge
                THEN format('the energy lines add up to %s, not to the energy charge %s',
                            energy.amount, bills.energy_charge)
            WHEN energy.measured_kwh <> bills.measured_kwh OR energy.estimated_kwh <> bills.estimated_kwh
                THEN format('the energy lines hold %s measured and %s estimated kWh, not %s and %s',
                            energy.measured_kwh, energy.estimated_kwh, bills.measured_kwh, bills.estimated_kwh)
            WHEN NOT standing.rounded
                THEN 'a standing line''s amount is not round(daily rate x days, 2)'
            WHEN NOT standing.one_per_rate
                THEN 'two standing lines have the same daily rate'
            WHEN standing.amount <> bills.standing_charge OR standing.days <> bills.supply_days
                THEN format('the standing lines add up to %s for %s days, not to the standing charge %s for %s days',
                            standing.amount, standing.days, bills.standing_charge, bills.supply_days)
        END AS problem
    ) AS verdict
    WHERE verdict.problem IS NOT NULL
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'bill %: its lines do not add up: %', offending.bill_id, offending.problem
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER written_bill_lines_add_up
    AFTER INSERT ON billing.bills
    REFERENCING NEW TABLE AS written_bills
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_lines_that_do_not_add_up();

-- Updating a bill's lines or charges in place would escape that check: refused. (Issuing
-- a draft and carrying adjustments onto it change neither.)
CREATE FUNCTION billing.refuse_lines_changed_in_place() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bill %: its lines and charges are written once; replace the draft instead of updating it',
        OLD.bill_id USING ERRCODE = 'check_violation';
END
$$;

CREATE TRIGGER bill_lines_are_written_once
    BEFORE UPDATE ON billing.bills
    FOR EACH ROW
    WHEN (OLD.energy_lines IS DISTINCT FROM NEW.energy_lines
          OR OLD.standing_lines IS DISTINCT FROM NEW.standing_lines
          OR OLD.energy_charge <> NEW.energy_charge OR OLD.standing_charge <> NEW.standing_charge
          OR OLD.measured_kwh <> NEW.measured_kwh OR OLD.estimated_kwh <> NEW.estimated_kwh
          OR OLD.supply_days <> NEW.supply_days)
    EXECUTE FUNCTION billing.refuse_lines_changed_in_place();

-- The rest is arithmetic on the row itself: plain CHECK constraints.
ALTER TABLE billing.bills
    ADD CONSTRAINT bills_use_current_pricing_rules
        CHECK (pricing_rules >= 2 AND tax_rate IS NOT NULL
               AND coalesce(jsonb_typeof(energy_lines) = 'array' AND jsonb_typeof(standing_lines) = 'array', false))
        NOT VALID,
    ADD CONSTRAINT tax_is_one_rounding
        CHECK (tax = round((energy_charge + standing_charge) * tax_rate, 2)) NOT VALID,
    ADD CONSTRAINT total_adds_up
        CHECK (total_due = energy_charge + standing_charge + tax + adjustments_carried) NOT VALID,
    ADD CONSTRAINT estimated_when_any_kwh_is
        CHECK (is_estimated = (estimated_kwh > 0)) NOT VALID;
