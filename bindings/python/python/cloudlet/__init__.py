"""cloudlet for Python: the Rust library, awaitable, with typed frozen records.

    import asyncio, cloudlet
    lab = cloudlet.Lab.load("examples/seed")
    report = lab.validate()              # every diagnostic, with positions
    plan = asyncio.run(lab.plan())       # field-level changes
    result = asyncio.run(lab.apply(plan, on_event=print))

Every method that touches infrastructure is a coroutine; ``Lab.plan_sync`` and
``Lab.apply_sync`` run them for scripts without an event loop. Nothing here decides
anything: records are converted from the library's JSON, errors are mapped to the
exception hierarchy rooted at :class:`CloudletError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json as _json
import os as _os
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Sequence, TypeVar, Union

from . import _native

import atexit as _atexit

# Let the runtime's last tasks leave the interpreter before it is torn down.
_atexit.register(_native._quiesce)

__version__: str = _native.__version__

__all__ = [
    "ApplyReport",
    "BackupRun",
    "Level",
    "LossWindow",
    "RestorePhase",
    "Restored",
    "Snapshot",
    "TargetSnapshots",
    "Verified",
    "BackendError",
    "BootError",
    "BootEvent",
    "BootService",
    "InstallState",
    "PxeMachine",
    "Cancel",
    "CloudletError",
    "Diagnostic",
    "Event",
    "FieldChange",
    "DataLossError",
    "Finding",
    "DoctorFinding",
    "Diagnosis",
    "VolumeStatus",
    "HeldChange",
    "Lab",
    "Owned",
    "Position",
    "LabError",
    "LockedError",
    "Location",
    "Plan",
    "StalePlanError",
    "Step",
    "Summary",
    "schema",
    "validate",
]


# --- errors -----------------------------------------------------------------------------


class CloudletError(Exception):
    """Any error of the cloudlet library. ``kind`` names the class of problem."""

    kind = "other"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LabError(CloudletError, ValueError):
    """The lab files do not load or do not validate. ``diagnostics`` has every problem with
    its file, line and column; ``file``/``line``/``column`` are those of the first."""

    kind = "lab"

    def __init__(self, message: str, diagnostics: list["Diagnostic"]) -> None:
        # The message is the library's: the first positioned problem and how many more.
        first = next((d for d in diagnostics if d.location), None)
        super().__init__(message)
        self.diagnostics = diagnostics
        loc = first.location if first else None
        self.file = loc.file if loc else None
        self.line = loc.line if loc else None
        self.column = loc.column if loc else None


class BackendError(CloudletError):
    """A backend failed while observing or applying (the message has the cause chain)."""

    kind = "backend"


class StalePlanError(CloudletError):
    """A plan no longer matches the lab or the infrastructure: plan again."""

    kind = "stale_plan"


class DataLossError(CloudletError):
    """The plan deletes data the lab let go (``retain: false``) and the apply was not allowed
    to (``allow_data_loss=True``); nothing was changed. ``ids`` are the steps that would."""

    kind = "data_loss"

    def __init__(self, message: str, ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.ids = ids


class LockedError(CloudletError):
    """Another apply holds the lab's lock."""

    kind = "locked"


class RenderError(CloudletError):
    """Rendering could not write a file."""

    kind = "render"


