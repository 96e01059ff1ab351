-- A customer on a day-ahead (dynamic) tariff sees what they paid per kWh on each day: the
-- day's day-ahead energy cost over its kWh, before tax, to 4 places (null on other plans).
-- The primary key carries it with the other served columns, so the page's read of a
-- customer's days stays one index-only range read.
ALTER TABLE serving.daily_usage ADD COLUMN average_rate numeric(10, 4);
ALTER TABLE serving.daily_usage DROP CONSTRAINT daily_usage_pkey;
ALTER TABLE serving.daily_usage
    ADD PRIMARY KEY (customer_id, local_date) INCLUDE (kwh, estimated_kwh, missing_intervals, cost, average_rate);
