"""The awaitable API as a user drives it: load, validate, plan, apply with events and
cancellation, render, errors as the exception hierarchy, records frozen and convertible."""

import asyncio
import dataclasses
import json
import pathlib
import shutil

import pytest

import cloudlet

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def seed(tmp_path):
    lab = tmp_path / "seed"
    shutil.copytree(ROOT / "examples" / "seed", lab, ignore=shutil.ignore_patterns(".cloudlet"))
    return lab


def with_backup(seed, tmp_path, monkeypatch):
    """The lab backs its state up hourly into a directory target `nas`."""
    monkeypatch.setenv("CLOUDLET_BACKUP_KEY", "python-backup-key")
    (seed / "backup.yaml").write_text(
        "backup:\n  key: {env: CLOUDLET_BACKUP_KEY}\n"
        f"  targets: {{nas: {{dir: {tmp_path / 'nas'}}}}}\n"
        "  state: {target: nas, every: 1h}\n"
    )


def test_plan_apply_replan_with_events(seed):
    lab = cloudlet.Lab.load(seed)
    assert lab.name == "seed"
    assert [d for d in lab.validate() if d.is_error] == []
    plan = asyncio.run(lab.plan())
    assert plan.summary.create == len(plan.steps) > 50
    assert isinstance(plan.steps[0], cloudlet.Step)
    events = []
    report = asyncio.run(lab.apply(plan, on_event=events.append))
    assert report.success, report
    assert report.done.create == plan.summary.create
    kinds = [e.type for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("step_done") == len(plan.steps)
    again = lab.plan_sync()
    assert not again.summary.has_changes
    assert again.summary.unchanged == len(plan.steps)


def test_a_cancelled_apply_starts_nothing(seed):
    lab = cloudlet.Lab.load(seed)
    plan = lab.plan_sync()
    cancel = cloudlet.Cancel()
    cancel.cancel()
    report = lab.apply_sync(plan, cancel=cancel)
    assert report.cancelled and not report.success
    assert report.done.create == 0
    assert len(report.skipped) == len(plan.steps)


def test_a_plan_for_other_lab_files_is_refused(seed):
    lab = cloudlet.Lab.load(seed)
    plan = lab.plan_sync()
    (seed / "cluster.yaml").write_text((seed / "cluster.yaml").read_text().replace("replicas: 2", "replicas: 3"))
    changed = cloudlet.Lab.load(seed)
    with pytest.raises(cloudlet.StalePlanError, match="lab files changed"):
        changed.apply_sync(plan)


def test_lab_errors_carry_positions(tmp_path):
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: 1, memroy: 1GiB}\n")
    with pytest.raises(cloudlet.LabError) as e:
        cloudlet.Lab.load(lab)
    err = e.value
    assert isinstance(err, cloudlet.CloudletError)
    assert (pathlib.Path(err.file).name, err.line, err.column) == ("lab.yaml", 4, 16)
    assert err.diagnostics[0].code == "unknown-key"
    assert err.diagnostics[0].end == cloudlet.Position(4, 22)  # `memroy`
    assert "did you mean `memory`" in str(err)
    # The facade's message, the same in every frontend.
    assert str(err).endswith("lab.yaml:4:16: [unknown-key] unknown key `memroy`; did you mean `memory`?")


def test_invalid_labs_refuse_to_plan(tmp_path):
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "name: t\nsite: {domain: t.lan}\nnetworks:\n  lan: {cidr: 10.0.0.0/24}\n"
        "machines:\n  a: {cpus: 1, memory: 1GiB, nics: [{network: lan, ip: 10.0.1.5}]}\n"
    )
    l = cloudlet.Lab.load(lab, state_dir=tmp_path / "state")
    with pytest.raises(cloudlet.LabError) as e:
        asyncio.run(l.plan())
    assert e.value.diagnostics[0].code == "address-outside-network"


def test_records_are_frozen_and_convert(seed):
    lab = cloudlet.Lab.load(seed)
    plan = lab.plan_sync()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.summary.create = 0
    assert plan.to_dict()["summary"]["create"] == plan.summary.create
    assert json.loads(plan.to_json())["lab"] == "seed"
    assert plan.steps[0].to_dict()["id"] == plan.steps[0].id