class IoError(CloudletError, OSError):
    """A file could not be read or written: an :class:`OSError`, with ``filename`` (the file
    it is about) and ``errno``/``strerror`` (the system's error, such as ``errno.ENOENT``)
    where the failure has them."""

    kind = "io"

    def __init__(self, message: str, errno: Optional[int] = None, filename: Optional[str] = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.strerror = _os.strerror(errno) if errno is not None else message
        self.filename = filename

    def __str__(self) -> str:
        return self.message


class BootError(CloudletError):
    """The network boot service could not start (address, ports, boot files, passwords),
    or its install state could not be read or written."""

    kind = "boot"


_KINDS = {
    c.kind: c for c in (BackendError, StalePlanError, DataLossError, LockedError, RenderError, IoError, BootError)
}


def _raise(e: Exception) -> Any:
    kind, message, payload = e.args
    if kind == "lab":
        # A lab that says too little for what was asked has no positioned diagnostics.
        found = _json.loads(payload) or []
        raise LabError(message, [Diagnostic._from(d) for d in found]) from None
    if kind == "data_loss":
        raise DataLossError(message, tuple(_json.loads(payload) or [])) from None
    if kind == "io":
        info = _json.loads(payload) or {}
        raise IoError(message, info.get("errno"), info.get("path")) from None
    raise _KINDS.get(kind, CloudletError)(message) from None


_T = TypeVar("_T")


async def _call(coro: Awaitable[_T]) -> _T:
    try:
        return await coro
    except _native.NativeError as e:
        return _raise(e)


# --- records ------------------------------------------------------------------------------


class _Record:
    def to_dict(self) -> dict[str, Any]:
        """The record as plain dicts and lists."""
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    def to_json(self) -> str:
        """The record as JSON text."""
        return _json.dumps(self.to_dict())


@dataclass(frozen=True)
class Location(_Record):
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Position(_Record):
    line: int
    column: int


@dataclass(frozen=True)
class Diagnostic(_Record):
    """A finding; ``location`` to ``end`` is the range of the token it points at (``end``'s
    column is the one just after it)."""

    severity: str
    code: str
    message: str
    location: Optional[Location] = None
    path: Optional[str] = None
    help: Optional[str] = None
    end: Optional[Position] = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    @staticmethod
    def _from(d: dict[str, Any]) -> "Diagnostic":
        loc = d.get("location")
        return Diagnostic(
            severity=d["severity"],
            code=d["code"],
            message=d["message"],
            location=Location(str(loc["file"]), loc["line"], loc["column"]) if loc else None,
            path=d.get("path"),
            help=d.get("help"),
            end=Position(d["end"]["line"], d["end"]["column"]) if d.get("end") else None,
        )


@dataclass(frozen=True)
class FieldChange(_Record):
    path: str
    before: Any = None
    after: Any = None


@dataclass(frozen=True)
class Step(_Record):
    id: str
    action: str
    changes: tuple[FieldChange, ...] = ()
    after: tuple[str, ...] = ()
    data_loss: bool = False


@dataclass(frozen=True)
class Summary(_Record):
    create: int = 0
    update: int = 0
    delete: int = 0
    unchanged: int = 0
    held: int = 0
    kept: int = 0
    data_loss: int = 0

    @property
    def has_changes(self) -> bool:
        return self.create + self.update + self.delete > 0


@dataclass(frozen=True)
class Owned(_Record):
    """One resource cloudlet owns: its id, the backend holding it, whether the lab still
    describes it, whether it holds data the lab retains."""

    id: str
    backend: str
    in_lab: bool
    retains_data: bool


@dataclass(frozen=True)
class HeldChange(_Record):
    id: str
    by: str
    path: str
    before: Any = None
    after: Any = None


@dataclass(frozen=True)
class Plan(_Record):
    """A plan. The lab's name and the summary are there at once; the steps, held changes and
    kept ids are read from the native plan when first asked for (a plan of thousands of
    resources crosses into Python only if it is looked at)."""

    lab: str
    summary: Summary
    _native: Any = field(default=None, repr=False, compare=False)
    _text: str = field(default="", repr=False, compare=False)

    @staticmethod
    def _of(native: Any) -> "Plan":
        head = _json.loads(native.head())
        return Plan(lab=head["lab"], summary=Summary(**head["summary"]), _native=native)

    @staticmethod
    def _from(text: str) -> "Plan":
        p = _json.loads(text)
        return Plan(lab=p["lab"], summary=Summary(**p["summary"]), _text=text)

    @staticmethod
    def from_json(text: str) -> "Plan":
        """A plan saved earlier with :meth:`to_json` (or by ``cloudlet plan --out``). Applying
        it checks first that the infrastructure is still what it was planned from, and raises
        :class:`StalePlanError` otherwise."""
        return Plan._from(text)

    @functools.cached_property
    def _parsed(self) -> dict[str, Any]:
        return _json.loads(self.to_json())

    @functools.cached_property
    def steps(self) -> tuple[Step, ...]:
        return tuple(
            Step(
                id=s["id"],
                action=s["action"],
                changes=tuple(FieldChange(**c) for c in s.get("changes", [])),
                after=tuple(s.get("after", [])),
                data_loss=s.get("data_loss", False),
            )
            for s in self._parsed["steps"]
        )

    @functools.cached_property
    def held(self) -> tuple[HeldChange, ...]:
        return tuple(
            HeldChange(id=h["id"], by=h["by"], path=h["path"], before=h.get("before"), after=h.get("after"))
            for h in self._parsed.get("held", [])
        )

    @functools.cached_property
    def kept(self) -> tuple[str, ...]:
        return tuple(self._parsed.get("kept", []))

    @functools.cached_property
    def destroy(self) -> bool:
        """The plan removes everything the lab owns."""
        return bool(self._parsed.get("destroy", False))

    @functools.cached_property
    def targets(self) -> tuple[str, ...]:
        """The targets the plan was narrowed to (empty: the whole lab)."""
        return tuple(self._parsed.get("targets", []))

    def to_dict(self) -> dict[str, Any]:
        return _json.loads(self.to_json())

    def to_json(self) -> str:
        """The plan as JSON: the same text the Rust library and the CLI write."""
        if not self._text and self._native is not None:
            object.__setattr__(self, "_text", self._native.to_json())
        return self._text

    def _handle(self) -> Any:
        """What the native apply takes: the native plan, or its JSON."""
        return self._native if self._native is not None else self._text


@dataclass(frozen=True)
class Event(_Record):
    """Progress of an apply: ``type`` is started, step_started, step_done, step_failed,
    step_skipped, finished or resumed; the other fields depend on it."""

    type: str
    id: Optional[str] = None
    action: Optional[str] = None
    data: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _from(text: str) -> "Event":
        d = _json.loads(text)
        return Event(type=d.pop("type"), id=d.pop("id", None), action=d.pop("action", None), data=d)


@dataclass(frozen=True)
class ApplyReport(_Record):
    apply: str
    done: Summary
    failed: tuple[tuple[str, str], ...]
    skipped: tuple[str, ...]
    cancelled: bool

    @property
    def success(self) -> bool:
        return not self.failed and not self.skipped and not self.cancelled

    @staticmethod
    def _from(text: str) -> "ApplyReport":
        r = _json.loads(text)
        return ApplyReport(
            apply=r["apply"],
            done=Summary(**r["done"]),
            failed=tuple((i, m) for i, m in r["failed"]),
            skipped=tuple(r["skipped"]),
            cancelled=r["cancelled"],
        )


@dataclass(frozen=True)
class Finding(_Record):
    id: str
    state: str
    message: str


@dataclass(frozen=True)
class DoctorFinding(_Record):
    """One finding of ``Lab.doctor``: a check's stable name, what it looked at, ``ok`` /
    ``warn`` / ``fail``, the evidence and the fix (``None`` when all is well)."""

    check: str
    domain: Optional[str]
    subject: str
    status: str
    evidence: str
    fix: Optional[str]


@dataclass(frozen=True)
class Diagnosis(_Record):
    """What ``Lab.doctor`` found: the worst status, counts per status, seconds taken, drift
    per domain and every finding."""

    format: int
    lab: str
    status: str
    counts: dict[str, int]
    seconds: float
    drift: dict[str, int]
    findings: tuple[DoctorFinding, ...]

    @staticmethod
    def _from(text: str) -> "Diagnosis":
        d = _json.loads(text)
        return Diagnosis(
            format=d["format"], lab=d["lab"], status=d["status"], counts=dict(d["counts"]),
            seconds=d["seconds"], drift=dict(d["drift"]),
            findings=tuple(
                DoctorFinding(
                    check=f["check"], domain=f["domain"], subject=f["subject"],
                    status=f["status"], evidence=f["evidence"], fix=f.get("fix"),
                )
                for f in d["findings"]
            ),
        )


@dataclass(frozen=True)
class VolumeStatus(_Record):
    """A dataset (or directory) of the lab as the NAS has it."""

    name: str
    path: str
    exported_to: tuple[str, ...]
    used_bytes: Optional[int]
    latest_snapshot: Optional[str]
    retain: bool


@dataclass(frozen=True)
class Snapshot(_Record):
    """A snapshot in a backup repository (restic's format); ``class_`` is cloudlet's class
    (``state``, ``cluster``), empty for one cloudlet did not write."""

    id: str
    time: str
    unix: int
    class_: str
    host: str
    paths: tuple[str, ...]
    files: int
    bytes: int
    tags: tuple[str, ...] = ()

    @staticmethod
    def _from(d: dict[str, Any]) -> "Snapshot":
        return Snapshot(
            id=d["id"], time=d["time"], unix=d["unix"], class_=d["class"], host=d["host"],
            paths=tuple(d["paths"]), files=d["files"], bytes=d["bytes"],
            tags=tuple(d.get("tags", ())),
        )


@dataclass(frozen=True)
class BackupRun(_Record):
    """One class's backup run: its snapshot, or why it failed after its attempts."""

    class_: str
    target: str
    snapshot: Optional[Snapshot]
    error: Optional[str]
    seconds: float
    forgotten: tuple[str, ...]


@dataclass(frozen=True)
class TargetSnapshots(_Record):
    target: str
    repository: str
    snapshots: tuple[Snapshot, ...]


@dataclass(frozen=True)
class Level(_Record):
    """One rung of the verification ladder (0 the job ran ... 3 a restore matches)."""

    level: int
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass(frozen=True)
class Verified(_Record):
    class_: str
    target: str
    levels: tuple[Level, ...]
    app: Optional[str] = None


@dataclass(frozen=True)
class RestorePhase(_Record):
    name: str
    ok: bool
    skipped: bool
    seconds: float
    detail: str


@dataclass(frozen=True)
class LossWindow(_Record):
    """What a restored class can have lost: what was written after its snapshot."""

    class_: str
    snapshot: str
    taken: int
    seconds_before_restore: int
    app: Optional[str] = None


@dataclass(frozen=True)
class Restored(_Record):
    source: str
    started: int
    phases: tuple[RestorePhase, ...]
    windows: tuple[LossWindow, ...]

    @property
    def success(self) -> bool:
        return all(p.ok for p in self.phases)


@dataclass(frozen=True)
class InstallState(_Record):
    """Where a machine's network install is: ``phase`` is discovered, booting, installing,
    installed or failed; ``since`` and the history's ``at`` are Unix seconds."""

    phase: str
    since: int
    boots: int
    ip: Optional[str]
    history: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class PxeMachine(_Record):
    """A machine that installs over the network, and its install state (``None`` until the
    boot service first sees it)."""

    name: str
    mac: str
    profile: str
    state: Optional[InstallState]

    @staticmethod
    def _from(d: dict[str, Any]) -> "PxeMachine":
        st = d.get("state")
        return PxeMachine(
            name=d["name"],
            mac=d["mac"],
            profile=d["profile"],
            state=None
            if st is None
            else InstallState(
                phase=st["phase"], since=st["since"], boots=st["boots"], ip=st.get("ip"), history=tuple(st["history"])
            ),
        )


@dataclass(frozen=True)
class BootEvent(_Record):
    """What the boot service did: ``event`` is dhcp, boot, config, refused or reported;
    ``data`` has the rest (file, answer, via, peer, why, ok, note)."""

    event: str
    machine: str
    data: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _from(text: str) -> "BootEvent":
        d = _json.loads(text)
        return BootEvent(event=d.pop("event"), machine=d.pop("machine"), data=d)


class BootService:
    """A running network boot service (see :meth:`Lab.pxe_serve`); ``async with`` stops it."""

    def __init__(self, native: Any) -> None:
        self._native = native

    @property
    def http_address(self) -> str:
        return self._native.http_address

    @property
    def tftp_address(self) -> str:
        return self._native.tftp_address

    async def stop(self) -> None:
        """Stops the service and waits for it to end."""
        await _call(self._native.stop())

    async def __aenter__(self) -> "BootService":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


# --- the lab ------------------------------------------------------------------------------


class Cancel:
    """Cancels an apply: running steps finish, no new step starts."""

    def __init__(self) -> None:
        self._native = _native.Cancel()

    def cancel(self) -> None:
        self._native.cancel()

    @property
    def cancelled(self) -> bool:
        return self._native.cancelled


Pathish = Union[str, "PathLike[str]"]


class Lab:
    """A loaded lab. Create it with :meth:`Lab.load`."""

    def __init__(self, native: "_native.Lab") -> None:
        self._native = native

    @staticmethod
    def load(path: Pathish, *, state_dir: Optional[Pathish] = None, take_over: bool = False) -> "Lab":
        """Loads a lab file or directory; raises :class:`LabError` with positions."""
        try:
            return Lab(_native.Lab.load(str(path), None if state_dir is None else str(state_dir), take_over))
        except _native.NativeError as e:
            return _raise(e)

    @property
    def name(self) -> str:
        return self._native.name

    def validate(self) -> list[Diagnostic]:
        """Every finding of the whole lab (errors and warnings), with positions. No I/O."""
        return [Diagnostic._from(d) for d in _json.loads(self._native.validate())]

    async def plan(self, *, destroy: bool = False, targets: Sequence[str] = ()) -> Plan:
        """What apply would create, change or delete, field by field. ``destroy`` plans the
        removal of everything the lab owns (retained data kept); ``targets`` (ids as
        ``domain/kind/name``, or ``domain/kind``, ``domain``) narrows the plan to those
        resources and the steps they need."""
        return Plan._of(await _call(self._native.plan(destroy, list(targets))))

    async def owned(self) -> list[Owned]:
        """What cloudlet owns in the lab's backends, found by its markers."""
        return [Owned(**o) for o in _json.loads(await _call(self._native.owned()))]

    async def apply(
        self,
        plan: Plan,
        *,
        on_event: Optional[Callable[[Event], Any]] = None,
        cancel: Optional[Cancel] = None,
        concurrency: Optional[int] = None,
        allow_data_loss: bool = False,
    ) -> ApplyReport:
        """Applies ``plan``. ``on_event`` gets each progress event, in order, on the event
        loop's thread; if it raises, the apply is cancelled (running steps finish, no new one
        starts) and its exception is raised once the apply has stopped. A plan with data-loss
        steps is refused unless ``allow_data_loss``."""
        loop = asyncio.get_running_loop()
        cancel = cancel or Cancel()
        raised: list[Exception] = []

        def deliver(text: str) -> None:
            if on_event is None or raised:
                return
            try:
                on_event(Event._from(text))
            except Exception as e:  # handed back to the caller below
                raised.append(e)
                cancel.cancel()

        def queue(text: str) -> None:
            # The library's threads only queue the event for the loop's thread (an apply
            # abandoned by a loop that has closed has no one to tell).
            if not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(deliver, text)
                except RuntimeError:
                    pass

        cb = None if on_event is None else queue
        text = await _call(self._native.apply(plan._handle(), cb, cancel._native, concurrency, allow_data_loss))
        await asyncio.sleep(0)  # the events queued before the apply ended are delivered first
        if raised:
            raise raised[0]
        return ApplyReport._from(text)

    async def apply_events(
        self,
        plan: Plan,
        *,
        cancel: Optional[Cancel] = None,
        concurrency: Optional[int] = None,
        allow_data_loss: bool = False,
    ) -> AsyncIterator[Event]:
        """Applies ``plan``, yielding each progress event as it happens; the last one is
        ``finished`` with the report. Closing the iterator early (``break`` inside
        ``contextlib.aclosing``) cancels the apply (running steps finish) and waits for it; the
        apply's error is raised from the iterator."""
        cancel = cancel or Cancel()
        queue: asyncio.Queue[Optional[Event]] = asyncio.Queue()
        task = asyncio.ensure_future(
            self.apply(
                plan,
                on_event=queue.put_nowait,
                cancel=cancel,
                concurrency=concurrency,
                allow_data_loss=allow_data_loss,
            )
        )
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            await task
        finally:
            if not task.done():
                cancel.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def render(self, directory: Pathish) -> int:
        """Writes every resource (and its artifacts) under ``directory``."""
        return await _call(self._native.render(str(directory)))

    async def cluster_health(self, wait: Optional[float] = None) -> list[Finding]:
        """Health of the cluster's objects (rollouts, addresses, endpoints, claims)."""
        text = await _call(self._native.cluster_health(wait))
        return [Finding(id=f["id"], state=f["state"], message=f["message"]) for f in _json.loads(text)]

    async def doctor(self, timeout: float = 10.0, concurrency: int = 32) -> Diagnosis:
        """Checks the running lab: every backend reached and observed, drift, the cluster's
        nodes, stuck pods, objects, addresses and certificates, installs, backups' age — all at
        once, each check within ``timeout`` seconds. Never raises for what it finds."""
        return Diagnosis._from(await _call(self._native.doctor(timeout, concurrency)))

    async def backup_run(self, classes: Optional[list[str]] = None) -> list[BackupRun]:
        """Backs up each class the lab declares (or those named) now."""
        text = await _call(self._native.backup_run(list(classes or [])))
        return [
            BackupRun(
                class_=r["class"], target=r["target"],
                snapshot=None if r["snapshot"] is None else Snapshot._from(r["snapshot"]),
                error=r["error"], seconds=r["seconds"], forgotten=tuple(r["forgotten"]),
            )
            for r in _json.loads(text)
        ]

    async def backup_list(self) -> list[TargetSnapshots]:
        """The snapshots each backup target holds."""
        text = await _call(self._native.backup_list())
        return [
            TargetSnapshots(target=t["target"], repository=t["repository"], snapshots=tuple(Snapshot._from(s) for s in t["snapshots"]))
            for t in _json.loads(text)
        ]

    async def backup_verify(self, level: int = 3) -> list[Verified]:
        """Each class's climb up the verification ladder to ``level`` (0-3)."""
        text = await _call(self._native.backup_verify(level))
        return [
            Verified(class_=v["class"], target=v["target"], levels=tuple(Level(**l) for l in v["levels"]),
                     app=v.get("app"))
            for v in _json.loads(text)
        ]

    async def restore(
        self,
        source: str,
        *,
        force: bool = False,
        resume: bool = False,
        on_phase: Optional[Callable[[RestorePhase], Any]] = None,
    ) -> Restored:
        """Rebuilds the lab from the backup target ``source``; ``on_phase`` gets each phase as
        it ends."""
        cb = None if on_phase is None else (lambda text: on_phase(RestorePhase(**_json.loads(text))))
        d = _json.loads(await _call(self._native.restore(source, force, resume, cb)))
        return Restored(
            source=d["from"], started=d["started"],
            phases=tuple(RestorePhase(**p) for p in d["phases"]),
            windows=tuple(
                LossWindow(class_=w["class"], snapshot=w["snapshot"], taken=w["taken"],
                           seconds_before_restore=w["seconds_before_restore"],
                           app=w.get("app"))
                for w in d["windows"]
            ),
        )

    async def storage_status(self) -> list[VolumeStatus]:
        """The lab's volumes on the NAS: path, clients, usage, newest snapshot (empty unless
        the storage target is a NAS)."""
        text = await _call(self._native.storage_status())
        return [
            VolumeStatus(
                name=v["name"],
                path=v["path"],
                exported_to=tuple(v["exported_to"]),
                used_bytes=v.get("used_bytes"),
                latest_snapshot=v.get("latest_snapshot"),
                retain=v["retain"],
            )
            for v in _json.loads(text)
        ]

    async def pxe_serve(
        self,
        *,
        address: Optional[str] = None,
        interface: Optional[str] = None,
        root: Optional[Pathish] = None,
        proxy_dhcp: Optional[bool] = None,
        loader: Optional[str] = None,
        http_port: Optional[int] = None,
        tftp_port: Optional[int] = None,
        on_event: Optional[Callable[[BootEvent], Any]] = None,
    ) -> BootService:
        """Starts the lab's network boot service (proxyDHCP, TFTP, HTTP) in the background;
        options left out come from the lab's ``pxe.serve``. ``on_event`` gets
        :class:`BootEvent` records (from the library's threads)."""
        options = {
            k: v
            for k, v in {
                "address": address,
                "interface": interface,
                "root": None if root is None else str(root),
                "proxy_dhcp": proxy_dhcp,
                "loader": loader,
                "http_port": http_port,
                "tftp_port": tftp_port,
            }.items()
            if v is not None
        }
        cb = None if on_event is None else (lambda text: on_event(BootEvent._from(text)))
        return BootService(await _call(self._native.pxe_serve(_json.dumps(options), cb)))

    def pxe_status(self) -> list[PxeMachine]:
        """Each machine that installs over the network, with its install state."""
        try:
            return [PxeMachine._from(m) for m in _json.loads(self._native.pxe_status())]
        except _native.NativeError as e:
            return _raise(e)

    def pxe_reinstall(self, machine: str) -> None:
        """Installs ``machine`` again at its next network boot."""
        try:
            self._native.pxe_reinstall(machine)
        except _native.NativeError as e:
            _raise(e)

    def kubeconfig(self, valid: float = 3600.0) -> str:
        """An admin kubeconfig for the cluster cloudlet makes (``targets.cluster.kind:
        kubeadm``): a client certificate from the cluster CA valid for ``valid`` seconds (at
        most a day), issued now and written nowhere. It holds a private key. The vault key is
        read from ``CLOUDLET_VAULT_KEY`` or the file ``CLOUDLET_VAULT_KEY_FILE`` names."""
        try:
            return self._native.kubeconfig(valid)
        except _native.NativeError as e:
            return _raise(e)

    def plan_sync(self, *, destroy: bool = False, targets: Sequence[str] = ()) -> Plan:
        """:meth:`plan` for code without an event loop."""
        return asyncio.run(self.plan(destroy=destroy, targets=targets))

    def apply_sync(
        self,
        plan: Plan,
        *,
        on_event: Optional[Callable[[Event], Any]] = None,
        cancel: Optional[Cancel] = None,
        concurrency: Optional[int] = None,
        allow_data_loss: bool = False,
    ) -> ApplyReport:
        """:meth:`apply` for code without an event loop (keyword arguments as :meth:`apply`'s,
        so a checker catches a misspelt one)."""
        return asyncio.run(
            self.apply(
                plan,
                on_event=on_event,
                cancel=cancel,
                concurrency=concurrency,
                allow_data_loss=allow_data_loss,
            )
        )


def validate(path: Pathish) -> list[dict[str, Any]]:
    """The diagnostics of the lab at ``path`` as plain dicts (``Lab.load(path).validate()``
    gives records). Raises :class:`LabError` when the files do not load."""
    try:
        return _json.loads(_native.validate(str(path)))
    except _native.NativeError as e:
        return _raise(e)


def schema() -> dict[str, Any]:
    """The JSON Schema of the lab format."""
    return _json.loads(_native.schema())
