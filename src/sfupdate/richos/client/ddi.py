"""A device client for a fleet server's hawkBit Direct Device Integration (DDI) API.

One `DdiClient.cycle()` is one poll of the controller base
(`{server}/{tenant}/controller/v1/{controller-id}`):

1. If an update installed by an earlier cycle waits for its trial boot, the agent's status
   tells how it ended: confirmed (the final feedback is `closed`/`success`) or reverted
   (`closed`/`failure`); still on trial, nothing is sent yet.
2. Config data (vendor, class, running sequence as `sw_version`, rollback floor, the class as
   `hw_boardname`, and `--attribute`s) is sent when the server asks for it or it changed.
3. A cancel action is accepted (`closed`) when its update has not started writing into the
   device, and rejected otherwise.
4. A deployment is carried out: its SFUI artifact is streamed into the agent while it downloads
   (HttpSource: Range resume, bounded retries and timeouts, the exact size the server
   declared, its hash checked before the last bytes are handed over), with `proceeding`
   feedback and progress, then either `proceeding` (installed as a trial: the device must
   reboot, see 1) or `closed`/`failure` with the agent's one-line reason.

The server is untrusted like a mirror: it chooses what the device is offered, but the agent
alone decides (signature, vendor and class, anti-rollback). What the client must remember
across reboots (the action on trial, the config data sent, cancelled actions) is in
`ddi.json` in its state directory. The server's polling interval (`config.polling.sleep`)
is returned by `cycle()` for the caller to wait.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import httpx

from sfupdate.errors import DownloadError, ServerError, SfuError, UsageError
from sfupdate.progress import Progress
from sfupdate.richos.client.download import TransferPolicy, fetch
from sfupdate.richos.client.http import HttpSource
from sfupdate.richos.client.update import DeviceStatus, Installed

MAX_REPLY: Final = 1024 * 1024  # a DDI answer is a few hundred bytes of JSON
MIN_SLEEP, MAX_SLEEP = 1.0, 24 * 3600.0  # the server's polling interval is clamped to these
STATE_FILE: Final = "ddi.json"
REMEMBERED_CANCELS: Final = 64
HASHES: Final = ("sha256", "sha1")  # checked in this order of preference, when declared
_SLEEP_RE: Final = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")
_TOKEN_KINDS: Final = {"target": "TargetToken", "gateway": "GatewayToken"}


class _Slot(Protocol):
    @property
    def state(self) -> str: ...


class TrialStatus(DeviceStatus, Protocol):
    """The agent's status as far as the end of a trial shows in it."""

    @property
    def running_slot(self) -> str: ...

    @property
    def trial_slot(self) -> str | None: ...

    @property
    def slots(self) -> Mapping[str, _Slot]: ...


class DdiAgent(Protocol):
    """The agent as the DDI client sees it (sfupdate.formats.ipc.client.AgentClient fits)."""

    def status(self) -> TrialStatus: ...

    def install(self, chunks: Iterable[bytes], size: int | None = None,
                progress: Progress | None = None) -> Installed: ...


@dataclass(frozen=True)
class DdiConfig:
    """Where the device is registered, and how it proves it (a target or gateway token)."""

    server: str
    tenant: str
    controller_id: str
    token: str | None = None
    token_kind: str = "target"
    attributes: Mapping[str, str] | None = None  # extra config data (e.g. hw_revision)

    @property
    def base(self) -> str:
        return f"{self.server.rstrip('/')}/{self.tenant}/controller/v1/{self.controller_id}"


@dataclass(frozen=True)
class Cycle:
    """What one poll did. `sleep`: the server's polling interval, in seconds."""

    sleep: float
    installed: Installed | None = None  # a new trial, waiting for a reboot
    final: str | None = None  # "success" or "failure": the trial's end was reported
    message: str | None = None  # what happened, for the log
    error: SfuError | None = None  # the install the server asked for failed (reported)
    idle: bool = False  # nothing new: no deployment, or a trial still waiting