def test_render_writes_artifacts(seed, tmp_path):
    n = asyncio.run(cloudlet.Lab.load(seed).render(tmp_path / "out"))
    assert n > 50
    assert any((tmp_path / "out").rglob("*.json"))


def _cli(*args):
    """The Rust facade as the `cloudlet` binary gives it (bindings/test.sh sets CLOUDLET_BIN)."""
    import os
    import subprocess

    binary = os.environ.get("CLOUDLET_BIN")
    assert binary, "CLOUDLET_BIN must name the cloudlet binary (bindings/test.sh sets it)"
    return subprocess.run([binary, *args], check=False, capture_output=True, text=True).stdout


def _compact(text):
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def test_the_same_plan_and_diagnostics_as_the_rust_facade(seed, tmp_path):
    lab = cloudlet.Lab.load(seed)
    assert lab.plan_sync().to_json() == _compact(_cli("plan", str(seed), "--output", "json"))
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "name: t\nsite: {domain: t.lan}\nnetworks:\n  lan: {cidr: 10.0.0.0/24}\n"
        "machines:\n  a: {cpus: 1, memory: 1GiB, nics: [{network: lan, ip: 10.0.1.5}]}\n"
    )
    ours = cloudlet.validate(broken)
    theirs = json.loads(_cli("validate", str(broken), "--output", "json"))["diagnostics"]
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)


def test_the_readme_example_runs(tmp_path):
    """The README's Python example, as written, run from the repository root."""
    import re
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", readme, re.S)
    state = tmp_path / "state"
    code = code.replace('cloudlet.Lab.load("examples/seed")', f'cloudlet.Lab.load("examples/seed", state_dir={str(state)!r})')
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("True ")


def test_data_that_leaves_the_lab_is_kept_or_needs_permission(seed):
    cluster = seed / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace("size: 1GiB}", "size: 1GiB, retain: false}"))
    lab = cloudlet.Lab.load(seed)
    assert lab.apply_sync(lab.plan_sync()).success
    assert asyncio.run(lab.storage_status()) == []  # the storage target renders locally
    # The blog's volume leaves the lab: deleting its data is marked and refused by default.
    cluster.write_text(cluster.read_text().replace(
        "      volumes:\n        - {name: content, export: blog, mount: /usr/share/nginx/html, size: 1GiB, retain: false}\n", ""))
    lab = cloudlet.Lab.load(seed)
    plan = lab.plan_sync()
    lossy = [s.id for s in plan.steps if s.data_loss]
    assert lossy == ["storage/dataset/blog.blog.content"]
    assert plan.summary.data_loss == 1 and plan.kept == ()
    with pytest.raises(cloudlet.DataLossError) as e:
        lab.apply_sync(plan)
    assert e.value.ids == ("storage/dataset/blog.blog.content",)
    assert lab.apply_sync(plan, allow_data_loss=True).success
    assert not lab.plan_sync().summary.has_changes


def test_destroy_and_targets_plan_what_the_cli_plans(seed):
    lab = cloudlet.Lab.load(seed)
    assert asyncio.run(lab.owned()) == []
    narrowed = lab.plan_sync(targets=["hypervisor/vm/k8s-node1"])
    assert narrowed.targets == ("hypervisor/vm/k8s-node1",)
    assert "hypervisor/vm/k8s-node1" in [s.id for s in narrowed.steps]
    assert narrowed.summary.create == len(narrowed.steps) == 6
    assert lab.apply_sync(narrowed).success
    owned = asyncio.run(lab.owned())
    assert len(owned) == 6 and all(o.in_lab and o.backend == "local" for o in owned)
    assert isinstance(owned[0], cloudlet.Owned)
    assert lab.apply_sync(lab.plan_sync()).success
    teardown = lab.plan_sync(destroy=True)
    assert teardown.destroy and teardown.summary.delete == len(teardown.steps) > 50
    assert "storage/dataset/mail" in teardown.kept
    assert lab.apply_sync(teardown).success
    assert sorted(o.id for o in asyncio.run(lab.owned())) == sorted(teardown.kept)
    with pytest.raises(cloudlet.LabError, match="target `vm/x`"):
        lab.plan_sync(targets=["vm/x"])


