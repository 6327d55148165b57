"""External programs the stack needs: find them on PATH, or install Debian packages on demand."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streamer.local.errors import MissingToolError, StackError

Which = Callable[[str], "str | None"]
Echo = Callable[[str], None]


def echo_stderr(message: str) -> None:
    """Default progress reporter: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Tool:
    command: str
    package: str
    purpose: str


JAVA = Tool("java", "openjdk-17-jre-headless", "runs the Kafka broker")
MAVEN = Tool("mvn", "maven", "downloads the Kafka jars, once")


def _sudo_prefix() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


def require(tools: Sequence[Tool], *, which: Which = shutil.which) -> dict[str, str]:
    """Paths of the tools; MissingToolError naming each missing one and its apt-get line."""
    found = {tool.command: which(tool.command) for tool in tools}
    missing = [tool for tool in tools if found[tool.command] is None]
    if missing:
        what = ", ".join(f"{tool.command} ({tool.purpose})" for tool in missing)
        sudo = "" if os.geteuid() == 0 else "sudo "
        packages = " ".join(tool.package for tool in missing)
        raise MissingToolError(f"not found on PATH: {what}.\nInstall with: {sudo}apt-get install {packages}")
    return {command: path for command, path in found.items() if path is not None}


# Two installs at once (the test suite's processes each installing a tool on a fresh machine)
# collide on dpkg's lock, and apt-get fails at once: it waits for the lock instead.
APT_LOCK_WAIT_S = 600


def apt_get_argv(args: list[str]) -> list[str]:
    """The apt-get command line: non-interactive use, waiting for dpkg's lock."""
    return [*_sudo_prefix(), "apt-get", "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}", *args]


def _apt_get(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(apt_get_argv(args), capture_output=True, text=True, env=env, check=False)


def apt_install(package: str, *, which: Which = shutil.which, echo: Echo = echo_stderr) -> None:
    """apt-get install -y package (as root, else through sudo); apt-get update and retry once."""
    manual = f"apt-get install -y {package}"
    if which("apt-get") is None:
        raise MissingToolError(f"{package} is missing and apt-get is not available: install it")
    if os.geteuid() != 0 and which("sudo") is None:
        raise MissingToolError(f"{package} is missing; as root, run: {manual}")
    echo(f"installing the Debian package {package} ({manual}) ...")
    started = time.monotonic()
    result = _apt_get(["install", "-y", "--no-install-recommends", package])
    if result.returncode != 0:
        echo("apt-get install failed; running apt-get update and trying again ...")
        _apt_get(["update"])
        result = _apt_get(["install", "-y", "--no-install-recommends", package])
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise StackError(f"could not install {package} ({manual}):\n{output}")
    echo(f"installed {package} in {time.monotonic() - started:.1f}s")


def ensure_command(
    command: str, package: str, *, which: Which = shutil.which, echo: Echo = echo_stderr
) -> str:
    """Path of command, installing the Debian package that provides it when it is missing."""
    path = which(command)
    if path is None:
        echo(f"{command} is not installed")
        apt_install(package, which=which, echo=echo)
        path = which(command) or shutil.which(command, path="/usr/bin:/usr/sbin:/bin:/sbin")
    if path is None:
        raise StackError(f"installed {package} but still cannot find {command} on PATH")
    return path
