"""``agnhost mounttest``: create files with given modes, print fs type, modes, owners and contents.

The volume conformance tests (emptyDir, hostPath, configMap, secret, downward API, projected)
run this sub-command and compare its output line by line, so the lines are Go's: ``%v`` of an
``os.FileMode`` (``-rw-r--r--``, ``drwxrwxrwt`` is ``dtrwxrwxrwx`` in Go), ``%q`` of paths, the
statfs magic number except for tmpfs. The order of the checks is agnhost's own: it lets one
run check a mount's type, write a file in it and read it back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
import sys
import time

from kubelite.images.agnhost import common
from kubelite.images.agnhost.common import Flag

FLAGS = [
    Flag("fs_type", "string", "", "Path to print the fs type for"),
    Flag("file_mode", "string", "", "Path to print the mode bits of"),
    Flag("file_perm", "string", "", "Path to print the perms of"),
    Flag("file_owner", "string", "", "Path to print the owning UID and GID of"),
    Flag("new_file_0644", "string", "", "Path to write to and read from with perm 0644"),
    Flag("new_file_0666", "string", "", "Path to write to and read from with perm 0666"),
    Flag("new_file_0660", "string", "", "Path to write to and read from with perm 0660"),
    Flag("new_file_0777", "string", "", "Path to write to and read from with perm 0777"),
    Flag("file_content", "string", "", "Path to read the file content from"),
    Flag("file_content_in_loop", "string", "", "Path to read the file content in loop from"),
    Flag("retry_time", "int", 180, "Retry time during the loop"),
    Flag("break_on_expected_content", "bool", True,
         "Break out of loop on expected content, (use with --file_content_in_loop flag only)"),
]

INITIAL_CONTENT = "mount-tester new file\n"
TMPFS_MAGIC = 0x01021994


class _Statfs(ctypes.Structure):
    # struct statfs on 64-bit Linux: f_type comes first, which is all we read.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]


def _fs_magic(path: str) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    buf = _Statfs()
    if libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(buf.f_type)


def go_file_mode(mode: int) -> str:
    """Go's ``os.FileMode.String()`` of a ``stat`` result: type letters in Go's order
    (``dalTLDpSugct``), then ``rwxrwxrwx``; a plain file has none and shows ``-``."""
    letters = ""
    for set_, letter in (
        (stat.S_ISDIR(mode), "d"),
        (stat.S_ISLNK(mode), "L"),
        (stat.S_ISBLK(mode) or stat.S_ISCHR(mode), "D"),
        (stat.S_ISFIFO(mode), "p"),
        (stat.S_ISSOCK(mode), "S"),
        (bool(mode & stat.S_ISUID), "u"),
        (bool(mode & stat.S_ISGID), "g"),
        (stat.S_ISCHR(mode), "c"),
        (bool(mode & stat.S_ISVTX), "t"),
    ):
        if set_:
            letters += letter
    return (letters or "-") + go_perm(mode)


def go_perm(mode: int) -> str:
    bits = "rwxrwxrwx"
    return "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate(bits))


def fs_type(path: str) -> bool:
    try:
        magic = _fs_magic(path)
    except OSError as e:
        sys.stdout.write(f"error from statfs({common.go_quote(path)}): {common.os_error_text(e)}\n")
        return False
    name = "tmpfs" if magic == TMPFS_MAGIC else str(magic)
    sys.stdout.write(f"mount type of {common.go_quote(path)}: {name}\n")
    return True


def read_content(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        sys.stdout.write(f"error reading file content for {common.go_quote(path)}: "
                         f"open {path}: {common.os_error_text(e)}\n")
        return False
    sys.stdout.write(f"content of file {common.go_quote(path)}: {data.decode(errors='replace')}\n")
    return True


def write_new(path: str, perm: int) -> bool:
    try:
        # os.WriteFile: O_WRONLY|O_CREATE|O_TRUNC with perm (umask is 0 here).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perm)
        with os.fdopen(fd, "w") as f:
            f.write(INITIAL_CONTENT)
    except OSError as e:
        sys.stdout.write(f"error writing new file {common.go_quote(path)}: open {path}: {common.os_error_text(e)}\n")
        return False
    return read_content(path)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError as e:
        sys.stdout.write(f"error from Stat({common.go_quote(path)}): stat {path}: {common.os_error_text(e)}\n")
        return None


def content_in_loop(path: str, retry: int, break_on_expected: bool) -> bool:
    """Read ``path`` every 2 s for ``retry`` seconds; stop early once it holds what
    ``--new_file_*`` writes (unless told not to). Fails when the last read failed."""
    start = time.monotonic()
    ok = False
    while time.monotonic() - start < retry:
        try:
            with open(path, "rb") as f:
                data = f.read().decode(errors="replace")
        except OSError as e:
            sys.stdout.write(f"Error reading file {path}: open {path}: {common.os_error_text(e)}, retrying\n")
            ok = False
        else:
            ok = True
            sys.stdout.write(f"content of file {common.go_quote(path)}: {data}\n")
            if break_on_expected:
                if data == INITIAL_CONTENT:
                    break
                sys.stdout.write(f"Unexpected content. Expected: {INITIAL_CONTENT}. Retrying\n")
        sys.stdout.flush()
        time.sleep(2)
    return ok


def main(args: list[str]) -> None:
    values, positional = common.parse_flags("mounttest", FLAGS, args)
    if positional:
        common.usage_error("mounttest", FLAGS, f"accepts at most 0 arg(s), received {len(positional)}")
    os.umask(0)
    ok = True
    if values["fs_type"]:
        ok &= fs_type(values["fs_type"])
    for flag, perm in (("new_file_0644", 0o644), ("new_file_0666", 0o666), ("new_file_0660", 0o660),
                       ("new_file_0777", 0o777)):
        if values[flag]:
            ok &= write_new(values[flag], perm)
    if values["file_mode"] and (st := _stat(values["file_mode"])) is not None:
        sys.stdout.write(f"mode of file {common.go_quote(values['file_mode'])}: {go_file_mode(st.st_mode)}\n")
    elif values["file_mode"]:
        ok = False
    if values["file_perm"] and (st := _stat(values["file_perm"])) is not None:
        sys.stdout.write(f"perms of file {common.go_quote(values['file_perm'])}: -{go_perm(st.st_mode)}\n")
    elif values["file_perm"]:
        ok = False
    if values["file_owner"]:
        try:
            st = os.stat(values["file_owner"])
        except OSError as e:
            sys.stdout.write(f"error from stat({common.go_quote(values['file_owner'])}): {common.os_error_text(e)}\n")
            ok = False
        else:
            sys.stdout.write(f"owner UID of {common.go_quote(values['file_owner'])}: {st.st_uid}\n")
            sys.stdout.write(f"owner GID of {common.go_quote(values['file_owner'])}: {st.st_gid}\n")
    if values["file_content"]:
        ok &= read_content(values["file_content"])
    if values["file_content_in_loop"]:
        ok &= content_in_loop(values["file_content_in_loop"], values["retry_time"], values["break_on_expected_content"])
    sys.stdout.flush()
    raise SystemExit(0 if ok else 1)