def _http(url, data=None):
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
        return r.read().decode()


def test_the_boot_service_serves_one_install_and_stops(seed, tmp_path):
    import time
    import urllib.error

    lab = cloudlet.Lab.load(seed, state_dir=tmp_path / "state")
    machines = lab.pxe_status()
    assert [m.name for m in machines] == ["k8s-master", "k8s-node1", "k8s-node2"]
    node1 = machines[1]
    assert node1.state is None and node1.profile == "ubuntu2004"
    mac = node1.mac.replace(":", "-")
    events = []

    async def install():
        svc = await lab.pxe_serve(
            address="10.0.20.11", proxy_dhcp=False, http_port=0, tftp_port=0, root=tmp_path, on_event=events.append
        )
        async with svc:
            base = f"http://{svc.http_address}"
            script = await asyncio.to_thread(_http, f"{base}/ipxe/{mac}")
            assert script.startswith("#!ipxe\n")
            token = script.split("/install/k8s-node1/")[1].split("/")[0]
            ks = await asyncio.to_thread(_http, f"{base}/install/k8s-node1/{token}/config")
            assert "--bootproto=static --ip=10.0.20.11" in ks
            with pytest.raises(urllib.error.HTTPError) as refused:
                await asyncio.to_thread(_http, f"{base}/install/k8s-node2/{token}/config")
            assert refused.value.code == 403
            await asyncio.to_thread(_http, f"{base}/install/k8s-node1/{token}/done", b"installed")

    asyncio.run(install())
    deadline = time.monotonic() + 5
    while not any(e.event == "reported" for e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e.event for e in events] == ["boot", "config", "refused", "reported"], events
    assert isinstance(events[0], cloudlet.BootEvent) and events[0].data["via"] == "ipxe"
    assert events[3].data["ok"] is True
    state = lab.pxe_status()[1].state
    assert state is not None and state.phase == "installed" and state.boots == 1
    assert json.loads(lab.pxe_status()[1].to_json())["state"]["phase"] == "installed"
    lab.pxe_reinstall("k8s-node1")
    assert lab.pxe_status()[1].state.phase == "discovered"
    with pytest.raises(cloudlet.BootError, match="no such machine|not a machine"):
        lab.pxe_reinstall("nobody")
    # Without an address the lab's boot server machine's is used: not this host's.
    with pytest.raises(cloudlet.BootError, match="binding HTTP on 10.0.10.20"):
        asyncio.run(lab.pxe_serve(proxy_dhcp=False))


