"""Property tests of every parser of outside input: anything may arrive, only clean refusals leave.

Names, signed manifests and their signatures, bundles (tar headers and members), report
batches (as parsed and as the API stores them), the inference server's request bodies, Open
Inference Protocol requests and the numbers in them. Each property says what a parser may
answer for arbitrary input: a value that keeps its promise, or its own refusal; never another
exception.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import math
import re
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.airgap.bundle import BundleRefused, check_members, read_manifest, scan_headers
from agent.local.cache import ArtifactCache
from agent.serving import json_body
from agent.serving.json_body import MAX_DEPTH, TooDeep
from agent.serving.runtime.errors import BatchTooLarge, InvalidInput
from agent.serving.runtime.model import LoadedModel
from agent.serving.runtime.oip import INTEGERS, RANGES, requested_outputs, rows_from_inputs
from common.bundles import ReportExport
from common.names import NAME_PATTERN, InvalidName, check_name
from common.reports import ReportBatch
from common.schemas import Feature, Manifest, SignedManifest
from common.signing import BadSignature, PublicKey, Signature, describe, sign, verify
from control_plane.bundles import stream_bundle
from tests.support.models import iris_model

SETTINGS = settings(max_examples=150, deadline=None)

# Any JSON value: what a hostile client or a broken proxy can put in a body.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=30,
)


# --- names ------------------------------------------------------------------------------------


@SETTINGS
@given(st.text(max_size=80) | st.from_regex(NAME_PATTERN, fullmatch=True))
def test_a_name_is_accepted_only_when_it_is_safe_as_a_path_segment(value: str):
    try:
        assert check_name(value) == value
    except InvalidName as refusal:
        assert repr(value) in str(refusal)
        return
    assert 1 <= len(value) <= 64
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*", value)
    assert ".." not in value and "/" not in value and "\\" not in value and "\0" not in value


# --- manifests and signatures ------------------------------------------------------------------

KEY = Ed25519PrivateKey.generate()
TRUSTED = {describe(KEY.public_key()).key_id: describe(KEY.public_key())}


def genuine_manifest() -> dict:
    now = datetime.now(UTC)
    artifact = {"sha256": "a" * 64, "size": 10, "format": "joblib"}
    manifest = Manifest.model_validate(
        {
            "environment": "production",
            "revision": 3,
            "issued_at": now,
            "expires_at": now + timedelta(days=7),
            "models": {"wine": {"primary": {"version": 1, "artifact": artifact}}},
            "signing_keys": [describe(KEY.public_key())],
        }
    ).model_dump(mode="json")
    return {"manifest": manifest, "signatures": [sign(KEY, manifest).model_dump()], "poll_after": 5}


GENUINE = genuine_manifest()


@SETTINGS
@given(JSON)
def test_arbitrary_json_is_never_a_signed_manifest_by_accident(value):
    for raw in (json.dumps(value), json.dumps({**GENUINE, "manifest": value})):
        try:
            SignedManifest.model_validate_json(raw)
        except ValidationError:
            continue
        # Only a dict shaped like a manifest parses; then the signature must still not verify.
        parsed = SignedManifest.model_validate_json(raw)
        with pytest.raises(BadSignature):
            verify(parsed.manifest.model_dump(mode="json"), parsed.signatures, TRUSTED)


def leaf_paths(value, path=()):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from leaf_paths(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from leaf_paths(inner, (*path, index))
    else:
        yield path


MANIFEST_LEAVES = list(leaf_paths(GENUINE["manifest"]))


@SETTINGS
@given(st.sampled_from(MANIFEST_LEAVES), JSON)
def test_any_change_to_a_signed_manifest_is_refused(path, replacement):
    document = copy.deepcopy(GENUINE["manifest"])
    target = document
    for part in path[:-1]:
        target = target[part]
    assume(target[path[-1]] != replacement)
    target[path[-1]] = replacement
    signatures = [Signature(**s) for s in GENUINE["signatures"]]
    with pytest.raises(BadSignature):
        verify(document, signatures, TRUSTED)


@SETTINGS
@given(
    st.lists(
        st.builds(
            Signature,
            key_id=st.sampled_from([*TRUSTED, "0" * 16]) | st.text(max_size=20),
            signature=st.text(max_size=100)
            | st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode()),
        ),
        max_size=4,
    ),
    st.dictionaries(
        st.text(max_size=16),
        st.builds(
            PublicKey,
            key_id=st.text(max_size=16),
            public_key=st.text(max_size=60),
            fingerprint=st.text(max_size=60),
        ),
        max_size=2,
    ),
)
def test_forged_signatures_and_garbage_keys_only_raise_bad_signature(signatures, garbage_keys):
    with pytest.raises(BadSignature):
        verify(GENUINE["manifest"], signatures, {**garbage_keys, **TRUSTED})


# --- bundles -----------------------------------------------------------------------------------

DIGEST = "b" * 64
KINDS = [
    tarfile.REGTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
]
MEMBER_NAMES = st.sampled_from(
    [
        f"sha256/{DIGEST}",
        f"sha256/../../{DIGEST}",
        f"/sha256/{DIGEST}",
        f"/etc/{DIGEST}",
        "../escaped",
        "sha256/" + "c" * 64,
        "sha256",
        "C:\\evil",
        "sha256\\..\\..\\evil",
        "manifest.json",
    ]
) | st.text(min_size=1, max_size=40)


def bundle_manifest() -> dict:
    signed = copy.deepcopy(GENUINE)
    entry = signed["manifest"]["models"]["wine"]["primary"]
    entry["artifact"] = {"sha256": DIGEST, "size": 4, "format": "joblib"}
    return signed


@st.composite
def members(draw):
    """A tar member as a hostile bundle may hold it: any name, kind, link and declared size."""
    info = tarfile.TarInfo(draw(MEMBER_NAMES))
    info.type = draw(st.sampled_from(KINDS))
    info.linkname = draw(st.sampled_from(["", "/etc/passwd", "../../x", "manifest.json"]))
    data = draw(st.binary(max_size=8))
    # The header may declare far more than the data that follows (a huge or truncated member).
    declared = draw(st.sampled_from([len(data), 4, 2**33, 8**11 - 1]))
    return info, data, declared


def hostile_bundle(entries) -> bytes:
    out = io.BytesIO()
    manifest = json.dumps(bundle_manifest()).encode()
    head = tarfile.TarInfo("manifest.json")
    head.size = len(manifest)
    out.write(head.tobuf(format=tarfile.PAX_FORMAT) + manifest)
    out.write(b"\0" * (-len(manifest) % 512))
    for info, data, declared in entries:
        info.size = declared if info.isreg() else 0
        out.write(info.tobuf(format=tarfile.PAX_FORMAT))
        if info.isreg():
            out.write(data + b"\0" * (-len(data) % 512))
    out.write(b"\0" * 1024)
    return out.getvalue()


def read_bundle(raw: bytes, cache: ArtifactCache) -> dict[str, tarfile.TarInfo]:
    """Run the agent's checks of a bundle, as import_bundle_file does, up to its first byte read."""
    handle = io.BytesIO(raw)
    scan_headers(handle)
    handle.seek(0)
    with tarfile.open(fileobj=handle, mode="r:") as archive:
        signed = read_manifest(archive)
        return check_members(archive, signed.manifest, cache)


