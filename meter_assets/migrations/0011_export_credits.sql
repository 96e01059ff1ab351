-- Export credits: a home with solar panels is credited for what it sends to the grid. A
-- bill's export lines (`export_lines`, each marked `"direction": "export"`) are priced like
-- energy lines, a band at a unit rate or a day-ahead rule, and each one's amount is the
-- negative of its value rounded once (a credit). Their sum is `export_credit`, their kWh
-- `export_kwh`; `daily_export_wh` is the export per day, as `daily_wh` is the use, so that a
-- late export file names the days that moved a bill (empty for a customer with no export).
-- Tax stays on energy and standing charges only: an export credit is not taxed. The total due
-- takes the credit off, and may be negative.
ALTER TABLE billing.bills
    ADD COLUMN export_lines jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN export_kwh numeric(14, 3) NOT NULL DEFAULT 0,
    ADD COLUMN export_credit numeric(12, 2) NOT NULL DEFAULT 0,
    ADD COLUMN daily_export_wh bigint[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT export_lines_are_a_list CHECK (jsonb_typeof(export_lines) = 'array') NOT VALID,
    DROP CONSTRAINT total_adds_up,
    ADD CONSTRAINT total_adds_up
        CHECK (total_due = energy_charge + standing_charge + tax + export_credit + adjustments_carried) NOT VALID;

ALTER TABLE billing.bill_adjustments ADD COLUMN daily_export_wh bigint[] NOT NULL DEFAULT '{}';

-- Written once, like the energy lines.
DROP TRIGGER bill_lines_are_written_once ON billing.bills;
CREATE TRIGGER bill_lines_are_written_once
    BEFORE UPDATE ON billing.bills
    FOR EACH ROW
    WHEN (OLD.energy_lines IS DISTINCT FROM NEW.energy_lines
          OR OLD.standing_lines IS DISTINCT FROM NEW.standing_lines
          OR OLD.export_lines IS DISTINCT FROM NEW.export_lines
          OR OLD.energy_charge <> NEW.energy_charge OR OLD.standing_charge <> NEW.standing_charge
          OR OLD.export_credit <> NEW.export_credit OR OLD.export_kwh <> NEW.export_kwh
          OR OLD.measured_kwh <> NEW.measured_kwh OR OLD.estimated_kwh <> NEW.estimated_kwh
          OR OLD.derived_kwh <> NEW.derived_kwh OR OLD.supply_days <> NEW.supply_days)
    EXECUTE FUNCTION billing.refuse_lines_changed_in_place();

-- The check on written bills learns export lines (the function whole, as 0009 left it, plus them).
CREATE OR REPLACE FUNCTION billing.refuse_lines_that_do_not_add_up() RETURNS trigger LANGUAGE plpgsql AS $$
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
                              = CASE WHEN line ? 'price_rule'
                                     THEN round((line -> 'cost')::numeric, 2)
                                     ELSE round((line -> 'kwh')::numeric * (line -> 'unit_rate')::numeric, 2)
                                END), true)                                                     AS rounded,
            count(*) = count(DISTINCT (line ->> 'band', (line -> 'unit_rate')::numeric,
                                       coalesce(line ->> 'price_rule', '')))                    AS one_per_price,
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
        SELECT
            coalesce(bool_and((line -> 'kwh')::numeric
                              = (line -> 'measured_kwh')::numeric + (line -> 'estimated_kwh')::numeric
                              AND (line -> 'measured_kwh')::numeric >= 0
                              AND (line -> 'estimated_kwh')::numeric >= 0
                              AND coalesce(line ->> 'direction' = 'export', false)), true)      AS split,
            coalesce(bool_and((line -> 'amount')::numeric
                              = -CASE WHEN line ? 'price_rule'
                                      THEN round((line -> 'cost')::numeric, 2)
                                      ELSE round((line -> 'kwh')::numeric * (line -> 'unit_rate')::numeric, 2)
                                 END), true)                                                    AS rounded,
            count(*) = count(DISTINCT (line ->> 'band', (line -> 'unit_rate')::numeric,
                                       coalesce(line ->> 'price_rule', '')))                    AS one_per_price,
            coalesce(sum((line -> 'amount')::numeric), 0)                                        AS amount,
            coalesce(sum((line -> 'kwh')::numeric), 0)                                           AS kwh
        FROM jsonb_array_elements(bills.export_lines) AS line
    ) AS export
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN NOT energy.split
                THEN 'an energy line''s kWh is not its measured plus its estimated kWh'
            WHEN NOT energy.rounded
                THEN 'an energy line''s amount is not round(kWh x unit rate, 2), or a day-ahead line''s round(cost, 2)'
            WHEN NOT energy.one_per_price
                THEN 'two energy lines have the same band and price'
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
            WHEN NOT export.split
                THEN 'an export line''s kWh is not its measured plus its estimated kWh, or it is not marked export'
            WHEN NOT export.rounded
                THEN 'an export line''s amount is not -round(kWh x unit rate, 2), or a day-ahead line''s -round(cost, 2)'
            WHEN NOT export.one_per_price
                THEN 'two export lines have the same band and price'
            WHEN export.amount <> bills.export_credit OR export.kwh <> bills.export_kwh
                THEN format('the export lines add up to %s for %s kWh, not to the export credit %s for %s kWh',
                            export.amount, export.kwh, bills.export_credit, bills.export_kwh)
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
