"""Billing jobs: recompute a month's bills, and issue a month."""

import dagster as dg

from meter_assets.jobs import pod, retries

bills_job = dg.define_asset_job(
    "bills_job",
    selection=dg.AssetSelection.assets("bills"),
    description="Recompute one month's bills: drafts if the month is open, adjustment rows if it is issued.",
    executor_def=dg.in_process_executor,
    # safe: drafts are replaced in one transaction, and an adjustment is recorded once per changed bill
    tags={**retries(2), **pod("2", "4Gi", "6Gi")},
)

issue_bills_job = dg.define_asset_job(
    "issue_bills_job",
    selection=dg.AssetSelection.assets("bills", "issued_bills", "bill_lines", "bill_adjustments"),
    description="Recompute, then issue one month's bills: seal them, carry open adjustments, export to the lake.",
    executor_def=dg.in_process_executor,
    # safe: issuing is one transaction under the month's lock, and a month issued already is left as
    # issued (bills are written once); the exports replace the month's partition whole
    tags={**retries(2), **pod("2", "4Gi", "6Gi")},
)