def clean_member() -> tuple[tarfile.TarInfo, bytes, int]:
    return tarfile.TarInfo(f"sha256/{DIGEST}"), b"blob", 4


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(members(), max_size=4), st.binary(max_size=600))
@example([clean_member()], b"")  # the one bundle to accept: the checks below then run
def test_a_hostile_bundle_is_refused_and_a_clean_one_names_only_safe_files(
    tmp_path_factory, entries, tail
):
    cache = ArtifactCache(tmp_path_factory.mktemp("cache"))
    for raw in (hostile_bundle(entries), hostile_bundle(entries)[:-1024] + tail):
        try:
            accepted = read_bundle(raw, cache)
        except BundleRefused:
            continue
        # What passes is exactly the one named file: regular, in sha256/, of its declared size.
        assert set(accepted) == {DIGEST}
        member = accepted[DIGEST]
        assert member.isreg() and member.name == f"sha256/{DIGEST}" and member.size == 4


# Every tar type byte tarfile knows, and some it does not: members and metadata headers alike,
# the ones a bundle may hold more often.
TAR_TYPES = st.sampled_from([b"0", b"x", b"X", b"L", b"K"]) | st.sampled_from(
    [bytes([c]) for c in b"\x0012345679gSVDMNZ"]
)
PAX_KEYWORDS = ["size", "path", "comment", "hdrcharset", "GNU.sparse.map", "GNU.sparse.major"]
PAX_VALUES = st.sampled_from([b"0", b"4", b"1_0", b" 7", b"10" * 9, b"\xff\xfe", b"x/", b"1"])