def test_another_apply_holding_the_lock_is_the_locked_kind(seed):
    import fcntl

    lab = cloudlet.Lab.load(seed)
    plan = lab.plan_sync()
    state = seed / ".cloudlet"
    state.mkdir(exist_ok=True)
    with open(state / "lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(cloudlet.LockedError, match="another apply is running") as e:
            lab.apply_sync(plan)
    assert e.value.kind == "locked"
    # Released: the same plan applies.
    assert lab.apply_sync(plan).success


def test_a_stale_saved_plan_is_refused_as_the_cli_refuses_it(seed):
    lab = cloudlet.Lab.load(seed)
    plan = lab.plan_sync()
    saved = plan.to_json()
    assert lab.apply_sync(plan).success
    # The saved copy was planned against an empty world that is not there any more.
    with pytest.raises(cloudlet.StalePlanError, match="infrastructure changed") as e:
        lab.apply_sync(cloudlet.Plan.from_json(saved))
    assert e.value.kind == "stale_plan"


# A vault key for tests only (made with `cloudlet key new`; it protects nothing real).
TEST_VAULT_KEY = "AGE-SECRET-KEY-1254S4P44ZUUJTCXVU3PPXQVUQUNNJJ2APTVXPQ9DTCMALELAXMZQFFHANH"


def make_the_cluster(lab: pathlib.Path) -> None:
    """The seed, with the cluster cloudlet makes from its machines."""
    cluster = lab / "cluster.yaml"
    cluster.write_text(
        cluster.read_text().replace(
            "  workers: [k8s-node1, k8s-node2]\n",
            "  workers: [k8s-node1, k8s-node2]\n  kubernetes: {version: v1.36.3}\n",
        )
    )
    main = lab / "lab.yaml"
    main.write_text(
        main.read_text().replace(
            "  cluster: {kind: local}\n",
            "  cluster: {kind: kubeadm, credentials: {file: install-user}}\n",
        )
    )


def test_an_admin_kubeconfig_for_the_cluster_cloudlet_makes(seed, monkeypatch):
    with pytest.raises(cloudlet.LabError, match="does not make this lab's cluster"):
        cloudlet.Lab.load(seed).kubeconfig()
    make_the_cluster(seed)
    lab = cloudlet.Lab.load(seed)
    monkeypatch.delenv("CLOUDLET_VAULT_KEY", raising=False)
    monkeypatch.delenv("CLOUDLET_VAULT_KEY_FILE", raising=False)
    with pytest.raises(cloudlet.IoError, match="CLOUDLET_VAULT_KEY"):
        lab.kubeconfig()
    monkeypatch.setenv("CLOUDLET_VAULT_KEY", TEST_VAULT_KEY)
    first = lab.kubeconfig(valid=600)
    assert "server: https://10.0.20.10:6443" in first
    assert "client-key-data: " in first
    # The cluster's identity is made once and kept: the same CA, a new client certificate.
    again = lab.kubeconfig()
    ca = lambda t: t.split("certificate-authority-data: ")[1].split()[0]  # noqa: E731
    crt = lambda t: t.split("client-certificate-data: ")[1].split()[0]  # noqa: E731
    assert ca(first) == ca(again) and crt(first) != crt(again)
    assert any(p.suffix == ".age" for p in (seed / ".cloudlet" / "vault").iterdir())


def test_backups_run_list_verify_and_restore(seed, tmp_path, monkeypatch):
    with_backup(seed, tmp_path, monkeypatch)
    (seed / "secrets").mkdir(exist_ok=True)
    (seed / "secrets" / "postmaster-password").write_text("pw")
    lab = cloudlet.Lab.load(seed)
    assert lab.apply_sync(lab.plan_sync()).success
    runs = asyncio.run(lab.backup_run())
    assert [(r.class_, r.target, r.error) for r in runs] == [("state", "nas", None)]
    listed = asyncio.run(lab.backup_list())
    assert listed[0].snapshots[0].id == runs[0].snapshot.id
    assert listed[0].snapshots[0].class_ == "state"
    assert "cloudlet:state" in listed[0].snapshots[0].tags
    verified = asyncio.run(lab.backup_verify())
    assert verified[0].app is None
    assert [l.level for l in verified[0].levels] == [0, 1, 2, 3]
    assert all(l.ok for l in verified[0].levels)
    with pytest.raises(cloudlet.DataLossError, match="refusing to restore"):
        asyncio.run(lab.restore("nas"))
    shutil.rmtree(seed / ".cloudlet")
    phases = []
    restored = asyncio.run(lab.restore("nas", on_phase=phases.append))
    assert restored.success
    assert [p.name for p in phases] == ["identity", "router", "infrastructure", "cluster data", "volumes", "databases", "reconcile", "verify"]
    assert restored.windows[0].class_ == "state"
    assert restored.windows[0].app is None


def test_the_process_exits_cleanly_after_awaiting_the_library(tmp_path):
    """A result handed to Python from a runtime thread must not race the interpreter's
    teardown (pyo3-async-runtimes issue 40): without the exit hook, about one exit in six
    crashed. Thirty exits in a row, each after two awaited calls."""
    import subprocess
    import sys

    code = (
        "import asyncio, cloudlet, sys\n"
        "lab = cloudlet.Lab.load('examples/seed', state_dir=sys.argv[1])\n"
        "plan = asyncio.run(lab.plan())\n"
        "asyncio.run(lab.apply(plan, on_event=lambda e: None))\n"
    )
    codes = []
    for i in range(30):
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / f"state{i}")], cwd=ROOT, capture_output=True
        )
        codes.append(out.returncode)
    assert codes == [0] * 30


