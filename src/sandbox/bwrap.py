"""The bubblewrap jail: which host paths a sandboxed run may see, as a bwrap command line.

The jail's root is an empty tmpfs. Into it go, read-only, the system paths (/usr and its /bin /lib /sbin
symlinks), a handful of /etc files the dynamic linker and libraries need, the CPU topology in /sys, and the
interpreter's own prefixes
(the venv and the base installation it was made from); read-write, the run's work folder and private /tmp and
/dev/shm folders. Everything else of the host — the repository, ~/.cache, the shared data, the prepared tasks
with their private answers — simply does not exist inside. New pid, network, ipc, uts and cgroup namespaces;
the tree dies with bwrap (--die-with-parent) and the pid namespace dies with its init.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# what the dynamic linker, locale/time code, fontconfig (matplotlib) and BLAS alternatives read; nothing secret
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/fonts",
    "/etc/mime.types",
)


CPU_INFO = "/sys/devices/system/cpu"


def find_bwrap(bwrap: str) -> str | None:
    """The absolute path of the bwrap executable named `bwrap` (a name on PATH or a path), or None."""
    if os.sep in bwrap:
        return bwrap if os.access(bwrap, os.X_OK) else None
    return shutil.which(bwrap)


def python_paths(python: str) -> list[Path]:
    """Host folders the interpreter `python` needs: its venv prefix and base installation (resolved)."""
    if Path(python).absolute() == Path(sys.executable).absolute():
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        import json
        import subprocess

        code = "import json,sys;print(json.dumps([sys.prefix,sys.base_prefix,sys.exec_prefix,sys.base_exec_prefix]))"
        out = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
        prefixes = json.loads(out.stdout)
    paths = {Path(p).resolve() for p in prefixes}
    # the executable itself and every hop of its symlink chain (venv/bin/python -> /opt/.../python3.11)
    hop = Path(python).absolute()
    for _ in range(40):
        paths.add(hop.parent.resolve())
        if not hop.is_symlink():
            break
        target = Path(os.readlink(hop))
        hop = target if target.is_absolute() else hop.parent / target
    return _outermost(paths)


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Drop paths contained in another path of the set (binding the outer one shows them already)."""
    ordered = sorted({Path(p) for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in ordered:
        if not any(p == k or k in p.parents for k in kept):
            kept.append(p)
    return kept


class JailBuilder:
    """Accumulates bwrap mount arguments, creating world-traversable parent folders for every mount point.

    bwrap makes missing parents 0700, which an unprivileged uid cannot traverse; and a parent inside a
    read-only mount cannot be created at all (there the path must already exist on the host).
    """

    def __init__(self) -> None:
        self.args: list[str] = []
        self._ro: list[Path] = []
        self._rw: list[Path] = []
        self._dirs: set[Path] = set()

    @staticmethod
    def _under(path: Path, roots: Sequence[Path]) -> bool:
        text = str(path)
        return any(text == str(r) or text.startswith(str(r).rstrip("/") + "/") for r in roots)

    def _parents(self, dest: Path) -> None:
        for parent in reversed(dest.parents):
            if parent == Path("/") or parent in self._dirs or self._under(parent, self._ro):
                continue
            self.args += ["--perms", "0755", "--dir", str(parent)]
            self._dirs.add(parent)

    def ro_bind(self, src: Path | str, dest: Path | str | None = None) -> None:
        src = Path(src)
        dest = Path(dest) if dest is not None else src
        if dest == src and self._under(dest, self._ro):
            return  # already visible through an enclosing read-only bind of the same host path
        self._parents(dest)
        self.args += ["--ro-bind", str(src), str(dest)]
        self._ro.append(dest)

    def bind(self, src: Path | str, dest: Path | str | None = None) -> None:
        src = Path(src)
        dest = Path(dest) if dest is not None else src
        self._parents(dest)
        self.args += ["--bind", str(src), str(dest)]
        self._rw.append(dest)
        self._dirs.add(dest)

    def symlink(self, target: str, dest: str) -> None:
        self.args += ["--symlink", target, dest]

    def dir(self, dest: str) -> None:
        self.args += ["--perms", "0755", "--dir", dest]
        self._dirs.add(Path(dest))

    def special(self, kind: str, dest: str) -> None:
        """A fresh filesystem bwrap makes itself: kind "proc" or "dev"."""
        self.args += [f"--{kind}", dest]
        self._dirs.add(Path(dest))

    def exposed(self) -> list[Path]:
        """Host paths visible in the jail (same-path binds)."""
        return [*self._ro, *self._rw]


def bwrap_command(
    bwrap: str,
    *,
    workdir: Path,
    tmp_dir: Path,
    shm_dir: Path,
    etc_dir: Path,
    ro_paths: Sequence[Path],
    privileged: bool,
    inner_id: int = 65534,
) -> tuple[list[str], list[Path]]:
    """The bwrap argv prefix (ending in `--`) for one run, and the host paths it exposes.

    privileged (running as root): the launcher keeps CAP_SETUID/CAP_SETGID/CAP_KILL only, to drop the solution to
    an unprivileged uid itself and to kill what it leaves behind. Otherwise bwrap makes a user namespace and runs everything as `inner_id`.
    """
    cmd = [
        bwrap,
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
    ]
    if privileged:
        # SETUID/SETGID to drop the solution's uid, KILL to end its leftovers (uid 0 may not signal them otherwise)
        cmd += [
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
            "--cap-add",
            "CAP_KILL",
        ]
    else:
        cmd += ["--unshare-user", "--uid", str(inner_id), "--gid", str(inner_id), "--disable-userns"]

    jail = JailBuilder()
    jail.ro_bind("/usr")
    for link in SYSTEM_LINKS:
        if os.path.islink(link):
            jail.symlink(os.readlink(link), link)
        elif os.path.isdir(link):
            jail.ro_bind(link)
    jail.dir("/etc")
    for path in ETC_FILES:
        if os.path.exists(path):
            jail.ro_bind(path)
    for name in ("passwd", "group", "hosts"):
        jail.ro_bind(etc_dir / name, f"/etc/{name}")
    if os.path.isdir(CPU_INFO):
        jail.ro_bind(CPU_INFO)  # CPU topology: OpenMP, torch and joblib size their pools from it
    jail.special("proc", "/proc")
    jail.special("dev", "/dev")
    jail.bind(shm_dir, "/dev/shm")
    jail.bind(tmp_dir, "/tmp")
    for path in _outermost(ro_paths):
        jail.ro_bind(path)
    jail.bind(workdir)
    cmd += [*jail.args, "--chdir", str(workdir), "--"]
    exposed = [p for p in jail.exposed() if p not in (Path("/tmp"), Path("/dev/shm"))]
    return cmd, exposed
