# SPDX-License-Identifier: MIT
"""The previous release's ferryd and ferry, built from this repository's git history: what a
rolling upgrade starts from (tests/e2e/test_upgrade.py, and the lab by hand:
`ferry lab up --build $(python3 tests/lib/prevrelease.py)`).

The release is named in one place, tests/e2e/previous_release ("VERSION COMMIT"): by commit,
since a clone need not carry tags. Its tree is taken with `git archive` (the repository is not
touched: no worktree, no checkout) into BUILD/prev-release/VERSION-COMMIT/src and built there
with meson and ninja: only src/ferryd and src/ferry (no guest appliance, unit tests or man
pages), unoptimized and without -Werror (a newer compiler's new warnings must not stop an old
release from building). The build stays as a cache: a second run only asks ninja, which finds
nothing to do. Missing history is an error that says how to fetch it, never a skip."""
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RECORD = os.path.join(HERE, "..", "e2e", "previous_release")
MESON_OPTIONS = ["-Dguest=false", "-Dtests=false", "-Dman=disabled", "-Dwerror=false",
                 "-Dbuildtype=plain"]
TARGETS = ["src/ferryd", "src/ferry"]
BUILD_TIMEOUT_S = 1800  # a cold build of two programs on a loaded 2-core machine: minutes


class PrevReleaseError(Exception):
    """Why the previous release could not be built, and what to do about it."""


def _git(repo, *args, check=True, timeout=120):
    p = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise PrevReleaseError(f"git {' '.join(args)} in {repo}: exit {p.returncode}: "
                               f"{p.stderr.strip()}")
    return p


def read_record(path=RECORD):
    """(version, commit) from the record file: one "VERSION COMMIT" line, # comments."""
    try:
        with open(path) as f:
            lines = [ln.split("#", 1)[0].strip() for ln in f]
    except OSError as e:
        raise PrevReleaseError(f"{path}: {e.strerror}; it names the release a rolling upgrade "
                               "starts from (VERSION COMMIT)") from None
    lines = [ln for ln in lines if ln]
    m = re.fullmatch(r"(\d+\.\d+\.\d+)\s+([0-9a-f]{40})", lines[0]) if len(lines) == 1 else None
    if not m:
        raise PrevReleaseError(f"{path}: expected one line 'VERSION COMMIT' (0.1.0 and a full "
                               f"40-digit commit hash), found {lines!r}")
    return m.group(1), m.group(2)


def repo_root():
    """The top of the git repository this file is in."""
    try:
        p = _git(HERE, "rev-parse", "--show-toplevel", check=False)
    except FileNotFoundError:
        raise PrevReleaseError("git is not installed: the upgrade test builds the previous "
                               "release from git history") from None
    if p.returncode != 0:
        raise PrevReleaseError(f"{HERE} is not in a git repository ({p.stderr.strip()}): the "
                               "upgrade test builds the previous release from git history; "
                               "run it from a git clone of ferry")
    return p.stdout.strip()


