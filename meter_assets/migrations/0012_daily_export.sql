-- A home with solar panels sees each day what it sent to the grid (`export_kwh`) and what that
-- earned (`export_credit`: the day's export at the export tariff's rates, rounded once to the
-- penny, negative like the bill's export lines, untaxed); both null for a home with no export
-- register. The primary key carries them with the other served columns, so the page's read of
-- a customer's days stays one index-only range read.
ALTER TABLE serving.daily_usage
    ADD COLUMN export_kwh numeric(12, 3),
    ADD COLUMN export_credit numeric(10, 2);
ALTER TABLE serving.daily_usage DROP CONSTRAINT daily_usage_pkey;
ALTER TABLE serving.daily_usage
    ADD PRIMARY KEY (customer_id, local_date)
    INCLUDE (kwh, estimated_kwh, missing_intervals, cost, average_rate, export_kwh, export_credit);
