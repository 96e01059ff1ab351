-- What the customer app reads, and nothing else: each customer's use per local day for
-- the serving window, and a month-to-date bill estimate. The primary key makes "this
-- customer's last N days" one index range read, and carries the columns the app reads
-- (INCLUDE) so that read touches one or two index pages, not one heap page per day loaded.
CREATE SCHEMA IF NOT EXISTS serving;

CREATE TABLE serving.daily_usage (
    customer_id       integer NOT NULL,
    local_date        date NOT NULL,
    kwh               numeric(12, 3) NOT NULL,
    estimated_kwh     numeric(12, 3) NOT NULL,
    missing_intervals smallint NOT NULL,           -- quarter hours with no reading at all
    cost              numeric(10, 2) NOT NULL,     -- energy at the customer's tariff plus the
                                                   -- day's standing charge, with tax, rounded once
    PRIMARY KEY (customer_id, local_date) INCLUDE (kwh, estimated_kwh, missing_intervals, cost)
);

-- pruning and the month-to-date estimate read by date
CREATE INDEX daily_usage_by_date ON serving.daily_usage (local_date);

CREATE TABLE serving.bill_estimates (
    customer_id   integer PRIMARY KEY,
    period_start  date NOT NULL,                   -- the month being estimated
    through_date  date NOT NULL,                   -- the last day of data in it
    days          integer NOT NULL,
    kwh           numeric(14, 3) NOT NULL,
    estimated_kwh numeric(14, 3) NOT NULL,
    cost          numeric(12, 2) NOT NULL,         -- the sum of the days' costs so far
    currency      text NOT NULL
);

-- One row per local day loaded: when, and how much (the page's "last updated").
CREATE TABLE serving.refreshes (
    local_date   date PRIMARY KEY,
    refreshed_at timestamptz NOT NULL,
    customers    integer NOT NULL
);
