"""Schemathesis against the app's own OpenAPI: no 5xx, responses match their documented schemas,
every status returned is documented. Mutating operations are authenticated."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btc_predictor.api.app import create_app
from btc_predictor.config import Settings
from tests.api.conftest import AUTH
from tests.conftest import NOW

# Hypothesis would otherwise probe random bodies far beyond what the API is about.
EXAMPLES = 20
# Refusals the JSON Schema cannot state are 422 by design (a `start` that is not a past day,
# a horizon beyond BTCP_MAX_HORIZON), and FastAPI is lenient on some invalid input: both
# acceptance checks are off; every other check (no 5xx, responses as documented) runs.
EXCLUDED = [
    schemathesis.checks.negative_data_rejection,
    schemathesis.checks.positive_data_acceptance,
]
# POST /train waits for a worker, which this in-process test does not run.
SKIP = {("POST", "/train")}


def operations(installed: Settings) -> list[schemathesis.schemas.APIOperation]:
    app = create_app(installed, clock=lambda: NOW)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [
        r.ok()
        for r in schema.get_all_operations()
        if (r.ok().method.upper(), r.ok().path) not in SKIP
    ]


def test_every_operation_honours_its_schema(installed: Settings) -> None:
    ops = operations(installed)
    assert len(ops) >= 20
    failures = []
    for op in ops:

        @given(case=op.as_strategy(), data=st.data())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case, data: st.DataObject) -> None:
            case.call_and_validate(headers=AUTH, excluded_checks=EXCLUDED)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, report together
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:600]}")
    assert failures == [], "\n\n".join(failures)


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_docs_are_served(client, path: str) -> None:
    assert client.get(path).status_code == 200


def test_stateful_sequences_keep_the_contract(installed: Settings) -> None:
    # Sequences of calls (jobs created, then read, cancelled, …), bounded in time: the same
    # checks as above on every response of every step.
    app = create_app(installed, clock=lambda: NOW)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    machine = schema.exclude(method="POST", path="/train").as_state_machine()

    class Calls(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": AUTH}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, excluded_checks=EXCLUDED)

    Calls.run(
        settings=settings(
            max_examples=8,
            stateful_step_count=6,
            derandomize=True,  # the same sequences every run: CI never flakes on a new one
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
