"""The billing ledger in PostgreSQL: drafts, sealed bills, and the adjustments that correct them.

Every write for a month happens in one transaction under that month's advisory lock, so
two runs of the same month (a late file's rerun and the issuing job) never interleave.
Set-based: a month's bills are COPYed into a temporary table, one range of customers after
another, and merged with a handful of statements, whatever the number of customers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg import sql

from meter_assets.billing.pricing import PRICING_RULES, PRICING_RULES_CHANGES, Bill
from meter_assets.market_calendar import month_bounds

# any constant: the month's lock key is this plus the month's number since year 0
MONTH_LOCK_BASE = 7_300_000_000

COLUMNS = (
    "bill_id",
    "customer_id",
    "period_start",
    "period_end",
    "measured_kwh",
    "estimated_kwh",
    "energy_lines",
    "energy_charge",
    "supply_days",
    "standing_lines",
    "standing_charge",
    "tax_rate",
    "tax",
    "total_due",
    "is_estimated",
    "currency",
    "inputs_fingerprint",
    "daily_wh",
    "pricing_rules",
    "reads_version",
    "derived_kwh",
    "export_lines",
    "export_kwh",
    "export_credit",
    "daily_export_wh",
)

INCOMING_SQL = """
CREATE TEMP TABLE incoming (LIKE billing.bills INCLUDING DEFAULTS) ON COMMIT DROP
"""

# A draft is written when new or when its inputs changed: a changed draft is replaced
# (deleted, then inserted like a new one), because a bill's lines are written once and the
# database checks them as they are inserted. An issued bill is never touched (it is not a
# draft, and its conflict on insert is a no-op).
REPLACE_CHANGED_DRAFTS_SQL = """
DELETE FROM billing.bills AS bills
USING incoming
WHERE bills.bill_id = incoming.bill_id
  AND bills.status = 'draft'
  AND bills.inputs_fingerprint <> incoming.inputs_fingerprint
"""

INSERT_DRAFTS_SQL = sql.SQL("""
INSERT INTO billing.bills ({columns})
SELECT {columns} FROM incoming
ON CONFLICT (bill_id) DO NOTHING
""").format(columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
COPY_INCOMING_SQL = sql.SQL("COPY incoming ({columns}) FROM STDIN").format(
    columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
)

# A draft whose customer is no longer supplied in the month (a corrected move date).
REMOVE_STALE_DRAFTS_SQL = """
DELETE FROM billing.bills AS bills
WHERE bills.period_start = %(period_start)s
  AND bills.status = 'draft'
  AND NOT EXISTS (SELECT 1 FROM incoming WHERE incoming.bill_id = bills.bill_id)
