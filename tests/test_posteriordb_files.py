"""Corrupt posteriordb files give a ValueError that names the file, not a bare zip, JSON or
index error."""

import json
import zipfile

import pytest

from pyrodiv.zoo.posteriordb import load_data, load_posterior_info, load_reference_draws

NAME = "toy-toy_model"


def posterior(tmp_path, data=None, draws=None, info=None):
    """A one-posterior posteriordb folder; ``data``/``draws`` are bytes written as the zip files
    (or, given as objects, zipped as valid JSON)."""
    folder = tmp_path / NAME
    folder.mkdir()
    (folder / "posterior.json").write_text(
        info if info is not None else json.dumps({"name": NAME})
    )
    for stem, content in (("data", data), ("reference_draws", draws)):
        if content is None:
            content = {"N": 2, "y": [1.0, 2.0]} if stem == "data" else [{"mu": [0.1, 0.2]}]
        path = folder / f"{stem}.json.zip"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            with zipfile.ZipFile(path, "w") as z:
                z.writestr(f"{stem}.json", json.dumps(content))
    return folder


def zipped(text: str) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("member.json", text)
    return buffer.getvalue()


def empty_zip() -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    return buffer.getvalue()


def test_a_valid_folder_loads(tmp_path):
    posterior(tmp_path)
    assert load_data(NAME, tmp_path)["y"].tolist() == [1.0, 2.0]
    assert load_reference_draws(NAME, tmp_path)["mu"].tolist() == [[0.1, 0.2]]


@pytest.mark.parametrize(
    "content,what",
    [
        (zipped('{"N": 2, "y": [1.0, 2.0]}')[:40], "not a readable zip"),  # truncated
        (b"", "not a readable zip"),  # a zero-byte file
        (empty_zip(), "empty zip"),
        (zipped('{"N": 2, "y": [1.0,'), "valid JSON"),
        (zipped("[1, 2]"), "expected a JSON object"),
    ],
    ids=["truncated", "zero_bytes", "empty_zip", "invalid_json", "not_a_dict"],
)
def test_corrupt_data_names_the_file(tmp_path, content, what):
    folder = posterior(tmp_path, data=content)
    with pytest.raises(ValueError, match=what) as info:
        load_data(NAME, tmp_path)
    assert str(folder / "data.json.zip") in str(info.value)


@pytest.mark.parametrize(
    "content,what",
    [
        (zipped('[{"mu": [0.1]}]')[:30], "not a readable zip"),
        (empty_zip(), "empty zip"),
        (zipped('[{"mu": [0.1'), "valid JSON"),
        (zipped("[]"), "non-empty list of chains"),
    ],
    ids=["truncated", "empty_zip", "invalid_json", "no_chains"],
)
def test_corrupt_reference_draws_name_the_file(tmp_path, content, what):
    folder = posterior(tmp_path, draws=content)
    with pytest.raises(ValueError, match=what) as info:
        load_reference_draws(NAME, tmp_path)
    assert str(folder / "reference_draws.json.zip") in str(info.value)


def test_invalid_posterior_json_names_the_file(tmp_path):
    folder = posterior(tmp_path, info="{not json")
    with pytest.raises(ValueError, match="valid JSON") as info:
        load_posterior_info(NAME, tmp_path)
    assert str(folder / "posterior.json") in str(info.value)
