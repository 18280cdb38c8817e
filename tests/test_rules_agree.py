"""The client's rules (``amp_pandas._amplitude``) and the sandbox's own copy agree, rule by rule.

The sandbox keeps an independent copy of Amplitude's rules on purpose: it stands in for
Amplitude, so a mistake in the client's copy must not also be the sandbox's. This file is what
stops the two from drifting apart: every rule is compared as a value, and the rejected ids are
also compared by behaviour (the client marks the row invalid; the sandbox answers 400).
"""

from __future__ import annotations

import pandas as pd
import pytest

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import _amplitude as client
from amp_pandas.sandbox import _faults as sandbox_faults
from amp_pandas.sandbox import _rules as sandbox

#: Written out here, from Amplitude's documentation, as a third and independent reading.
DOCUMENTED_REJECTED_IDS = {
    "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", "",
    "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1",
}  # fmt: skip


def test_rejected_ids_agree() -> None:
    assert set(client.REJECTED_IDS) == set(sandbox.REJECTED_IDS) == DOCUMENTED_REJECTED_IDS


def test_id_lengths_agree() -> None:
    assert client.MIN_ID_LENGTH == sandbox.MIN_ID_LENGTH == 5
    assert client.MAX_ID_LENGTH == sandbox.MAX_ID_LENGTH == 1024


def test_fields_agree() -> None:
    assert client.FIELDS == sandbox.TOP_LEVEL_FIELDS


def test_operations_agree() -> None:
    # The sandbox knows every documented operation; the client sends all of them but $clearAll.
    client_ops = {*client.OPERATIONS.values(), client.UNSET}
    assert client_ops == set(sandbox.KNOWN_OPERATIONS) - {"$clearAll"}
    assert client.IDEMPOTENT_OPERATIONS | client.NON_IDEMPOTENT_OPERATIONS == client_ops
    assert client.NON_IDEMPOTENT_OPERATIONS == {"$add", "$append", "$prepend"}


def test_limits_agree() -> None:
    assert client.MAX_USER_PROPERTIES_DEPTH == sandbox.MAX_DEPTH == 40
    assert client.MAX_GROUP_TYPES == sandbox.MAX_GROUP_TYPES == 5
    assert client.MAX_GROUPS == sandbox.MAX_GROUPS == 10
    assert client.MAX_IDENTIFICATIONS == sandbox_faults.DEFAULT_MAX_IDENTIFICATIONS == 2000
    assert client.MAX_BODY_BYTES == sandbox_faults.DEFAULT_MAX_BODY_BYTES == 1_000_000


def test_endpoints() -> None:
    assert client.ENDPOINTS == {
        "standard": "https://api2.amplitude.com/identify",
        "eu": "https://api.eu.amplitude.com/identify",
    }


def _casings(value: str) -> list[str]:
    return sorted({value, value.upper(), value.title(), value.swapcase()})


@pytest.mark.parametrize(
    "value", [c for v in sorted(DOCUMENTED_REJECTED_IDS) if v for c in _casings(v)]
)
def test_rejected_ids_rejected_by_both(value: str) -> None:
    """Behaviour, not only the constants: both sides refuse the id, in every casing."""
    assert sandbox.check_id("user_id", value) is not None
    preview = pd.DataFrame({"uid": [value]}).amplitude.identify(
        user_id="uid", set={"p": amp_pandas.literal(1)}, dry_run=True
    )
    assert preview.summary["invalid"] == 1, value


@pytest.mark.parametrize("value", ["abcd", "x" * 1025])
def test_id_length_limits_enforced_by_both(value: str) -> None:
    assert sandbox.check_id("user_id", value) is not None
    preview = pd.DataFrame({"uid": [value]}).amplitude.identify(
        user_id="uid", set={"p": amp_pandas.literal(1)}, dry_run=True
    )
    assert preview.summary["invalid"] == 1


@pytest.mark.parametrize("value", ["abcde", "x" * 1024])
def test_id_length_bounds_accepted_by_both(value: str) -> None:
    assert sandbox.check_id("user_id", value) is None
    preview = pd.DataFrame({"uid": [value]}).amplitude.identify(
        user_id="uid", set={"p": amp_pandas.literal(1)}, dry_run=True
    )
    assert preview.summary["invalid"] == 0


# --- Group Identify ---------------------------------------------------------------------------

#: Written out here from Amplitude's Group Identify documentation.
DOCUMENTED_GROUP_OPERATIONS = {"$set", "$setOnce", "$add", "$append", "$prepend", "$unset"}
#: Documented for user properties only.
USER_ONLY_OPERATIONS = {"$preInsert", "$postInsert", "$remove"}


def test_group_operations_agree() -> None:
    client_ops = {*client.GROUP_OPERATIONS.values(), client.UNSET}
    assert client_ops == set(sandbox.GROUP_OPERATIONS) == DOCUMENTED_GROUP_OPERATIONS
    assert set(client.OPERATIONS.values()) - client_ops == USER_ONLY_OPERATIONS
    assert set(sandbox.KNOWN_OPERATIONS) - set(sandbox.GROUP_OPERATIONS) == {
        *USER_ONLY_OPERATIONS,
        "$clearAll",
    }


@pytest.mark.parametrize("operation", sorted(USER_ONLY_OPERATIONS | {"$clearAll"}))
def test_user_only_operations_are_refused_for_groups(operation: str) -> None:
    problem = sandbox.check_group_properties({operation: {"tags": "a"}})
    assert problem is not None
    assert problem[1].startswith(f"{operation} is not documented for group properties")


@pytest.mark.parametrize("operation", sorted(DOCUMENTED_GROUP_OPERATIONS))
def test_documented_group_operations_are_accepted(operation: str) -> None:
    assert sandbox.check_group_properties({operation: {"n": 1}}) is None


def test_group_limits_agree() -> None:
    assert (
        client.MAX_GROUP_IDENTIFICATIONS
        == sandbox.MAX_GROUP_IDENTIFICATIONS
        == sandbox_faults.DEFAULT_MAX_GROUP_IDENTIFICATIONS
        == 1024
    )
    assert (
        client.MAX_GROUP_PROPERTIES
        == sandbox.MAX_GROUP_PROPERTIES
        == sandbox_faults.DEFAULT_MAX_GROUP_PROPERTIES
        == 1024
    )


@pytest.mark.parametrize("length", [1024, 1025])
def test_group_type_and_value_length_agree(length: int) -> None:
    accepted = length <= client.MAX_ID_LENGTH
    for field in ("group_type", "group_value"):
        identification = {"group_type": "company", "group_value": "acme", field: "x" * length}
        assert (sandbox.check_group_identification(identification) is None) is accepted


def test_paths_agree() -> None:
    assert client.IDENTIFY_PATH == sandbox.IDENTIFY_PATH == "/identify"
    assert client.GROUP_IDENTIFY_PATH == sandbox.GROUP_IDENTIFY_PATH == "/groupidentify"
