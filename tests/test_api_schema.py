"""The whole OpenAPI schema, checked with schemathesis: auth on every admin
operation, and no 5xx for any generated request, valid or not.

Operations are read from the schema the app publishes, so an endpoint added
later is covered without editing this file.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from image_tagger.auth.service import create_token
from image_tagger.db import session_scope
from image_tagger.settings import reset_settings

EXAMPLES_PER_OPERATION = 15


def _token(role: str) -> str:
    with session_scope(write=True) as session:
        return create_token(session, role=role, name=f"schema-{role}")


@pytest.fixture
def running(data_dir):
    """A client of the running app (lifespan entered) and the app's schema."""
    from image_tagger.app import create_app

    app = create_app()
    with TestClient(app) as client:
        # Loaded from the app object, so requests go to this running app
        # (through ASGI) without starting its lifespan a second time.
        schema = schemathesis.openapi.from_dict(app.openapi())
        schema.app = app
        yield client, schema


@pytest.fixture
def app_schema(running):
    return running[1]


def _operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


def _concrete_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_the_schema_lists_every_admin_operation(app_schema):
    paths = {(op.method.upper(), op.path) for op in _operations(app_schema)}

    assert ("POST", "/api/v1/admin/upload") in paths
    assert ("GET", "/api/v1/admin/upload/jobs/{job_id}") in paths
    assert ("GET", "/api/v1/admin/images/{image_id}/file") in paths


def test_every_admin_operation_needs_credentials_and_the_admin_role(running):
    client, schema = running
    tagger = {"Authorization": f"Bearer {_token('tagger')}"}
    checked = 0
    for operation in _operations(schema):
        if not operation.path.startswith("/api/v1/admin"):
            continue
        method, url = operation.method.upper(), _concrete_path(operation.path)

        anonymous = client.request(method, url)
        forged = client.request(method, url, headers={"X-User-Role": "admin"})
        wrong_role = client.request(method, url, headers=tagger)

        assert anonymous.status_code == 401, (method, url, anonymous.text)
        assert forged.status_code == 401, (method, url)  # token mode ignores it
        assert wrong_role.status_code == 403, (method, url, wrong_role.text)
        checked += 1
    assert checked >= 6


def test_header_mode_needs_the_admin_role_on_every_admin_operation(
    running, monkeypatch
):
    client, schema = running
    monkeypatch.setenv("IMAGE_TAGGER_AUTH_MODE", "header")
    reset_settings()
    checked = 0
    for operation in _operations(schema):
        if not operation.path.startswith("/api/v1/admin"):
            continue
        method, url = operation.method.upper(), _concrete_path(operation.path)
        assert client.request(method, url).status_code == 401, (method, url)
        tagger = client.request(method, url, headers={"X-User-Role": "tagger"})
        assert tagger.status_code == 403, (method, url)
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_server_error(app_schema, mode):
    admin = {"Authorization": f"Bearer {_token('admin')}"}
    answered: dict[str, set[int]] = {}

    for operation in _operations(app_schema):
        _fuzz(operation, mode, admin, answered.setdefault(operation.label, set()))

    assert len(answered) == len(_operations(app_schema))
    # Negative requests exist only for operations that take some input.
    expected = {
        op.label
        for op in _operations(app_schema)
        if mode == GenerationMode.POSITIVE or _takes_input(op)
    }
    assert {label for label, codes in answered.items() if codes} == expected


def _takes_input(operation) -> bool:
    return bool(list(operation.iter_parameters()) or operation.body)


def _fuzz(operation, mode, admin: dict, answered: set[int]) -> None:
    """Call ``operation`` with generated requests, as admin and anonymously."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def call(case):
        for headers in (admin, {}):
            response = case.call(headers=headers)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} answered "
                f"{response.status_code}: {response.text[:300]}"
            )
            answered.add(response.status_code)

    try:
        call()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE and not _takes_input(operation)