def pax_record(keyword: bytes, value: bytes, skew: int) -> bytes:
    """A pax record, its length field right, or off by `skew` (a hostile writer's)."""
    body = b" " + keyword + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(max(length + skew, 0)).encode() + body


PAX_RECORDS = st.builds(
    pax_record,
    st.sampled_from(PAX_KEYWORDS).map(str.encode) | st.binary(max_size=6),
    PAX_VALUES | st.binary(max_size=12),
    st.sampled_from([0, 0, 0, -1, 1, -100]),
)


@st.composite
def raw_headers(draw) -> bytes:
    """One raw header block and its data: any type, any declared size, maybe damaged."""
    kind = draw(TAR_TYPES)
    if kind in b"xXg" and draw(st.booleans()):
        data = b"".join(draw(st.lists(PAX_RECORDS, max_size=3)))
    else:
        data = draw(st.binary(max_size=40))
    declared = draw(st.sampled_from([len(data), 0, len(data) + 1, 513, 2**33, 10**15, -1]))
    info = tarfile.TarInfo(draw(st.sampled_from([f"sha256/{DIGEST}", "n", "d/", "x" * 120])))
    info.type, info.size = kind, declared
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT)[-512:])  # no GNU L header of its own
    damage = draw(st.sampled_from(["none"] * 8 + ["checksum", "size"]))
    if damage == "checksum":
        block[148:156] = b"%06o\0 " % 1
    elif damage == "size":
        block[124:136] = b"not a size!!"
    return bytes(block) + data + b"\0" * (-len(data) % 512)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(raw_headers(), max_size=6),
    st.sampled_from([b"\0" * 1024, b"", b"\0" * 512]),
    st.just(b"") | st.binary(max_size=700),
)
@example([], b"", b"")
def test_any_sequence_of_tar_headers_is_refused_or_read_by_tarfile_as_scanned(blocks, end, tail):
    """The pre-scan refuses cleanly, or tarfile then reads exactly the members it found."""
    raw = b"".join(blocks) + end + tail
    try:
        scanned = scan_headers(io.BytesIO(raw))
    except BundleRefused:
        return
    found = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        for member in archive:  # no RecursionError, OSError, ValueError...
            found.append((member.offset_data, member.size))
            reader = archive.extractfile(member)
            assert reader is not None and len(reader.read()) == member.size
    assert found == scanned


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from("0123456789abcdef"), st.binary(max_size=3000), max_size=4))
def test_a_streamed_bundle_has_its_exact_length_and_reads_back_whole(tmp_path_factory, blobs):
    folder: Path = tmp_path_factory.mktemp("blobs")
    signed = copy.deepcopy(GENUINE)
    models = {}
    for index, (char, data) in enumerate(sorted(blobs.items())):
        digest = char * 64
        (folder / digest).write_bytes(data)
        artifact = {"sha256": digest, "size": len(data), "format": "joblib"}
        models[f"m{index}"] = {"primary": {"version": 1, "artifact": artifact}}
    signed["manifest"]["models"] = models
    parsed = SignedManifest.model_validate(signed)
    length, chunks = stream_bundle(parsed, lambda digest: (folder / digest).open("rb"))
    raw = b"".join(chunks)
    assert len(raw) == length
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        assert read_manifest(archive) == parsed
        found = {
            m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive
            if m.name != "manifest.json"
        }
    assert found == {f"sha256/{c * 64}": data for c, data in blobs.items()}


# --- report batches and report exports ----------------------------------------------------------


@SETTINGS
@given(JSON)
def test_arbitrary_json_is_a_refused_report_batch_or_export(value):
    for model in (ReportBatch, ReportExport):
        with pytest.raises(ValidationError):
            model.model_validate_json(json.dumps(value))


