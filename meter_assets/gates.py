"""Write, audit, publish: the one way an asset makes new data visible.

A step writes its tables as unpublished builds, runs its checks on them, and only then
publishes: when a blocking check fails, the builds are discarded, the previous version
stays published, no materialization is recorded, and Dagster fails the step so nothing
downstream runs on it. Assets that use it are declared with `output_required=False` (or
skippable specs), since a withheld build yields only its check results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg

from meter_assets.storage import Build, Lake, Publication


@dataclass
class Gate:
    checks: list[dg.AssetCheckResult]
    failed: list[str]
    publications: list[Publication] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failed

    def results(self, metadata: Mapping[str, Mapping]) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """One MaterializeResult per asset in `metadata` (with its checks) if published, else the checks alone."""
        if not self.passed:
            yield from self.checks
            return
        single = len(metadata) == 1
        for asset, values in metadata.items():
            mine = [p for p in self.publications if p.table.asset == asset]
            published = {}
            for publication in mine:
                # an asset made of several tables names each one's figures after it
                prefix = "" if len(mine) == 1 else f"{publication.table.path.rsplit('/', 1)[-1]}_"
                published.update({f"{prefix}{k}": v for k, v in publication.metadata().items()})
            checks = [c for c in self.checks if single or _asset_of(c) == asset]
            yield dg.MaterializeResult(
                asset_key=None if single else asset, metadata={**values, **published}, check_results=checks
            )


def audit_and_publish(
    context: dg.AssetExecutionContext,
    lake: Lake,
    builds: Sequence[Build],
    checks: Sequence[dg.AssetCheckResult],
    publish: Callable[[], None] | None = None,
) -> Gate:
    """Publish `builds` (in order, together) if no blocking check failed; else discard them.

    `publish` is called after the tables are committed, for what is not a table (a page,
    a ledger): it runs only when the gate opens.
    """
    blocking = {
        (spec.asset_key.to_user_string(), spec.name) for spec in context.assets_def.check_specs if spec.blocking
    }
    default_asset = context.assets_def.key.to_user_string() if len(context.assets_def.keys) == 1 else None
    failed = [
        check.check_name
        for check in checks
        if not check.passed
        and check.severity == dg.AssetCheckSeverity.ERROR
        and ((_asset_of(check) or default_asset), check.check_name) in blocking
    ]
    gate = Gate(list(checks), failed)
    if failed:
        for build in builds:
            lake.discard(build)
        context.log.error(
            f"blocking checks failed: {', '.join(failed)}; nothing was published and the "
            "previous version stays in place"
        )
        return gate
    for finished in lake.finish_publishing():
        context.log.warning(
            f"{finished.table.path} {finished.partition or ''}: build {finished.build} of a step "
            f"that died mid-publication committed now, as version {finished.version}"
        )
    gate.publications = lake.publish_together(list(builds))
    if publish is not None:
        publish()
    return gate


def _asset_of(check: dg.AssetCheckResult) -> str | None:
    return check.asset_key.to_user_string() if check.asset_key else None
