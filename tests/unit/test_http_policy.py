"""The Retry-After forms and the wait of the shared HTTP policy (connectors/http.py); the
connector tests check the same against the local servers."""

from __future__ import annotations

import time
from email.utils import formatdate

import httpx
import pytest

from connectors.http import retry_after_seconds


def answer(retry_after: str) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": retry_after})


def test_delta_seconds():
    assert retry_after_seconds(answer("7")) == 7.0
    assert retry_after_seconds(answer("0")) == 0.0
    assert retry_after_seconds(httpx.Response(503)) is None


def test_http_date_forms():
    ahead = int(time.time()) + 30
    assert retry_after_seconds(answer(formatdate(ahead, usegmt=True))) == pytest.approx(30, abs=1)
    # the obsolete "-0000" zone is UTC too
    assert retry_after_seconds(answer(formatdate(ahead))) == pytest.approx(30, abs=1)
    assert retry_after_seconds(answer("Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0  # in the past


def test_neither_form_falls_back_to_backoff():
    assert retry_after_seconds(answer("soon")) is None
