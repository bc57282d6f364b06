"""Schemathesis against the live server's OpenAPI schema: no request the schema allows gets a
500. Bounded: a few examples per operation, no deadline (an ask fits a model).

Hypothesis drives each operation's strategy directly (schemathesis's pytest plugin does not load
under this pytest); half the examples of the study and family routes are aimed at a family and
a study that exist, so that fuzzing reaches past the 404s.
"""

from __future__ import annotations

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metaprior as mp
from metaprior.service import Client

EXAMPLES = 10


def test_no_request_the_schema_allows_gets_a_500(sqlite_server):
    with Client(sqlite_server.url, token=sqlite_server.token) as client:
        client.create_family("fuzz", mp.SearchSpace([mp.Float("a", 0.0, 1.0),
                                                     mp.Categorical("c", ["x", "y"])]))
        client.create_study("fuzz", name="fuzz", options={"num_restarts": 1, "raw_samples": 8})
    headers = {"Authorization": f"Bearer {sqlite_server.token}"}
    schema = schemathesis.openapi.from_url(f"{sqlite_server.url}/openapi.json", headers=headers)
    failures, operations, statuses = [], 0, Counter()
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(), aim=st.booleans())
        def check(case, aim):
            for name in ("family", "study"):
                if aim and case.path_parameters and name in case.path_parameters:
                    case.path_parameters[name] = "fuzz"
            response = case.call(base_url=sqlite_server.url, headers=headers)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, case.query, case.body,
                                 response.status_code, response.text[:300]))

        check()
    assert operations >= 15
    assert not failures, failures
    # the fuzzing reached the handlers: some requests succeeded, some were refused
    assert sum(v for k, v in statuses.items() if k < 300) > 10, statuses
    assert statuses[422] > 0 and statuses[404] > 0, statuses
    print(dict(statuses))
