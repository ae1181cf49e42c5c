"""What `tether model push` finds by itself: the code revision and the input schema."""

from __future__ import annotations

import pytest

from control_plane.cli.provenance import (
    InputExampleError,
    code_revision,
    example_types,
    input_schema,
)
from tests.cli.checkouts import git


def test_code_revision_clean_dirty_and_outside_git(tmp_path):
    assert code_revision(tmp_path) is None
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    assert code_revision(repo) is None  # no commit yet
    (repo / "a.py").write_text("1\n")
    git(repo, "add", "a.py")
    git(repo, "commit", "-q", "-m", "one")
    head = git(repo, "rev-parse", "HEAD")
    assert code_revision(repo) == head
    (repo / "untracked.csv").write_text("data\n")
    assert code_revision(repo) == head  # untracked files are not code changes
    (repo / "a.py").write_text("2\n")
    assert code_revision(repo) == head + "-dirty"


def test_code_revision_without_git_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert code_revision(tmp_path) is None


def test_example_types():
    rows = [
        {"a": 1, "b": 1.5, "c": "x", "d": True, "e": None},
        {"a": 2, "b": 2, "c": "y", "d": False, "e": 3},
    ]
    assert example_types(rows) == {
        "a": "integer",
        "b": "number",
        "c": "string",
        "d": "boolean",
        "e": "integer",
    }


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"a": 1}, {"a": "one"}], "feature 'a' mixes integer and string"),
        ([{"a": True}, {"a": 1}], "feature 'a' mixes boolean and integer"),
        ([{"a": [1, 2]}], "feature 'a' has a nested value"),
    ],
)
def test_example_types_refuse_what_a_schema_cannot_say(rows, message):
    with pytest.raises(InputExampleError, match=message):
        example_types(rows)


def test_input_schema_sources():
    assert input_schema(["x", "y"], None) == (
        [{"name": "x", "type": "number"}, {"name": "y", "type": "number"}],
        [],
    )
    schema, notes = input_schema(["x"], [{"x": "a", "z": 1}])
    assert schema == [{"name": "x", "type": "string"}]
    assert notes == ["the input example has features the model does not: z"]
    assert input_schema(None, [{"q": 1}, {"r": True}])[0] == [
        {"name": "q", "type": "integer"},
        {"name": "r", "type": "boolean"},
    ]
    schema, notes = input_schema(None, None)
    assert schema is None and "no input schema" in notes[0]
