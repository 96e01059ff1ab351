-- Pricing rules 2: a bill's breakdown is its lines, and the database checks they add up.
--
-- Each bill now carries its energy lines (one per time-of-use band and unit rate, with
-- measured and estimated kWh, rate and amount) and its standing-charge lines (one per daily
-- rate, with days and amount), the tax rate it was taxed at, and the version of the pricing
-- rules it was computed under. The constraints below hold for every bill written from now
-- on: each line rounded once, half up, from its own kWh and rate; the lines sum to the
-- charges; tax is one rounding of the charges; the total follows.
--
-- Bills issued before this migration are sealed and stay as issued (rules 1, the old
-- `energy_by_band` map); the constraints are NOT VALID so those rows are not re-checked,
-- while any row inserted or updated must satisfy them. A recomputation under rules 2 that
-- moves an issued bill's money corrects it with an adjustment row naming the rules change.
ALTER TABLE billing.bills
    ADD COLUMN pricing_rules  smallint NOT NULL DEFAULT 1,
    ADD COLUMN tax_rate       numeric(6, 4),
    ADD COLUMN energy_lines   jsonb,              -- [{band, unit_rate, measured_kwh, estimated_kwh, kwh, amount}]
    ADD COLUMN standing_lines jsonb,              -- [{daily_rate, days, amount}]
    ALTER COLUMN energy_by_band DROP NOT NULL;    -- rules 1 only

ALTER TABLE billing.bills ALTER COLUMN pricing_rules DROP DEFAULT;

ALTER TABLE billing.bill_adjustments ADD COLUMN pricing_rules smallint NOT NULL DEFAULT 1;
ALTER TABLE billing.bill_adjustments ALTER COLUMN pricing_rules DROP DEFAULT;

CREATE FUNCTION billing.line_total(lines jsonb, field text) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT coalesce(sum((line ->> field)::numeric), 0) FROM jsonb_array_elements(lines) AS line $$;

CREATE FUNCTION billing.energy_lines_are_sound(lines jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT coalesce(
           bool_and((line ->> 'kwh')::numeric = (line ->> 'measured_kwh')::numeric + (line ->> 'estimated_kwh')::numeric
                AND (line ->> 'measured_kwh')::numeric >= 0
                AND (line ->> 'estimated_kwh')::numeric >= 0
                AND (line ->> 'amount')::numeric = round((line ->> 'kwh')::numeric * (line ->> 'unit_rate')::numeric, 2))
           AND count(*) = count(DISTINCT (line ->> 'band', (line ->> 'unit_rate')::numeric)),
           true)
FROM jsonb_array_elements(lines) AS line
$$;

CREATE FUNCTION billing.standing_lines_are_sound(lines jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT coalesce(
           bool_and((line ->> 'days')::integer > 0
                AND (line ->> 'amount')::numeric = round((line ->> 'daily_rate')::numeric * (line ->> 'days')::integer, 2))
           AND count(*) = count(DISTINCT (line ->> 'daily_rate')::numeric),
           true)
FROM jsonb_array_elements(lines) AS line
$$;

ALTER TABLE billing.bills
    ADD CONSTRAINT bills_use_current_pricing_rules
        CHECK (pricing_rules >= 2 AND tax_rate IS NOT NULL
               AND coalesce(jsonb_typeof(energy_lines) = 'array' AND jsonb_typeof(standing_lines) = 'array', false))
        NOT VALID,
    ADD CONSTRAINT energy_lines_one_per_band_and_rate_rounded_once
        CHECK (billing.energy_lines_are_sound(energy_lines)) NOT VALID,
    ADD CONSTRAINT energy_lines_add_up
        CHECK (billing.line_total(energy_lines, 'amount') = energy_charge
               AND billing.line_total(energy_lines, 'measured_kwh') = measured_kwh
               AND billing.line_total(energy_lines, 'estimated_kwh') = estimated_kwh) NOT VALID,
    ADD CONSTRAINT standing_lines_one_per_rate_rounded_once
        CHECK (billing.standing_lines_are_sound(standing_lines)) NOT VALID,
    ADD CONSTRAINT standing_lines_add_up
        CHECK (billing.line_total(standing_lines, 'amount') = standing_charge
               AND billing.line_total(standing_lines, 'days') = supply_days) NOT VALID,
    ADD CONSTRAINT tax_is_one_rounding
        CHECK (tax = round((energy_charge + standing_charge) * tax_rate, 2)) NOT VALID,
    ADD CONSTRAINT total_adds_up
        CHECK (total_due = energy_charge + standing_charge + tax + adjustments_carried) NOT VALID,
    ADD CONSTRAINT estimated_when_any_kwh_is
        CHECK (is_estimated = (estimated_kwh > 0)) NOT VALID;