"""

# For each issued bill of the month: what has been accounted so far (the bill plus every
# adjustment to it) against what the data says now. A difference in money or kWh becomes
# one adjustment row; the date partitions named are the days whose kWh moved, and a bill
# accounted under older pricing rules than today's says so in the reason.
ADJUSTMENTS_SQL = """
WITH corrections AS (
    SELECT bill_id,
           sum(delta_amount) AS delta_amount,
           sum(delta_kwh)    AS delta_kwh,
           max(sequence)     AS last_sequence
    FROM billing.bill_adjustments
    GROUP BY bill_id
),
accounted AS (
    SELECT
        bills.bill_id,
        bills.customer_id,
        bills.period_start,
        bills.period_end,
        bills.energy_charge + bills.standing_charge + bills.tax + bills.export_credit
            + coalesce(corrections.delta_amount, 0)                                                  AS charges,
        bills.measured_kwh + bills.estimated_kwh + coalesce(corrections.delta_kwh, 0)                 AS kwh,
        coalesce(latest.daily_wh, bills.daily_wh)                                                    AS daily_wh,
        CASE WHEN latest.bill_id IS NULL THEN bills.daily_export_wh ELSE latest.daily_export_wh END  AS daily_export_wh,
        coalesce(latest.pricing_rules, bills.pricing_rules)                                          AS pricing_rules,
        coalesce(corrections.last_sequence, 0)                                                         AS last_sequence
    FROM billing.bills AS bills
    LEFT JOIN corrections USING (bill_id)
    LEFT JOIN billing.bill_adjustments AS latest
      ON latest.bill_id = bills.bill_id AND latest.sequence = corrections.last_sequence
    WHERE bills.period_start = %(period_start)s
      AND bills.status = 'issued'
),
recomputed AS (
    SELECT
        accounted.*,
        incoming.bill_id IS NULL                                                        AS no_longer_supplied,
        coalesce(incoming.energy_charge + incoming.standing_charge + incoming.tax + incoming.export_credit, 0)
                                                                                        AS new_charges,
        coalesce(incoming.measured_kwh + incoming.estimated_kwh, 0)                    AS new_kwh,
        coalesce(incoming.daily_wh,
                 array_fill(0::bigint, ARRAY[accounted.period_end - accounted.period_start])) AS new_daily_wh,
        coalesce(incoming.daily_export_wh, '{}')                                      AS new_daily_export_wh,
        coalesce(incoming.inputs_fingerprint, 'not supplied')                          AS new_fingerprint,
        coalesce(incoming.pricing_rules, %(pricing_rules)s)                            AS new_pricing_rules,
        %(reads_version)s::bigint                                                       AS reads_version
    FROM accounted
    LEFT JOIN incoming USING (bill_id)
),
differing AS (
    SELECT
        recomputed.*,
        new_charges - charges AS delta_amount,
        -- the days whose use or export moved (a customer without export has none either side)
        ARRAY(
            SELECT to_char(period_start + (day - 1), 'YYYY-MM-DD')
            FROM generate_subscripts(new_daily_wh, 1) AS day
            WHERE new_daily_wh[day] IS DISTINCT FROM daily_wh[day]
               OR (cardinality(new_daily_export_wh) + cardinality(daily_export_wh) > 0
                   AND coalesce(new_daily_export_wh[day], 0) <> coalesce(daily_export_wh[day], 0))
        ) AS changed_partitions,
        pricing_rules < new_pricing_rules AS rules_revised,
        -- undercharges are recovered only within the back-billing limit; credits always
        new_charges - charges < 0
            OR period_end > %(found_on)s::date - make_interval(months => %(backbilling_months)s) AS recoverable
    FROM recomputed
    WHERE new_charges <> charges OR new_kwh <> kwh
       OR coalesce(new_daily_export_wh, '{}') <> coalesce(daily_export_wh, '{}')
)
INSERT INTO billing.bill_adjustments (bill_id, customer_id, sequence, delta_kwh, delta_amount, charged_amount,
                                      reason, changed_partitions, inputs_fingerprint, daily_wh, found_at,
                                      pricing_rules, reads_version, daily_export_wh)
SELECT
    bill_id,
    customer_id,
    last_sequence + 1,
    new_kwh - kwh,
    delta_amount,
    CASE WHEN recoverable THEN delta_amount ELSE 0 END,
    concat_ws('; ',
        CASE
            WHEN no_longer_supplied THEN 'no longer supplied in the period'
            WHEN cardinality(changed_partitions) > 0 THEN 'late or corrected readings'
            WHEN NOT rules_revised THEN 'supply period, tariff or day-ahead prices changed'
        END,
        CASE WHEN rules_revised THEN %(rules_change)s END,
        CASE WHEN NOT recoverable
             THEN format('undercharge older than the %%s-month back-billing limit: not recovered',
                         %(backbilling_months)s)
        END),
    changed_partitions,
    new_fingerprint,
    new_daily_wh,
    %(found_at)s,
    new_pricing_rules,
    reads_version,
    new_daily_export_wh
FROM differing
RETURNING delta_amount, charged_amount
"""

# Open adjustments of earlier months ride on the customer's bill being issued now.
CARRY_ADJUSTMENTS_SQL = """
WITH carried AS (
    UPDATE billing.bill_adjustments AS adjustments
    SET carried_on_bill_id = carrier.bill_id
    FROM billing.bills AS carrier, billing.bills AS corrected
    WHERE carrier.period_start = %(period_start)s
      AND carrier.status = 'draft'
      AND carrier.customer_id = adjustments.customer_id
      AND adjustments.carried_on_bill_id IS NULL
      AND corrected.bill_id = adjustments.bill_id
      AND corrected.period_start < %(period_start)s
    RETURNING adjustments.carried_on_bill_id, adjustments.charged_amount
),
per_bill AS (
    SELECT carried_on_bill_id AS bill_id, sum(charged_amount) AS amount, count(*) AS adjustments
    FROM carried
    GROUP BY carried_on_bill_id
)
UPDATE billing.bills AS bills
SET adjustments_carried = per_bill.amount,
    total_due = bills.energy_charge + bills.standing_charge + bills.tax + bills.export_credit + per_bill.amount
