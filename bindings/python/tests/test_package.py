"""The installed distribution is what an index shows and what pip chose: its metadata (PEP 621
fields from pyproject.toml, the license file) and the wheel's tags (abi3 from CPython 3.11, a
manylinux or musllinux platform), read back from the install with importlib.metadata."""

import importlib.metadata as md
import os
import platform

import cloudlet

DIST = md.distribution("cloudlet")


def test_metadata_names_the_project_its_license_and_its_pythons():
    meta = DIST.metadata
    assert meta["Name"] == "cloudlet"
    assert meta["Version"] == cloudlet.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.11"
    assert "self-hosted cloud" in meta["Summary"]
    assert meta["Description-Content-Type"].startswith("text/markdown")
    assert "pip install cloudlet" in (meta.get_payload() or meta["Description"])
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())


def test_the_license_text_is_installed():
    licenses = [f for f in DIST.files if f.name == "LICENSE"]
    assert licenses, [str(f) for f in DIST.files]
    assert "Apache License" in licenses[0].read_text()


def test_the_wheel_is_abi3_for_a_portable_linux():
    wheel = DIST.read_text("WHEEL")
    tags = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag: ")]
    assert tags, wheel
    machine = platform.machine()
    for tag in tags:
        python, abi, plat = tag.split("-")
        assert (python, abi) == ("cp311", "abi3"), tag
        assert plat.endswith("_" + machine), tag
        assert plat.startswith(("manylinux", "musllinux")), tag
    # bindings/test.sh says which wheel pip had to choose (manylinux2014 for this machine).
    wanted = os.environ.get("CLOUDLET_WHEEL_PLATFORM")
    if wanted is not None:
        assert any(t.endswith("-" + wanted) for t in tags), (wanted, tags)
