"""The typed outcome of one sandboxed run, and the traceback parser that fills it."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Status = Literal["ok", "error", "timeout", "memory", "killed", "invalid"]
STATUSES: tuple[str, ...] = ("ok", "error", "timeout", "memory", "killed", "invalid")

_TRACEBACK_HEADER = "Traceback (most recent call last):"
# the exception line ends a traceback: the first unindented line after the header ("pkg.mod.Error: message")
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
MAX_TRACEBACK_CHARS = 8000


@dataclass
class ExecutionResult:
    """What happened when a solution ran. JSON-serialisable (`to_dict` / `from_dict`).

    status: ok (exit 0 and ./submission.csv written) | error (non-zero exit) | timeout (wall-clock or CPU-time
    limit) | memory (memory limit, or the solution died of MemoryError) | killed (a signal the sandbox did not
    send, e.g. SIGSEGV) | invalid (exit 0 but no regular ./submission.csv file).
    exit_code: the process exit code; -N when killed by signal N (the subprocess convention); None if unknown.
    peak_memory_mb: the larger of the biggest single process's max RSS and the sampled peak of the summed RSS
    of the solution's process tree (sandbox supervisors excluded).
    stdout_tail / stderr_tail: the last characters of each stream; the full streams, capped at
    `max_output_bytes` each, are in `<workdir>/sandbox.stdout.log` and `sandbox.stderr.log`.
    traceback: the last Python traceback found in stderr; exc_type its exception class as printed.
    isolation: the backend that ran it: "bwrap" (namespaced jail) or "none" (plain subprocess, weaker).
    message: one human sentence explaining the status.
    """

    status: Status
    exit_code: int | None
    duration_s: float
    peak_memory_mb: float
    stdout_tail: str
    stderr_tail: str
    traceback: str | None
    workdir: str
    isolation: str
    message: str = ""
    exc_type: str | None = None
    cpu_time_s: float | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    output_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def parse_traceback(stderr: str) -> tuple[str | None, str | None]:
    """(traceback text, exception type) of the LAST Python traceback in `stderr`, or (None, None).

    With chained exceptions ("During handling of the above exception...") the last block is the one that
    ended the program. Text after the exception line that is not part of its message (later log lines) is cut.
    """
    start = stderr.rfind(_TRACEBACK_HEADER)
    if start < 0:
        return None, None
    lines = stderr[start:].splitlines()
    exc_type = None
    end = len(lines)
    for i, line in enumerate(lines[1:], start=1):
        if not line or line[0].isspace():
            continue
        match = _EXC_LINE.match(line)
        if match:
            exc_type = match.group(1)
            # a multi-line message continues until a blank line; keep it, drop what follows
            end = i + 1
            while end < len(lines) and lines[end].strip():
                end += 1
        break
    text = "\n".join(lines[:end]).rstrip()
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return text, exc_type
