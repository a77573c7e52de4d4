# SPDX-License-Identifier: MIT
"""What a shell user reads: the bash completion (contrib/bash-completion/ferry), run in a real
bash with COMP_WORDS against the real ferry and a standalone ferryd for VM and node names, and
the man pages the build makes from --help (src/meson.build, scripts/man-page)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from ferrytest import BUILD, FERRY, FERRYD, run, wait_for  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COMPLETION = os.path.join(REPO, "contrib", "bash-completion", "ferry")

pytestmark = pytest.mark.skipif(not os.path.exists(FERRY), reason=f"no ferry at {FERRY}")


@pytest.fixture(scope="module")
def ferryd():
    """A standalone ferryd with two VMs defined (not started), named node cd1."""
    base = tempfile.mkdtemp(prefix="fycd")
    sock = os.path.join(base, "ferryd.sock")
    kernel = os.path.join(base, "vmlinuz")
    open(kernel, "w").close()
    log = open(os.path.join(base, "ferryd.log"), "w")
    p = subprocess.Popen([FERRYD, "--state-dir", os.path.join(base, "state"), "--run-dir",
                          os.path.join(base, "run"), "--socket", sock, "--name", "cd1"],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    try:
        wait_for(lambda: p.poll() is not None or
                 run([FERRY, "--socket", sock, "node", "show"], check=False).returncode == 0,
                 15, "ferryd to answer")
        assert p.poll() is None, "ferryd exited"
        for name in ("web1", "db-2"):
            run([FERRY, "--socket", sock, "vm", "create", name, "--memory", "64", "--kernel",
                 kernel])
        yield sock
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait(15)
        shutil.rmtree(base, ignore_errors=True)


def complete(*words):
    """What the completion offers for `ferry WORDS...` (the last word is the one completed)."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
              '_ferry; printf "%s\\n" "${COMPREPLY[@]}"')
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", COMPLETION, FERRY,
                        *words], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and not p.stderr, p.stderr
    return set(filter(None, p.stdout.split("\n")))


def help_commands(*path):
    text = run([FERRY, *path, "--help"]).stdout
    block = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0] for line in block.splitlines() if line.startswith("  ")}


def test_commands_and_subcommands():
    top = complete("")
    assert "vm" in top and top == help_commands(), top
    assert complete("v") == {"vm", "version"}
    sub = complete("vm", "")
    assert "migrate" in sub and sub == help_commands("vm")
    assert complete("vm", "mi") == {"migrate", "migrations"}
    assert complete("vm", "ha", "") == {"enable", "disable"}
    for cmd in ("node", "cluster", "disk", "csv", "task"):
        assert complete(cmd, "") == help_commands(cmd), cmd


def test_options_and_their_values():
    assert {"--socket", "--url", "--token", "--output"} <= complete("--")
    assert complete("-o", "") == {"table", "json"}
    assert {"--to", "--budget-ms", "--cancel"} <= complete("vm", "migrate", "x", "--")
    assert complete("cluster", "set", "--profile", "") == {"default", "fast"}
    assert complete("disk", "create", "x.vhd", "--type", "") == {"fixed", "dynamic"}
    assert complete("vm", "create", "x", "--firmware", "") == {"bios", "efi"}
    assert {"--start", "--dry-run", "--keep-devices"} <= complete("vm", "import", "x.vmx", "--")
    assert {"--state", "--kind", "--target", "--limit"} <= complete("task", "list", "--")
    assert {"--follow"} <= complete("task", "show", "x", "--")
    assert "/etc/hostname" in complete("disk", "info", "/etc/hostn")
    assert complete("vm", "create", "") == set()  # a new name: nothing to offer


def test_vm_and_node_names_from_ferryd(ferryd):
    g = ("--socket", ferryd)
    assert complete(*g, "vm", "start", "") == {"web1", "db-2"}
    assert complete(*g, "vm", "migrate", "w") == {"web1"}
    assert complete(*g, "vm", "stop", "--timeout", "3", "") == {"web1", "db-2"}
    assert complete(*g, "vm", "ha", "enable", "") == {"web1", "db-2"}
    assert complete(*g, "vm", "migrate", "web1", "--to", "") == {"cd1"}
    assert complete(*g, "node", "drain", "") == {"cd1"}
    # Without a ferryd to ask there are no names, and no noise either.
    assert complete("--socket", "/nonexistent.sock", "vm", "start", "") == set()


@pytest.mark.skipif(shutil.which("man") is None, reason="no man")
def test_man_pages_follow_help():
    """The build makes the man pages from --help: each exists, renders without groff warnings,
    names every command and subcommand and every option of ferryd."""
    pages = {"ferry.1": FERRY, "ferryd.8": FERRYD,
             "ferry-probe.1": os.path.join(BUILD, "src", "ferry-probe")}
    for page, prog in pages.items():
        path = os.path.join(BUILD, "src", page)
        assert os.path.exists(path), f"{path}: not built (help2man missing? scripts/install-deps)"
        p = run(["man", "--warnings", "-l", path], env=dict(os.environ, MANWIDTH="100",
                                                               LC_ALL="C.UTF-8"))
        assert not p.stderr.strip(), (page, p.stderr)
        assert run([prog, "--version"]).stdout.split()[-1] in p.stdout
    text = run(["man", "-l", os.path.join(BUILD, "src", "ferry.1")],
               env=dict(os.environ, MANWIDTH="200")).stdout
    for cmd in help_commands():
        assert f"ferry {cmd}" in text, cmd
    for sub in help_commands("vm"):
        assert f"ferry vm {sub}" in text, sub
    d = run(["man", "-l", os.path.join(BUILD, "src", "ferryd.8")],
            env=dict(os.environ, MANWIDTH="200")).stdout
    for opt in re.findall(r"^  (--[a-z-]+)", run([FERRYD, "--help"]).stdout, re.M):
        assert opt in d, opt