def check_history(repo, version, commit):
    """The commit is in repo's history and is the release version (its meson.build says so)."""
    if _git(repo, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode != 0:
        shallow = _git(repo, "rev-parse", "--is-shallow-repository",
                       check=False).stdout.strip() == "true"
        raise PrevReleaseError(
            f"the previous release {version} (commit {commit}, named in "
            f"tests/e2e/previous_release) is not in the git history of {repo}"
            + (" (a shallow clone)" if shallow else "") +
            f": the upgrade test builds it from there. Fetch it: `git fetch --unshallow` "
            f"(a shallow clone), or `git fetch origin tag v{version}`, or in CI clone with the "
            "whole history (actions/checkout: fetch-depth: 0)")
    text = _git(repo, "show", f"{commit}:meson.build").stdout
    m = re.search(r"version\s*:\s*'([^']+)'", text)
    if not m or m.group(1) != version:
        raise PrevReleaseError(f"tests/e2e/previous_release names {version} at commit {commit}, "
                               f"but that commit's meson.build says version "
                               f"{m.group(1) if m else '(none)'}: fix the record")


def _logged(cmd, log, what, timeout):
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        f.flush()
        try:
            p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PrevReleaseError(f"{what}: no end after {timeout} s; see {log}") from None
    if p.returncode != 0:
        with open(log, errors="replace") as f:
            tail = f.read()[-3000:]
        raise PrevReleaseError(f"{what}: exit {p.returncode}; {log} ends with:\n{tail}")


def build(build_root, say=lambda msg: None):
    """Builds (or finds built) the previous release's ferryd and ferry under
    build_root/prev-release. Returns {"version", "commit", "build" (the build directory, as
    the lab's build= takes it), "ferryd", "ferry", "seconds", "cached" (nothing was
    compiled)}. Raises PrevReleaseError with what went wrong and what to do."""
    version, commit = read_record()
    repo = repo_root()
    check_history(repo, version, commit)
    if shutil.which("meson") is None or shutil.which("ninja") is None:
        raise PrevReleaseError("meson and ninja are needed to build the previous release "
                               "(scripts/install-deps)")
    top = os.path.join(os.path.abspath(build_root), "prev-release", f"{version}-{commit[:12]}")
    os.makedirs(top, exist_ok=True)
    src, bld, log = (os.path.join(top, x) for x in ("src", "build", "build.log"))
    t0 = time.monotonic()
    with open(os.path.join(top, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        compiled = False
        if not os.path.exists(os.path.join(src, ".ferry-prev-release")):
            say(f"extracting {version} ({commit[:12]}) with git archive into {src}")
            tmp = src + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(bld, ignore_errors=True)
            os.makedirs(tmp)
            tar = os.path.join(top, "src.tar")
            _git(repo, "archive", "--format=tar", "-o", tar, commit, timeout=300)
            _logged(["tar", "-xf", tar, "-C", tmp], log, "tar -xf (the release's tree)", 300)
            os.unlink(tar)
            with open(os.path.join(tmp, ".ferry-prev-release"), "w") as f:
                f.write(f"{version} {commit}\n")
            os.rename(tmp, src)
        if not os.path.exists(os.path.join(bld, "build.ninja")):
            shutil.rmtree(bld, ignore_errors=True)
            say(f"meson setup {bld} ({' '.join(MESON_OPTIONS)})")
            _logged(["meson", "setup", bld, src, *MESON_OPTIONS], log,
                    f"meson setup of the previous release {version}", 600)
            compiled = True
        # No-op when it is built; also rebuilds what a half-finished earlier run left.
        before = [os.stat(os.path.join(bld, t)).st_mtime_ns if
                  os.path.exists(os.path.join(bld, t)) else None for t in TARGETS]
        _logged(["ninja", "-C", bld, *TARGETS], log,
                f"ninja (ferryd and ferry of the previous release {version})", BUILD_TIMEOUT_S)
        after = [os.stat(os.path.join(bld, t)).st_mtime_ns for t in TARGETS]
        compiled = compiled or before != after
    return {"version": version, "commit": commit, "build": bld,
            "ferryd": os.path.join(bld, "src", "ferryd"),
            "ferry": os.path.join(bld, "src", "ferry"),
            "seconds": round(time.monotonic() - t0, 1), "cached": not compiled}


if __name__ == "__main__":
    # Prints the build directory (for `ferry lab up --build`); progress goes to stderr.
    root = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "FERRY_BUILD", os.path.join(HERE, "..", "..", "build"))
    try:
        r = build(root, say=lambda msg: print(f"prevrelease: {msg}", file=sys.stderr))
    except PrevReleaseError as e:
        sys.exit(f"prevrelease: {e}")
    print(f"prevrelease: {r['version']} in {r['seconds']} s"
          f"{' (cached)' if r['cached'] else ''}", file=sys.stderr)
    print(r["build"])