class DdiClient:
    def __init__(self, config: DdiConfig, agent: DdiAgent, state_dir: Path,
                 policy: TransferPolicy | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._:-]{1,255}", config.controller_id):
            raise UsageError(f"controller id {config.controller_id!r}: use letters, digits "
                             "and . _ : - (at most 255)")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,255}", config.tenant):
            raise UsageError(f"tenant {config.tenant!r}: use letters, digits and . _ -")
        if not config.server.startswith(("http://", "https://")):
            raise UsageError(f"{config.server!r}: the DDI server must be an http(s):// URL")
        if config.token_kind not in _TOKEN_KINDS:
            raise UsageError(f"token kind {config.token_kind!r}: target or gateway")
        self.config, self.agent = config, agent
        self.policy = policy or TransferPolicy()
        self.log = log or (lambda _line: None)
        self.state = _State(state_dir / STATE_FILE)
        self._headers = {"Accept": "application/hal+json, application/json"}
        if config.token:
            self._headers["Authorization"] = f"{_TOKEN_KINDS[config.token_kind]} {config.token}"
        timeout = httpx.Timeout(self.policy.read_timeout, connect=self.policy.connect_timeout)
        self._http = httpx.Client(timeout=timeout, headers={**self._headers,
                                                            "User-Agent": "sfu-client"})

    def close(self) -> None:
        self._http.close()

    # --- one poll -----------------------------------------------------------------------------

    def cycle(self, progress_feedback: bool = True) -> Cycle:
        status = self.agent.status()
        final, waiting = self._settle(status) if self.state.pending else (None, None)
        reply = self._request("GET", self.config.base)
        sleep = _sleep(reply)
        links = _links(reply)
        if "configData" in links or self.state.config != self._config_data(status):
            self._send_config(status)
        if "cancelAction" in links:
            self._cancel(links["cancelAction"])
        if "deploymentBase" in links:
            outcome = self._deploy(links["deploymentBase"], progress_feedback)
            return Cycle(sleep, outcome.installed, final, outcome.message, outcome.error,
                         outcome.idle)
        if final:
            return Cycle(sleep, final=final)
        return Cycle(sleep, message=waiting or "no deployment for this device", idle=True)

    # --- trial end ----------------------------------------------------------------------------

    def _settle(self, status: TrialStatus) -> tuple[str | None, str | None]:
        """The final feedback of the update on trial, once the device has decided:
        ("success" or "failure", None), or (None, what it waits for)."""
        pending = self.state.pending
        assert pending is not None
        slot, sequence, action = pending["slot"], pending["sequence"], pending["action"]
        state = status.slots[slot].state if slot in status.slots else "unknown"
        if state == "trial" and status.trial_slot == slot:
            return None, (f"sequence {sequence} on trial in slot {slot}: "
                          + ("waiting for its confirmation" if status.running_slot == slot
                             else "waiting for a reboot into it"))
        if state == "confirmed" and status.running_slot == slot and \
                status.running_sequence == sequence:
            result, details = "success", f"sequence {sequence} confirmed in slot {slot}"
        else:
            result = "failure"
            details = (f"the trial of sequence {sequence} in slot {slot} was reverted (slot "
                       f"now {state}); the device runs sequence {status.running_sequence}")
        self._feedback(action, "closed", result, [details])
        self.state.update(pending=None)
        self.log(f"action {action}: reported {result}: {details}")
        return result, None

    # --- config data --------------------------------------------------------------------------

    def _config_data(self, status: TrialStatus) -> dict[str, str]:
        return {"vendor_id": status.vendor_id, "class_id": status.class_id,
                "hw_boardname": status.class_id,
                "sw_version": str(status.running_sequence),
                "running_sequence": str(status.running_sequence),
                "rollback_floor": str(status.rollback_floor),
                "client": "sfupdate", **(self.config.attributes or {})}

    def _send_config(self, status: TrialStatus) -> None:
        data = self._config_data(status)
        self._request("PUT", f"{self.config.base}/configData",
                      {"mode": "merge", "data": data})
        self.state.update(config=data)

    # --- cancel -------------------------------------------------------------------------------

    def _cancel(self, href: str) -> None:
        reply = self._request("GET", href)
        cancel_id, stop = reply.get("id"), (reply.get("cancelAction") or {}).get("stopId")
        if not isinstance(cancel_id, str | int) or not isinstance(stop, str | int):
            raise ServerError(f"{href}: not a DDI cancel action")
        url = f"{self.config.base}/cancelAction/{cancel_id}/feedback"
        pending = self.state.pending
        if pending is not None and pending["action"] == str(stop):
            self._post_feedback(url, cancel_id, "rejected", "success",
                                [f"action {stop} is already written into slot "
                                 f"{pending['slot']}; it can no longer be cancelled"])
            self.log(f"cancel of action {stop} rejected: already installed")
            return
        self._post_feedback(url, cancel_id, "closed", "success",
                            [f"action {stop} cancelled before it was installed"])
        self.state.update(cancelled=[*self.state.cancelled, str(stop)][-REMEMBERED_CANCELS:])
        self.log(f"action {stop} cancelled by the server")

    # --- deployment ---------------------------------------------------------------------------

    def _deploy(self, href: str, progress_feedback: bool) -> Cycle:
        reply = self._request("GET", href)
        action = reply.get("id")
        deployment = reply.get("deployment")
        if not isinstance(action, str | int) or not isinstance(deployment, dict):
            raise ServerError(f"{href}: not a DDI deployment")
        action = str(action)
        pending = self.state.pending
        if pending is not None and pending["action"] == action:
            return Cycle(0, message=f"action {action} is installed and waits for its trial",
                         idle=True)
        if action in self.state.cancelled:
            return Cycle(0, message=f"action {action} was cancelled; not installed", idle=True)
        try:
            artifact = _artifact(deployment)
        except ServerError as exc:
            self._feedback(action, "closed", "failure", [str(exc)])
            return Cycle(0, error=exc, message=str(exc))
        self._feedback(action, "proceeding", "none",
                       [f"downloading {artifact.name} ({artifact.size} bytes) into the agent"])
        try:
            installed = self.agent.install(self._stream(artifact), artifact.size,
                                           self._progress(action) if progress_feedback
                                           else None)
        except SfuError as exc:
            reason = f"not installed: {exc}"
            self._feedback(action, "closed", "failure", [reason])
            self.log(f"action {action}: {reason}")
            return Cycle(0, error=exc, message=reason)
        self.state.update(pending={"action": action, "slot": installed.slot,
                                   "sequence": installed.sequence, "digest": installed.digest})
        message = (f"installed sequence {installed.sequence} into slot {installed.slot}; "
                   "reboot to try it")
        self._feedback(action, "proceeding", "none", [message])
        return Cycle(0, installed, message=message)

    def _stream(self, artifact: _Artifact) -> Iterator[bytes]:
        """The artifact's bytes; the last chunk only after its declared hash matches."""
        base, _, name = artifact.url.rpartition("/")
        source = HttpSource(base, self.policy.connect_timeout, self.policy.read_timeout,
                            self._headers)
        hasher = hashlib.new(artifact.hash_name) if artifact.hash_name else None
        pending: bytes | None = None
        try:
            for chunk in fetch(source, name, artifact.size, self.policy, self.log):
                if hasher:
                    hasher.update(chunk)
                if pending is not None:
                    yield pending
                pending = chunk
        finally:
            source.close()
        if hasher and hasher.hexdigest() != artifact.hash_value:
            raise DownloadError(f"{artifact.url}: the bytes served do not match the "
                                f"{artifact.hash_name} the server declares; not installed")
        if pending is not None:
            yield pending

    def _progress(self, action: str) -> Callable[[int, int], None]:
        """Feedback every 10 %: DDI progress, and a "Downloaded N%" line (gooseBit's)."""
        last = [-1]

        def report(done: int, total: int) -> None:
            tenth = done * 10 // total if total else 10
            if tenth == last[0]:
                return
            last[0] = tenth
            try:
                self._feedback(action, "proceeding", "none", [f"Downloaded {tenth * 10}%"],
                               progress=(tenth * 10, 100))
            except ServerError as exc:  # progress is informative: the install goes on
                self.log(f"progress feedback not sent: {exc}")

        return report

    # --- HTTP ---------------------------------------------------------------------------------

    def _feedback(self, action: str, execution: str, finished: str, details: list[str],
                  progress: tuple[int, int] | None = None) -> None:
        self._post_feedback(f"{self.config.base}/deploymentBase/{action}/feedback", action,
                            execution, finished, details, progress)

    def _post_feedback(self, url: str, ident: str | int, execution: str, finished: str,
                       details: list[str], progress: tuple[int, int] | None = None) -> None:
        result: dict[str, Any] = {"finished": finished}
        if progress is not None:
            result["progress"] = {"cnt": progress[0], "of": progress[1]}
        self._request("POST", url, {
            "id": str(ident),
            "time": time.strftime("%Y%m%dT%H%M%S", time.gmtime()),
            "status": {"execution": execution, "result": result,
                       "details": [d[:1000] for d in details]}})

    def _request(self, method: str, url: str, body: Any = None) -> dict[str, Any]:
        try:
            with self._http.stream(method, url, json=body) as response:
                data = b""
                for piece in response.iter_bytes():
                    data += piece
                    if len(data) > MAX_REPLY:
                        raise ServerError(f"{method} {url}: answer larger than {MAX_REPLY} "
                                          "bytes; not DDI")
        except httpx.TimeoutException:
            raise ServerError(f"{method} {url}: no answer within "
                              f"{self.policy.read_timeout:g} s") from None
        except httpx.TransportError as exc:
            raise ServerError(f"{method} {url}: cannot reach the server ({exc})") from None
        code = response.status_code
        if code in (401, 403):
            raise ServerError(f"{method} {url}: the server refuses this device's credentials "
                              f"(HTTP {code})")
        if code == 404:
            raise ServerError(f"{method} {url}: no such tenant, controller or action (HTTP 404)")
        if not 200 <= code < 300:
            raise ServerError(f"{method} {url}: server answered HTTP {code}")
        if not data.strip() or data.strip() == b"null":
            return {}
        try:
            reply = json.loads(data)
        except ValueError:
            raise ServerError(f"{method} {url}: the answer is not JSON") from None
        if not isinstance(reply, dict):
            raise ServerError(f"{method} {url}: the answer is not a JSON object")
        return reply


