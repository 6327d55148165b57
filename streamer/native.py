"""The compiled scoring core: which one runs, and how it is built.

`streamer/core/*.py` is the single source of truth. `make core` (part of `make venv`) compiles
those modules with mypyc into `streamer/core/_compiled/`, next to a `BUILD.json` that records a
hash of the sources compiled. `streamer/core/__init__.py` asks `choose()` at import time and, when
the build matches the sources byte for byte, puts that folder first on the package's search path,
so `import streamer.core.score` loads the compiled module; otherwise the `.py` files run as they
are. An edited source with an old build therefore never runs the old code: the hash differs, a
warning says which file changed and the pure-Python core runs until `make core` is run again.

`HEALTHSTREAM_PURE_CORE=1` (or true, yes, on) forces the pure-Python core (for a debugger, a
profiler that should see the core's frames, or to compare the two); 0, false, no, off or empty
leave the choice to the build, and any other value is ignored with a warning.

Build: `python -m streamer.native` (what `make core` runs). Without a C compiler or the Python
headers it prints one line and exits 0 (the pure-Python core runs); a module that mypyc rejects
fails the build loudly, since every module of the core must stay compilable.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_PURE_CORE = "HEALTHSTREAM_PURE_CORE"
CORE_DIR = Path(__file__).resolve().parent / "core"
COMPILED_DIRNAME = "_compiled"
MANIFEST = "BUILD.json"
# Not compiled: the package's own `__init__` (it chooses), and the pydantic configuration models
# (mypyc cannot compile classes with pydantic's metaclass; they are read once at start-up).
NOT_COMPILED = frozenset({"__init__.py", "config.py"})
# The shared library holding every compiled module, inside the package (streamer/core/native__mypyc...so).
# A mypyc group name, not a module: its shared library is named after the last part.
GROUP = f"{__package__}.core.native"


class StaleCoreWarning(RuntimeWarning):
    """The compiled core was built from other sources than the ones on disk."""


class SwitchWarning(RuntimeWarning):
    """HEALTHSTREAM_PURE_CORE holds a value that is not a switch; it is ignored."""


SWITCH_ON = frozenset({"1", "true", "yes", "on"})
SWITCH_OFF = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True)
class Choice:
    compiled: bool
    reason: str  # why the pure-Python core runs ("" when compiled)
    directory: Path

    def describe(self) -> str:
        if self.compiled:
            return "core: compiled (mypyc)"
        return f"core: pure Python ({self.reason})"


def compiled_sources(core_dir: Path) -> list[Path]:
    """The core's modules that mypyc compiles, in a stable order."""
    return sorted(path for path in core_dir.glob("*.py") if path.name not in NOT_COMPILED)


