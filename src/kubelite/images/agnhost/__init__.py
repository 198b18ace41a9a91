"""A Python implementation of Kubernetes' e2e test image ``registry.k8s.io/e2e-test-images/agnhost``.

The manifests Kubernetes uses in its own tests (and in its docs) run ``agnhost netexec``,
``serve-hostname``, ``pause``, ``connect``, ``liveness``...; the built-in agnhost image
runs ``python -m kubelite.images.agnhost <sub-command> [flags]`` with the same flags,
outputs and exit codes. Each sub-command lives in its own module, imported only when
chosen, so that a container starts in tens of milliseconds.
"""

from __future__ import annotations

import importlib
import sys

VERSION = "2.53"

# sub-command -> (module, short description), as agnhost lists them.
COMMANDS = {
    "connect": ("connect", "Attempts a TCP, UDP or SCTP connection and returns useful errors"),
    "dns-server-list": ("dns", "Prints the host's DNS Server list"),
    "dns-suffix": ("dns", "Prints the host's DNS suffix list"),
    "entrypoint-tester": ("entrypoint", "Prints the args it's passed and exits"),
    "etc-hosts": ("dns", "Prints the host's /etc/hosts file"),
    "guestbook": ("guestbook", "Creates a HTTP server with various endpoints representing a guestbook app"),
    "liveness": ("liveness", "Starts a server that is alive for 10 seconds"),
    "logs-generator": ("logsgen", "Outputs lines of logs to stdout uniformly"),
    "mounttest": ("mounttest", "Creates files with given permissions and outputs FS type, owner, mode, permissions, contents of files"),
    "netexec": ("netexec", "Creates HTTP(S), UDP, and (optionally) SCTP servers with various endpoints"),
    "nettest": ("nettest", "Starts a tiny web server for checking networking connectivity"),
    "pause": ("pause", "Pauses the execution"),
    "porter": ("porter", "Serves requested data on ports specified in ENV variables"),
    "serve-hostname": ("servehostname", "Serves the hostname"),
    "test-webserver": ("testwebserver", "Starts a simple HTTP fileserver"),
}


def help_text() -> str:
    width = max(len(name) for name in COMMANDS) + 2
    commands = "\n".join(f"  {name.ljust(width)} {short}" for name, (_, short) in COMMANDS.items())
    return (
        "Usage:\n  app [command]\n\nAvailable Commands:\n"
        f"{commands}\n  {'help'.ljust(width)} Help about any command\n\n"
        f"Flags:\n  -h, --help      help for app\n      --version   version for app\n\n"
        'Use "app [command] --help" for more information about a command.\n'
    )


ARGV0_FLAG = "--argv0="  # how the catalog says which in-image path ran (/agnhost or /agnhost-2)


def main(argv: list[str]) -> int:
    argv0 = "/agnhost"
    if argv and argv[0].startswith(ARGV0_FLAG):
        argv0, argv = argv[0][len(ARGV0_FLAG):], argv[1:]
    if not argv or argv[0] in ("help", "-h", "--help"):
        sys.stdout.write(help_text())
        return 0
    if argv[0] == "--version":
        sys.stdout.write(f"app version {VERSION}\n")
        return 0
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        sys.stderr.write(f'Error: unknown command "{command}" for "app"\nRun \'app --help\' for usage.\n')
        return 1
    module = importlib.import_module(f"kubelite.images.agnhost.{COMMANDS[command][0]}")
    if command == "entrypoint-tester":
        module.main(argv0, args)
    elif module.__name__.endswith(".dns"):
        module.main(command, args)
    else:
        module.main(args)
    return 0