@dataclass(frozen=True)
class _Artifact:
    name: str
    size: int
    url: str
    hash_name: str | None
    hash_value: str | None


def _artifact(deployment: Mapping[str, Any]) -> _Artifact:
    """The deployment's SFUI: the artifact named *.sfui, or its only artifact."""
    chunks = deployment.get("chunks")
    if not isinstance(chunks, list):
        raise ServerError("the deployment has no chunks")
    artifacts = [a for c in chunks if isinstance(c, dict)
                 for a in (c.get("artifacts") or []) if isinstance(a, dict)]
    sfuis = [a for a in artifacts if str(a.get("filename", "")).endswith(".sfui")]
    chosen = sfuis if sfuis else artifacts
    if len(chosen) != 1:
        raise ServerError(f"the deployment has {len(artifacts)} artifacts: expected one SFUI "
                          "(*.sfui, or a single artifact)")
    a = chosen[0]
    links = a.get("_links")
    links = links if isinstance(links, dict) else {}
    link = links.get("download") or links.get("download-http") or {}
    url, size = link.get("href") if isinstance(link, dict) else None, a.get("size")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ServerError("the artifact has no http(s) download link")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ServerError("the artifact declares no size")
    hashes = a.get("hashes")
    hashes = hashes if isinstance(hashes, dict) else {}
    for name in HASHES:
        value = hashes.get(name)
        if isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]+", value):
            return _Artifact(str(a.get("filename")), size, url, name, value.lower())
    return _Artifact(str(a.get("filename")), size, url, None, None)