def source_digest(sources: list[Path]) -> dict[str, str]:
    """sha256 of each source, by file name."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sources}


def _extension_name(module: str) -> str:
    return module + importlib.machinery.EXTENSION_SUFFIXES[0]


def choose(core_dir: Path, environ: Mapping[str, str]) -> Choice:
    """Whether the compiled core in `core_dir/_compiled` may run instead of the sources."""
    directory = core_dir / COMPILED_DIRNAME
    if _pure_core_asked(environ):
        return Choice(False, f"{ENV_PURE_CORE}={environ[ENV_PURE_CORE]}", directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        return Choice(False, "not built: run `make core`", directory)
    try:
        built = json.loads(manifest_path.read_text())
        built_digest: dict[str, str] = dict(built["sources"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return _stale(directory, f"{manifest_path} is unreadable ({error}); run `make core`")
    current = source_digest(compiled_sources(core_dir))
    if current != built_digest:
        names = current.keys() | built_digest.keys()
        changed = sorted(name for name in names if current.get(name) != built_digest.get(name))
        return _stale(
            directory,
            f"stale build: {', '.join(changed)} changed since `make core`; run `make core` to rebuild",
        )
    stems = [Path(name).stem for name in current] + [GROUP.rsplit(".", 1)[-1] + "__mypyc"]
    missing = [stem for stem in stems if not (directory / _extension_name(stem)).is_file()]
    if missing:
        return _stale(
            directory,
            f"the build has no {_extension_name(missing[0])} for this Python "
            f"({sys.implementation.cache_tag}); run `make core` to rebuild",
        )
    return Choice(True, "", directory)


def _pure_core_asked(environ: Mapping[str, str]) -> bool:
    """Whether `HEALTHSTREAM_PURE_CORE` asks for the pure-Python core: 1, true, yes or on (any
    case); 0, false, no, off or empty do not. Anything else is ignored with a warning: `false`
    read as true (every value but "" and "0" did), and a refusal here, at import time, would be
    a traceback in every command."""
    value = environ.get(ENV_PURE_CORE, "")
    word = value.strip().lower()
    if word in SWITCH_ON:
        return True
    if word not in SWITCH_OFF:
        warnings.warn(
            f"healthstream: {ENV_PURE_CORE}={value!r} is ignored: set 1, true, yes or on for the "
            "pure-Python core, or 0, false, no, off (or unset it) for the compiled one",
            SwitchWarning,
            stacklevel=3,
        )
    return False


def _stale(directory: Path, reason: str) -> Choice:
    warnings.warn(
        f"healthstream: the compiled scoring core is not used, the pure-Python one runs: {reason}",
        StaleCoreWarning,
        stacklevel=3,
    )
    return Choice(False, reason, directory)


def running() -> str:
    """What actually runs, from the loaded modules ("core: compiled (mypyc)" / "core: pure Python (...)")."""
    import streamer.core
    import streamer.core.score

    choice: Choice = streamer.core.CORE
    if choice.compiled and not str(streamer.core.score.__file__).endswith(".py"):
        return choice.describe()
    if choice.compiled:
        return "core: pure Python (the compiled modules did not load)"
    return choice.describe()


# -- build ------------------------------------------------------------------------------------------


def _no_compiler() -> str | None:
    """Why no C extension can be built here, or None."""
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.is_file():
        return f"no Python headers ({include} missing; Debian: apt-get install python3-dev)"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler!r} not on PATH; Debian: apt-get install gcc)"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed (it comes with mypy, in the [dev] extra)"
    return None


def build(core_dir: Path = CORE_DIR) -> int:
    """Compile the core into `core_dir/_compiled` (replaced whole); 0 when built or skipped."""
    reason = _no_compiler()
    if reason is not None:
        print(f"core: not compiled, the pure-Python core runs: {reason}", file=sys.stderr)
        return 0
    from mypyc.build import mypycify
    from setuptools import setup

    sources = compiled_sources(core_dir)
    digest = source_digest(sources)
    project = core_dir.parent.parent
    target = core_dir / COMPILED_DIRNAME
    with tempfile.TemporaryDirectory(prefix="core-build-") as scratch:
        work = Path(scratch)
        # setuptools reads the current folder's pyproject.toml: build from an empty one.
        cwd = Path.cwd()
        os.chdir(work)
        try:
            extensions = mypycify(
                [f"--config-file={project / 'pyproject.toml'}", *map(str, sources)],
                opt_level="3",
                group_name=GROUP,
                target_dir=str(work / "c"),
            )
            setup(
                name="healthstream-core",
                ext_modules=extensions,
                script_args=["-q", "build_ext", f"--build-lib={work}/lib", f"--build-temp={work}/tmp"],
            )
        finally:
            os.chdir(cwd)
        built = work / "lib" / "streamer" / "core"
        fresh = work / COMPILED_DIRNAME
        fresh.mkdir()
        for library in built.iterdir():
            shutil.copy2(library, fresh / library.name)
        # The hash of what was compiled, taken before compiling: an edit during the build shows as stale.
        manifest = {"sources": digest, "python": sys.implementation.cache_tag}
        (fresh / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(fresh), str(target))
    print(f"core: compiled {len(sources)} modules into {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(build())
