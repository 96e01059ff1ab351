-- Day-ahead prices: an energy line may be priced per settlement period from the day-ahead
-- market (a dynamic tariff) rather than at one unit rate. Such a line names its rule
-- (`price_rule`) and carries the exact, unrounded sum of its quarter hours' kWh x rate
-- (`cost`); its amount is that cost rounded once to the penny, half up, and its `unit_rate` is
-- null. The check on written bills learns the difference; lines at a unit rate are checked as
-- before, and one band may carry a line per price (unit rate or rule).
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