FROM per_bill
WHERE bills.bill_id = per_bill.bill_id
RETURNING per_bill.adjustments
"""

# A bill issued with a negative total (export credits larger than the month's charges) leaves
# the customer in credit: the credit rides forward on their next bill, like an adjustment. Its
# row corrects nothing (`delta_amount` 0, the use per day as the bill accounts it) and carries
# the total (`charged_amount`); a customer with no next bill keeps it open, never lost.
CREDIT_CARRIED_REASON = "credit carried forward: the bill's total was negative"
CARRY_CREDIT_FORWARD_SQL = """
INSERT INTO billing.bill_adjustments (bill_id, customer_id, sequence, delta_kwh, delta_amount, charged_amount,
                                      reason, changed_partitions, inputs_fingerprint, daily_wh, daily_export_wh,
                                      found_at, pricing_rules, reads_version)
SELECT bill_id, customer_id, 1, 0, 0, total_due, %(reason)s, '{}', 'credit carried forward', daily_wh,
       daily_export_wh, %(issued_at)s, pricing_rules, reads_version
FROM billing.bills
WHERE period_start = %(period_start)s AND status = 'issued' AND issued_at = %(issued_at)s AND total_due < 0
RETURNING charged_amount
"""

ISSUE_SQL = """
UPDATE billing.bills
SET status = 'issued', issued_at = %(issued_at)s
WHERE period_start = %(period_start)s AND status = 'draft'
"""


# How the month's recomputed bills stand against the ledger before anything is written.
COMPARE_SQL = """
SELECT
    count(*) FILTER (WHERE bills.status = 'draft' AND bills.inputs_fingerprint = incoming.inputs_fingerprint),
    count(*) FILTER (WHERE bills.status = 'issued')
FROM incoming
LEFT JOIN billing.bills AS bills USING (bill_id)
"""


@dataclass
class MonthWrite:
    drafts_new: int = 0
    drafts_replaced: int = 0
    drafts_unchanged: int = 0
    drafts_removed: int = 0
    sealed_bills: int = 0
    adjustments_written: int = 0
    adjustments_amount: str = "0.00"
    adjustments_charged: str = "0.00"
    month_issued: bool = False


@dataclass
class MonthIssue:
    bills_issued: int = 0
    adjustments_carried: int = 0
    already_issued: int = 0
    credits_carried_forward: int = 0
    credit_carried_forward: str = "0.00"


def _copy_text(value: str) -> str:
    """A value in COPY's text format: backslash, tab and newline escaped."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def copy_line(bill: Bill, start: dt.date, end: dt.date, currency: str, reads_version: int | None) -> str:
    """One bill as a line of COPY text, each total computed once (200,000 bills a month)."""
    energy, standing, credit = bill.energy_charge, bill.standing_charge, bill.export_credit
    tax = bill.tax_on(energy + standing)
    fields = (
        bill.bill_id,
        str(bill.customer_id),
        start.isoformat(),
        end.isoformat(),
        str(bill.measured_kwh),
        str(bill.estimated_kwh),
        _copy_text(bill.energy_lines_json()),
        str(energy),
        str(bill.supply_days),
        _copy_text(bill.standing_lines_json()),
        str(standing),
        str(bill.tax_rate),
        str(tax),
        str(energy + standing + tax + credit),
        "t" if bill.is_estimated else "f",
        _copy_text(currency),
        bill.fingerprint,
        "{" + ",".join(map(str, bill.daily_wh)) + "}",
        str(bill.pricing_rules),
        "\\N" if reads_version is None else str(reads_version),
        str(bill.derived_kwh),
        _copy_text(bill.export_lines_json()),
        str(bill.export_kwh),
        str(credit),
        "{" + ",".join(map(str, bill.daily_export_wh or [])) + "}",
    )
    return "\t".join(fields) + "\n"


def lock_month(conn: psycopg.Connection, month: str) -> None:
    """Serialise every writer of one month until the transaction ends."""
    start, _ = month_bounds(month)
    conn.execute("SELECT pg_advisory_xact_lock(%(lock)s)", {"lock": MONTH_LOCK_BASE + start.year * 12 + start.month})


def is_issued(conn: psycopg.Connection, month: str) -> bool:
    start, _ = month_bounds(month)
    (issued,) = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM billing.bills WHERE period_start = %(period_start)s AND status = 'issued')",
        {"period_start": start},
    ).fetchone()
    return issued


# What is about to be merged, summed by PostgreSQL from the staged rows themselves.
STAGED_SQL = """
SELECT count(*),
       coalesce(sum(measured_kwh + estimated_kwh), 0),
       count(*) FILTER (WHERE is_estimated),
       coalesce(sum(energy_charge), 0),
       coalesce(sum(energy_charge + standing_charge + tax + export_credit), 0),
       coalesce(sum(export_kwh), 0),
       coalesce(sum(export_credit), 0)
FROM incoming
"""


