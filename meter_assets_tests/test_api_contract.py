"""The usage API against its own OpenAPI contract, fuzzed by schemathesis on the real server
and PostgreSQL: valid and invalid requests, with and without a valid token; never a 5xx, and
every answer as the contract says."""

import json
import urllib.request

import schemathesis
from hypothesis import HealthCheck, settings

from meter_assets.config import settings as meter_settings
from meter_assets.serving.auth import mint
from meter_assets.serving.openapi import contract

schema = schemathesis.openapi.from_dict(contract(meter_settings().serving_window_days))


def test_the_served_contract_is_the_one_fuzzed(api):
    with urllib.request.urlopen(f"{api}/openapi.json", timeout=10) as response:
        assert json.loads(response.read()) == contract(meter_settings().serving_window_days)


@schema.auth()
class CustomerToken:
    """Customer 2's token (40 days, some estimated); the fuzzer leaves it off when it tries requests
    without valid credentials."""

    def get(self, case, context):
        return mint(2)

    def set(self, case, token, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_contract(case, api):
    case.call_and_validate(base_url=api)