REPORT = {
    "id": "r" * 12,
    "kind": "shadow",
    "model": "wine",
    "version": 1,
    "shadow_version": 2,
    "window_start": "2026-01-01T00:00:00+00:00",
    "window_end": "2026-01-01T00:01:00+00:00",
    "requests": 10,
    "shadow": {
        "requests": 10,
        "shadowed": 10,
        "dropped": 0,
        "shadow_errors": 0,
        "kind": "classifier",
        "agreement": 1.0,
    },
}
REPORT_LEAVES = list(leaf_paths(REPORT))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(REPORT_LEAVES), JSON)
def test_a_report_batch_with_any_field_changed_is_stored_whole_or_not_at_all(api, path, value):
    """Posted to the API: a 200 storing the report, or a 4xx in the one shape storing nothing."""
    agent = _agent(api)
    report = copy.deepcopy(REPORT)
    report["id"] = f"prop{_agent.count:08d}"
    _agent.count += 1
    target = report
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    before = _stored(api)
    response = api.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/reports",
        {"reports": [report]},
        token=agent["token"],
    )
    assert response.status_code in (200, 400, 422), response.get_data(as_text=True)
    if response.status_code == 200:
        ack = response.get_json()
        assert ack["stored"] + ack["duplicates"] == [report["id"]]
        assert _stored(api) == before + len(ack["stored"])
    else:
        assert set(response.get_json()["error"]) == {"code", "message", "details"}
        assert _stored(api) == before


def _agent(api) -> dict:
    found = getattr(api, "_prop_agent", None)
    if found is None:
        api.create_env("production")
        found = api._prop_agent = api.enroll("production")
    return found


_agent.count = 0  # type: ignore[attr-defined]


def _stored(api) -> int:
    return len(api.get("/api/v1/reports?limit=10000").get_json()["reports"])


# --- Open Inference Protocol requests ------------------------------------------------------------

IRIS = iris_model()
FEATURES = list(IRIS.feature_names_in_)
SCHEMAS = [None, [Feature(name=name, type="number") for name in FEATURES]]
TENSOR = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(FEATURES) | st.text(max_size=10) | JSON,
        "shape": st.lists(st.integers(min_value=-2, max_value=2**40), max_size=3) | JSON,
        "datatype": st.sampled_from(["FP64", "INT64", "BOOL", "BYTES", "FP8", ""]) | JSON,
        "data": st.lists(JSON | st.lists(JSON, max_size=3), max_size=6) | JSON,
    },
)


@SETTINGS
@given(
    st.lists(TENSOR, max_size=5) | JSON,
    st.sampled_from(SCHEMAS),
    st.lists(st.fixed_dictionaries({"name": st.text(max_size=15)}) | JSON, max_size=3) | JSON,
)
def test_an_inference_request_parses_to_rows_or_is_refused_cleanly(inputs, schema, outputs):
    model = LoadedModel(
        IRIS, name="iris", version=1, sha256="0" * 64, format="joblib", input_schema=schema
    )
    try:
        rows = rows_from_inputs(model, inputs, max_rows=3)
    except (InvalidInput, BatchTooLarge):
        pass
    else:
        assert 1 <= len(rows) <= 3
        for row in rows:
            assert list(row) == FEATURES  # the fitted names order the columns, schema or not
    try:
        wanted = requested_outputs(model, outputs)
    except InvalidInput:
        return
    assert wanted is None or set(wanted) <= {"predict", "predict_proba"}


# --- request bodies of the inference server (agent/serving/json_body.py) ----------------------

# Openers with their closers; two carry strings holding brackets, quotes and escapes, which
# must not count as nesting (nor hide any).
OPENERS = {"[": "]", '{"k": ': "}", '["a]\\"}\\\\", ': "]", '{"[{\\"": ': "}"}


