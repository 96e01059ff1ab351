-- The month-to-date estimate becomes a view over the days: it cannot drift from them, a
-- refresh no longer rewrites 200,000 estimate rows, and one customer's estimate is an
-- index range read of at most 31 entries of the primary key (the customer filter is
-- pushed below the GROUP BY). The month is the newest day loaded's; the refresh keeps
-- every day of it even when the window is shorter than a month.
DROP TABLE serving.bill_estimates;

CREATE VIEW serving.bill_estimates AS
SELECT
    usage.customer_id,
    period.start             AS period_start,
    max(usage.local_date)    AS through_date,
    count(*)::integer        AS days,
    sum(usage.kwh)           AS kwh,
    sum(usage.estimated_kwh) AS estimated_kwh,
    sum(usage.cost)          AS cost
FROM (SELECT date_trunc('month', max(local_date)::timestamp)::date AS start FROM serving.refreshes) AS period
JOIN serving.daily_usage AS usage ON usage.local_date >= period.start
GROUP BY usage.customer_id, period.start;