def test_doctor_reports_drift_and_late_backups(seed, tmp_path, monkeypatch):
    with_backup(seed, tmp_path, monkeypatch)
    lab = cloudlet.Lab.load(seed)
    assert lab.apply_sync(lab.plan_sync()).success
    found = asyncio.run(lab.doctor(timeout=5))
    assert isinstance(found, cloudlet.Diagnosis) and found.format == 1
    by = {(f.check, f.subject): f for f in found.findings}
    assert by[("cluster.drift", "cluster")].status == "ok"
    assert found.drift == {"hypervisor": 0, "router": 0, "pxe": 0, "storage": 0, "cluster": 0}
    never = by[("backup.fresh", "backup state")]
    assert never.status == "fail" and never.fix.startswith("`cloudlet backup run --class state`")
    assert found.status == "fail" and found.counts["fail"] == 1
    (seed / "cluster.yaml").write_text((seed / "cluster.yaml").read_text().replace("replicas: 2", "replicas: 3"))
    asyncio.run(lab.backup_run())
    drifted = asyncio.run(cloudlet.Lab.load(seed).doctor())
    by = {(f.check, f.subject): f for f in drifted.findings}
    assert by[("cluster.drift", "cluster")].status == "warn"
    assert "1 to update" in by[("cluster.drift", "cluster")].evidence
    assert by[("backup.fresh", "backup state")].status == "ok"
    assert drifted.status == "warn" and drifted.drift["cluster"] == 1
    assert json.loads(drifted.to_json())["findings"][0]["check"]


def test_a_file_that_cannot_be_read_is_an_oserror_with_its_name(tmp_path):
    import errno

    missing = tmp_path / "missing.yaml"
    with pytest.raises(OSError) as e:
        cloudlet.Lab.load(missing)
    err = e.value
    assert isinstance(err, cloudlet.IoError) and isinstance(err, cloudlet.CloudletError)
    assert err.errno == errno.ENOENT
    assert err.filename == str(missing)
    assert "missing.yaml" in str(err)


def test_events_come_on_the_loop_thread_and_a_failing_callback_stops_the_apply(seed):
    import threading

    lab = cloudlet.Lab.load(seed)
    plan = lab.plan_sync()
    main = threading.get_ident()
    threads = set()
    seen = []

    def on_event(e):
        threads.add(threading.get_ident())
        seen.append(e.type)

    assert lab.apply_sync(plan, on_event=on_event).success
    assert threads == {main}
    assert seen[0] == "started" and seen[-1] == "finished"

    # A callback that raises: the apply stops starting steps and the caller gets the error.
    other = cloudlet.Lab.load(seed, state_dir=seed / "other-state")
    plan = other.plan_sync()

    def explode(e):
        if e.type == "step_done":
            raise RuntimeError("the caller's own bug")

    with pytest.raises(RuntimeError, match="the caller's own bug"):
        other.apply_sync(plan, on_event=explode, concurrency=1)


def test_apply_events_is_an_async_iterator_ending_with_finished(seed):
    lab = cloudlet.Lab.load(seed)

    async def run():
        plan = await lab.plan()
        kinds = [e.type async for e in lab.apply_events(plan)]
        return plan, kinds

    plan, kinds = asyncio.run(run())
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("step_done") == len(plan.steps)

    async def leave_early():
        import contextlib

        other = cloudlet.Lab.load(seed, state_dir=seed / "early-state")
        plan = await other.plan()
        async with contextlib.aclosing(other.apply_events(plan, concurrency=1)) as events:
            async for e in events:
                if e.type == "step_done":
                    break
        # Closed: the apply was cancelled and has stopped, so its lock is free again.
        again = await other.plan()
        return await other.apply(again)

    assert asyncio.run(leave_early()).success
