"""The ``redis`` image: the host's ``redis-server`` with the official image's defaults.

``python -m kubelite.images.redis [command...]`` is the image's ENTRYPOINT (CMD
``redis-server``), and also what a container's ``command: ["redis-server", ...]`` runs, so
that every way of starting the server gets the same treatment. Like docker-library's entrypoint
it prepends ``redis-server`` to a command that starts with an option or names a ``.conf`` file,
and runs the server as the ``redis`` user with umask 0077. Like the image's build, which
patches the compiled default, protected mode is off unless a config file or the command turns
it on: a server in a pod is meant to be reached from other pods.

The trade-off: the image's ``WORKDIR /data`` (where RDB and AOF files go) does not exist on
the host. The server runs in ``/data`` when a volume is mounted there, as on a real cluster;
otherwise in the container's private ``/tmp/data``, so the dump written at shutdown never
lands in a host directory.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path
from typing import NoReturn


def server_argv(command: list[str]) -> list[str]:
    """The command to exec: ``redis-server`` prepended as the entrypoint does, protected mode off by default."""
    if not command or command[0].startswith("-") or command[0].endswith(".conf"):
        command = ["redis-server", *command]
    if Path(command[0]).name != "redis-server":
        return command
    args = command[1:]
    config = args[:1] if args and not args[0].startswith("-") else []
    options = args[len(config):]
    if config and config[0] != "-" and _sets_protected_mode(Path(config[0])):
        return ["redis-server", *config, *options]
    return ["redis-server", *config, "--protected-mode", "no", *options]


def _sets_protected_mode(config: Path) -> bool:
    try:
        lines = config.read_text().splitlines()
    except OSError:
        return False  # redis-server reports the unreadable file itself
    return any(line.split()[:1] == ["protected-mode"] for line in lines)


def _workdir() -> Path:
    mounts = {line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    if "/data" in mounts:
        return Path("/data")
    cwd = Path.cwd()
    if str(cwd) != "/" and (str(cwd) in mounts or Path("/tmp") in (cwd, *cwd.parents)):
        return cwd  # a workingDir the pod chose on a volume or in its private /tmp
    return Path("/tmp/data")


def main(command: list[str]) -> NoReturn:
    argv = server_argv(command)
    if argv[0] == "redis-server":
        workdir = _workdir()
        workdir.mkdir(parents=True, exist_ok=True)
        os.chdir(workdir)
        if os.geteuid() == 0:
            try:
                redis = pwd.getpwnam("redis")
            except KeyError:
                redis = None
            if redis is not None:
                for path in (workdir, *workdir.iterdir()):
                    if path.stat().st_uid != redis.pw_uid:
                        os.chown(path, redis.pw_uid, -1)
                os.setgroups([])
                os.setgid(redis.pw_gid)
                os.setuid(redis.pw_uid)
                os.environ["HOME"] = redis.pw_dir
        previous = os.umask(0o077)
        if previous != 0o022:
            os.umask(previous)  # keep a umask the pod set on purpose
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
