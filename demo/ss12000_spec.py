"""The SS 12000 v2.0 OpenAPI specification (demo/ss12000_spec/, SIS TK450's working repository
at commit 0608577, unchanged) as a validator for the local server's requests and responses.

`Spec.check_request` answers with the spec's own error for a request the spec does not allow
(an unknown parameter, a value of the wrong type or outside an enum, a missing required one);
`Spec.check_response` lists how a response body breaks its schema. The spec file itself has one
error (`required: true` inside DutyAssignment.duty) that openapi-spec-validator rejects, so the
document is not validated, only used.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import yaml

SPEC_DIR = Path(__file__).parent / "ss12000_spec"
HOST = "http://ss12000.invalid"  # the servers entry is replaced by this


class Spec:
    def __init__(self, root: Path = SPEC_DIR / "openapi.yaml", items_checked: int = 100):
        from jsonschema_path import SchemaPath
        from openapi_core import Config, OpenAPI

        raw = yaml.safe_load(root.read_text(encoding="utf-8"))
        raw["servers"] = [{"url": HOST}]
        self.schema = SchemaPath.from_dict(raw, base_uri=root.resolve().as_uri())
        self.api = OpenAPI(self.schema, config=Config(spec_validator_cls=None))
        self.items_checked = items_checked  # per page: a page's items come from one builder

    @cached_property
    def parameters(self) -> dict[str, set[str]]:
        """Query parameter names each GET path declares."""
        names: dict[str, set[str]] = {}
        for path, item in (self.schema / "paths").items():
            if "get" not in item:
                continue
            params = [*(item / "get").get("parameters", []), *item.get("parameters", [])]
            names[path] = {p["name"] for p in params if p["in"] == "query"}
        return names

    def _request(self, path: str, query: list[tuple[str, str]]):
        from openapi_core.testing import MockRequest
        from werkzeug.datastructures import ImmutableMultiDict

        return MockRequest(
            HOST,
            "get",
            path,
            args=ImmutableMultiDict(query),
            headers={"Authorization": "Bearer checked-by-the-server"},
        )

    def check_request(self, path: str, query: list[tuple[str, str]]) -> str | None:
        """None when the spec allows this GET, else why not (for a 400_invalid_filter)."""
        from openapi_core.validation.request.exceptions import RequestValidationError

        allowed = self.parameters.get(path)
        if allowed is None:
            return None  # a path with parameters ({id}) is matched by openapi-core itself
        unknown = sorted({k for k, _ in query} - allowed)
        if unknown:
            return f"Okänd parameter enligt specifikationen: {', '.join(unknown)}"
        if any(k == "pageToken" for k, _ in query):
            # the token carries the first request's filters, required ones too (startDate on
            # /aggregatedAttendance): only `limit` may go with it, which the pager checks
            return None
        try:
            self.api.validate_request(self._request(path, query))
        except RequestValidationError as exc:
            cause = exc.__cause__ or exc
            return f"{exc}: {cause}"[:300]
        return None

    def check_response(self, path: str, query: list[tuple[str, str]], body: dict) -> str | None:
        """None when the 200 body follows the spec (the envelope and the first items)."""
        from openapi_core.testing import MockResponse
        from openapi_core.validation.response.exceptions import ResponseValidationError

        sample = dict(body)
        if isinstance(body.get("data"), list):
            sample["data"] = body["data"][: self.items_checked]
        response = MockResponse(json.dumps(sample).encode(), 200)
        try:
            self.api.validate_response(self._request(path, query), response)
        except ResponseValidationError as exc:
            cause = exc.__cause__ or exc
            detail = getattr(cause, "schema_errors", None) or [cause]
            return f"{path}: {'; '.join(str(e)[:300] for e in detail[:3])}"
        return None
