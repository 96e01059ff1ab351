"""Billing jobs: recompute a month's bills, and issue a month."""

import dagster as dg

bills_job = dg.define_asset_job(
    "bills_job",
    selection=dg.AssetSelection.assets("bills"),
    description="Recompute one month's bills: drafts if the month is open, adjustment rows if it is issued.",
    executor_def=dg.in_process_executor,
)

issue_bills_job = dg.define_asset_job(
    "issue_bills_job",
    selection=dg.AssetSelection.assets("bills", "issued_bills", "bill_lines", "bill_adjustments"),
    description="Recompute, then issue one month's bills: seal them, carry open adjustments, export to the lake.",
    executor_def=dg.in_process_executor,
)
