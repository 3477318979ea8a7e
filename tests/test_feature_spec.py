"""The feature spec file: what parses, and every way it can be wrong (exit 3, naming the file and key)."""

from __future__ import annotations

import pytest

from dien_batch.errors import DataValidationError
from dien_batch.feature_spec import Field, load

GOOD = """
[user]
table = "users.csv"
key = "user_id"
categorical = ["gender", "age"]
numeric = ["income"]

[item]
table = "items.csv"
key = "item_id"
sep = "|"
categorical = ["brand"]

[context]
categorical = ["device"]
"""


def write(tmp_path, text: str, tables=("users.csv", "items.csv")):
    for name in tables:
        (tmp_path / name).write_text("id\n")
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_a_full_spec_parses_with_tables_relative_to_it(tmp_path):
    spec = load(write(tmp_path, GOOD))
    assert spec.fields == (Field("user", "gender", "categorical"), Field("user", "age", "categorical"),
                           Field("user", "income", "numeric"), Field("item", "brand", "categorical"),
                           Field("context", "device", "categorical"))
    assert [f.column for f in spec.fields] == ["u_gender", "u_age", "u_income", "i_brand", "c_device"]
    assert spec.tables["user"].path == tmp_path / "users.csv" and spec.tables["item"].sep == "|"
    assert spec.tables["user"].key == "user_id" and "context" not in spec.tables


def test_every_section_is_optional(tmp_path):
    assert not load(write(tmp_path, ""))
    spec = load(write(tmp_path, '[item]\ntable = "items.csv"\nkey = "item_id"\nnumeric = ["price"]\n'))
    assert [f.key for f in spec.fields] == ["item.price"] and spec.of("user") == []


@pytest.mark.parametrize("text, where", [
    ("[users]\n", "unknown ['users']"),
    ('[user]\ntable = "users.csv"\nkey = "u"\ncategorical = ["a"]\ncolour = 1\n', "unknown keys ['colour']"),
    ('[context]\ntable = "x.csv"\n', "[context]: unknown keys ['table']"),
    ('[user]\ntable = "users.csv"\nkey = "u"\ncategorical = "gender"\n', "[user] categorical"),
    ('[user]\ntable = "users.csv"\nkey = "u"\ncategorical = ["bad name"]\n', "not a plain column name"),
    ('[user]\ntable = "users.csv"\nkey = "u"\ncategorical = ["a"]\nnumeric = ["a"]\n', "declared twice"),
    ('[user]\ncategorical = ["a"]\n', "[user] table: missing"),
    ('[user]\ntable = "users.csv"\ncategorical = ["a"]\n', "[user] key: missing"),
    ('[user]\ntable = "nowhere.csv"\nkey = "u"\ncategorical = ["a"]\n', "does not exist"),
    ('[user]\ntable = "users.csv"\nkey = "a"\ncategorical = ["a"]\n', "is the key, not a field"),
    ('[item]\ntable = "items.csv"\nkey = "i"\nsep = 3\ncategorical = ["a"]\n', "[item] sep"),
    ("[user\n", "syntax"),
    ("user = 3\n", "[user]: expected a table"),
])
def test_every_error_names_the_file_and_the_key(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(DataValidationError) as err:
        load(path)
    assert str(path) in str(err.value) and where in str(err.value)
    assert err.value.exit_code == 3