def _links(reply: Mapping[str, Any]) -> dict[str, str]:
    links = reply.get("_links")
    if not isinstance(links, dict):
        return {}
    return {name: link["href"] for name, link in links.items()
            if isinstance(link, dict) and isinstance(link.get("href"), str)}


def _sleep(reply: Mapping[str, Any]) -> float:
    """config.polling.sleep ("HH:MM:SS"), clamped to [MIN_SLEEP, MAX_SLEEP]."""
    try:
        text = reply["config"]["polling"]["sleep"]
        h, m, s = (int(g) for g in _SLEEP_RE.fullmatch(text).groups())  # type: ignore[union-attr]
    except (KeyError, TypeError, AttributeError):
        raise ServerError("the controller base gives no polling interval "
                          "(config.polling.sleep); not DDI") from None
    return min(max(h * 3600 + m * 60 + s, MIN_SLEEP), MAX_SLEEP)


class _State:
    """ddi.json: the action on trial, the config data last sent, cancelled actions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        try:
            loaded = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: unreadable DDI state ({exc})") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{path}: unreadable DDI state (not an object)")
        self.data = loaded

    @property
    def pending(self) -> dict[str, Any] | None:
        value = self.data.get("pending")
        return value if isinstance(value, dict) else None

    @property
    def config(self) -> dict[str, str] | None:
        value = self.data.get("config")
        return value if isinstance(value, dict) else None

    @property
    def cancelled(self) -> list[str]:
        value = self.data.get("cancelled")
        return [str(v) for v in value] if isinstance(value, list) else []

    def update(self, **changes: Any) -> None:
        self.data.update(changes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)