@dataclass
class StagedMonth:
    """A month's recomputed bills staged for the merge, and what they add up to."""

    customers: int
    billed_kwh: Decimal
    estimated_bills: int
    energy_charge: Decimal
    charges_with_tax: Decimal  # less export credits
    export_kwh: Decimal
    export_credit: Decimal


def stage_month(
    conn: psycopg.Connection,
    month: str,
    batches: Iterable[Iterable[Bill]],
    currency: str,
    reads_version: int | None = None,
) -> StagedMonth:
    """COPY the month's bills, batch after batch, into a temporary table, inside the caller's
    transaction; a batch can be dropped as soon as it is sent."""
    start, end = month_bounds(month)
    conn.execute(INCOMING_SQL)
    with conn.cursor().copy(COPY_INCOMING_SQL) as copy:
        for batch in batches:
            copy.write("".join(copy_line(bill, start, end, currency, reads_version) for bill in batch).encode())
    return StagedMonth(*conn.execute(STAGED_SQL).fetchone())


def merge_month(
    conn: psycopg.Connection,
    month: str,
    backbilling_months: int,
    found_at: dt.datetime,
    reads_version: int | None = None,
) -> MonthWrite:
    """Merge the staged bills into the ledger (see `record_month`), in the staging transaction."""
    start, _ = month_bounds(month)
    unchanged, sealed = conn.execute(COMPARE_SQL).fetchone()
    replaced = conn.execute(REPLACE_CHANGED_DRAFTS_SQL).rowcount
    written = conn.execute(INSERT_DRAFTS_SQL).rowcount
    removed = conn.execute(REMOVE_STALE_DRAFTS_SQL, {"period_start": start}).rowcount
    adjustments = conn.execute(
        ADJUSTMENTS_SQL,
        {
            "period_start": start,
            "found_on": found_at.date(),
            "found_at": found_at,
            "backbilling_months": backbilling_months,
            "pricing_rules": PRICING_RULES,
            "rules_change": PRICING_RULES_CHANGES[PRICING_RULES],
            "reads_version": reads_version,
        },
    ).fetchall()
    return MonthWrite(
        drafts_new=written - replaced,
        drafts_replaced=replaced,
        drafts_unchanged=unchanged,
        sealed_bills=sealed,
        drafts_removed=removed,
        adjustments_written=len(adjustments),
        adjustments_amount=str(sum((a for a, _ in adjustments), Decimal("0.00"))),
        adjustments_charged=str(sum((c for _, c in adjustments), Decimal("0.00"))),
        month_issued=is_issued(conn, month),
    )


def record_month(
    conn: psycopg.Connection,
    month: str,
    bills: list[Bill],
    currency: str,
    backbilling_months: int,
    found_at: dt.datetime,
    reads_version: int | None = None,
) -> MonthWrite:
    """Merge a month's freshly computed bills into the ledger.

    Drafts are written or replaced where their inputs changed; issued bills stay sealed and
    each one that would now differ gets one adjustment row. The same bills twice write nothing.
    `reads_version` is the version of `reads_15min` the bills were computed from.
    """
    with conn.transaction():
        lock_month(conn, month)
        stage_month(conn, month, [bills], currency, reads_version)
        return merge_month(conn, month, backbilling_months, found_at, reads_version)


def issue_month(conn: psycopg.Connection, month: str, issued_at: dt.datetime) -> MonthIssue:
    """Seal every draft of the month, each carrying its customer's open adjustments; a bill whose
    total is negative carries that credit forward to the customer's next bill."""
    start, _ = month_bounds(month)
    params = {"period_start": start, "issued_at": issued_at}
    with conn.transaction():
        lock_month(conn, month)
        carried = conn.execute(CARRY_ADJUSTMENTS_SQL, params).fetchall()
        issued = conn.execute(ISSUE_SQL, params).rowcount
        credits = conn.execute(CARRY_CREDIT_FORWARD_SQL, {**params, "reason": CREDIT_CARRIED_REASON}).fetchall()
        (before,) = conn.execute(
            "SELECT count(*) FROM billing.bills "
            "WHERE period_start = %(period_start)s AND status = 'issued' AND issued_at <> %(issued_at)s",
            params,
        ).fetchone()
    return MonthIssue(
        bills_issued=issued,
        adjustments_carried=sum(n for (n,) in carried),
        already_issued=before,
        credits_carried_forward=len(credits),
        credit_carried_forward=str(sum((c for (c,) in credits), Decimal("0.00"))),
    )