def json_depth(value) -> int:
    """Return how many arrays and objects `value` holds inside each other, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            deepest = max(deepest, depth)
            stack.extend(
                (inner, depth + 1) for inner in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


ENCODINGS = st.sampled_from(["utf-8", "utf-16", "utf-32-le"])


@SETTINGS
@given(
    st.lists(st.sampled_from(sorted(OPENERS)), min_size=MAX_DEPTH + 1, max_size=3000),
    st.booleans(),
    ENCODINGS,
)
def test_a_body_nested_past_the_bound_is_refused_never_a_recursion_error(openers, whole, encoding):
    closers = "".join(OPENERS[o] for o in reversed(openers)) if whole else ""
    raw = ("".join(openers) + "1" + closers).encode(encoding)
    with pytest.raises(TooDeep, match=f"deeper than {MAX_DEPTH} levels"):
        json_body.loads(raw)


@SETTINGS
@given(
    JSON | st.text(),  # st.text: any character, brackets, quotes and backslashes included
    st.integers(0, MAX_DEPTH + 8).flatmap(  # as many shallow bodies as ones past the bound
        lambda n: st.lists(st.sampled_from(["list", "object"]), min_size=n, max_size=n)
    ),
    st.booleans(),
    ENCODINGS,
    st.sampled_from([json_body._CHUNK, 5, 64]),  # small chunks: strings cross their edges
)
def test_a_body_parses_as_json_loads_does_unless_it_is_too_deep(
    value, wrappers, ascii, encoding, chunk
):
    for wrapper in wrappers:
        value = [value] if wrapper == "list" else {'[\\"': value}
    raw = json.dumps(value, ensure_ascii=ascii).encode(encoding)
    with mock.patch.object(json_body, "_CHUNK", chunk):
        if json_depth(value) <= MAX_DEPTH:
            assert json_body.loads(raw) == json.loads(raw)
        else:
            with pytest.raises(TooDeep):
                json_body.loads(raw)


@SETTINGS
@given(
    st.binary(max_size=200)
    | st.text(alphabet='[]{}",:\\ 1a', max_size=400).map(str.encode)
    | st.tuples(st.integers(0, 2000), st.text(alphabet='[]{}",:\\ 1a', max_size=200)).map(
        lambda deep: ("[" * deep[0] + deep[1]).encode()
    )
)
def test_any_bytes_parse_as_json_loads_does_or_are_refused_cleanly(raw):
    try:
        expected = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        with pytest.raises(json_body.MalformedJson):
            json_body.loads(raw)
        return
    try:
        assert json_body.loads(raw) == expected
    except TooDeep:
        assert json_depth(expected) > MAX_DEPTH


# --- numbers: what a datatype or a feature type holds --------------------------------------------

NUMBERS = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.sampled_from([10**400, -(10**400), 2**63, 2**63 - 1, 2**64, -1, 1e30, 65504.5, 3.5e38])
)


class Zeros:
    """An estimator that predicts 0 for each row, fitted on named columns or on an array."""

    def __init__(self, names: list[str] | None) -> None:
        self.n_features_in_ = 2
        if names is not None:
            self.feature_names_in_ = np.array(names, dtype=object)

    def predict(self, X):
        return np.zeros(len(X))


@SETTINGS
@given(st.sampled_from(sorted(RANGES)), NUMBERS)
def test_a_tensor_number_is_accepted_only_within_its_datatype(datatype, value):
    model = LoadedModel(IRIS, name="iris", version=1, sha256="0" * 64, format="joblib")
    inputs = [{"name": name, "shape": [1], "datatype": "FP64", "data": [1.0]} for name in FEATURES]
    inputs[0].update(datatype=datatype, data=[value])
    low, high = RANGES[datatype]
    whole = datatype not in INTEGERS or type(value) is int or value.is_integer()
    infinite = type(value) is float and math.isinf(value)  # a float of every width
    fits = low <= value <= high or (infinite and datatype not in INTEGERS)
    try:
        rows = rows_from_inputs(model, inputs, max_rows=1)
    except InvalidInput as refusal:
        assert not (fits and whole), refusal
        assert f"input {FEATURES[0]!r}" in str(refusal)
        return
    assert fits and whole and rows[0][FEATURES[0]] == value


@SETTINGS
@given(st.sampled_from([["n", "i"], None]), NUMBERS, NUMBERS)
def test_rows_that_pass_validation_always_reach_the_model(names, number, integer):
    schema = [Feature(name="n", type="number"), Feature(name="i", type="integer")]
    model = LoadedModel(
        Zeros(names), name="m", version=1, sha256="0" * 64, format="joblib", input_schema=schema
    )
    try:
        rows = model.validate([{"n": number, "i": integer}])
    except InvalidInput as refusal:
        assert "feature 'n'" in str(refusal) or "feature 'i'" in str(refusal)
        return
    assert model.predict(rows).predictions == [0.0]  # no OverflowError on the way in
