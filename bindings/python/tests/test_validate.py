"""The Python package as a user installs it: validation of the seed lab and of a broken lab."""

import pathlib

import pytest

import cloudlet

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_seed_lab_is_valid():
    assert cloudlet.validate(ROOT / "examples" / "seed") == []


def test_findings_carry_positions(tmp_path):
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "name: t\nsite: {domain: t.lan}\nnetworks:\n  lan: {cidr: 10.0.0.0/24}\n"
        "machines:\n  a: {cpus: 1, memory: 1GiB, nics: [{network: lan, ip: 10.0.1.5}]}\n"
    )
    [d] = cloudlet.validate(lab)
    assert d["code"] == "address-outside-network"
    assert d["severity"] == "error"
    assert (d["location"]["line"], d["location"]["column"]) == (6, 56)
    assert d["end"] == {"line": 6, "column": 64}  # the address `10.0.1.5`


def test_a_lab_that_does_not_load_raises_with_its_position(tmp_path):
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: 1, memroy: 1GiB}\n")
    with pytest.raises(cloudlet.LabError, match=r"lab.yaml:4:16: \[unknown-key\] unknown key `memroy`; did you mean `memory`\?"):
        cloudlet.validate(lab)


def test_schema_and_version():
    assert cloudlet.schema()["title"] == "cloudlet lab"
    assert cloudlet.__version__.count(".") == 2
