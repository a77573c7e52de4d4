# SPDX-License-Identifier: MIT
"""The Debian package that `make deb` built (FERRY_DEB_DIR, default build-deb/): its contents,
control fields, conffiles and maintainer scripts, and its programs run from an extracted copy;
the packaged unit passes systemd-analyze verify; a purge removes the configuration and state
but keeps VM disks (run in a mount namespace, on scratch directories)."""
import glob
import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEB_DIR = os.environ.get("FERRY_DEB_DIR", os.path.join(REPO, "build-deb"))
DEBS = sorted(glob.glob(os.path.join(DEB_DIR, "ferry_*.deb")))

pytestmark = pytest.mark.skipif(len(DEBS) != 1, reason=f"no single ferry_*.deb in {DEB_DIR}; "
                                "run make deb")


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("root")
    run(["dpkg", "-x", DEBS[0], str(d)])
    return d


def test_contents():
    listing = run(["dpkg-deb", "-c", DEBS[0]])
    files = {}
    for line in listing.splitlines():
        mode, path = line.split()[0], line.split()[-1]
        files[path.lstrip(".")] = mode
    want = {
        "/usr/sbin/ferryd": "-rwxr-xr-x",
        "/usr/bin/ferry": "-rwxr-xr-x",
        "/usr/bin/ferry-probe": "-rwxr-xr-x",
        "/usr/share/ferry/lab/ferry-lab": "-rwxr-xr-x",
        "/usr/share/ferry/lab/ferrylab.py": "-rw-r--r--",
        "/usr/share/ferry/guest/vmlinuz": "-rw-r--r--",
        "/usr/share/ferry/guest/initrd.img": "-rw-r--r--",
        "/usr/share/ferry/web/index.html": "-rw-r--r--",
        "/lib/systemd/system/ferryd.service": "-rw-r--r--",
        "/etc/ferry/ferryd.conf": "-rw-r--r--",
        "/usr/share/man/man1/ferry.1.gz": "-rw-r--r--",
        "/usr/share/man/man8/ferryd.8.gz": "-rw-r--r--",
        "/usr/share/man/man1/ferry-probe.1.gz": "-rw-r--r--",
        "/usr/share/bash-completion/completions/ferry": "-rw-r--r--",
        "/usr/share/doc/ferry/copyright": "-rw-r--r--",
        "/usr/share/ferry/setup-qemu-user": "-rwxr-xr-x",
    }
    for path, mode in want.items():
        assert files.get(path) == mode, (path, files.get(path))
    # The packaged unit and config are the tree's.
    for path, src in (("/lib/systemd/system/ferryd.service", "contrib/systemd/ferryd.service"),
                      ("/etc/ferry/ferryd.conf", "contrib/ferryd.conf")):
        data = subprocess.run(f"dpkg-deb --fsys-tarfile {DEBS[0]} | tar -xOf - .{path}",
                              shell=True, capture_output=True, check=True).stdout
        with open(os.path.join(REPO, src), "rb") as f:
            assert data == f.read(), path
    # Nothing of the build tree or the static guest tools leaks into the package.
    assert not [p for p in files if re.search(r"obj-|/tests?/|probe-responder|dirtier", p)]


def test_control_fields_and_scripts(tmp_path):
    info = run(["dpkg-deb", "-I", DEBS[0]])
    fields = dict(re.findall(r"^ ([A-Z][A-Za-z-]+): (.*)$", info, re.M))
    assert fields["Package"] == "ferry" and fields["Architecture"] == "amd64"
    with open(os.path.join(REPO, "meson.build")) as f:
        version = re.search(r"version : '([^']+)'", f.read()).group(1)
    assert fields["Version"].split("-")[0] == version, (fields["Version"], version)
    deps = {d.split()[0] for d in fields["Depends"].split(", ")}
    for d in ("qemu-system-x86", "qemu-utils", "python3", "iproute2", "libc6", "libuv1",
              "libjansson4", "libmicrohttpd12", "libcurl4", "libraft2", "libnl-3-200",
              "libnl-route-3-200", "libsystemd0"):
        assert d in deps, (d, fields["Depends"])
    # EFI VMs need OVMF; BIOS ones (the default) do not, so it is recommended, not required
    assert fields.get("Recommends") == "ovmf", fields
    ctl = tmp_path / "control"
    run(["dpkg-deb", "-e", DEBS[0], str(ctl)])
    assert (ctl / "conffiles").read_text().split() == ["/etc/ferry/ferryd.conf"]
    postinst = (ctl / "postinst").read_text()
    assert "deb-systemd-helper enable 'ferryd.service'" in postinst  # enabled on install
    assert "deb-systemd-invoke $_dh_action 'ferryd.service'" in postinst  # restart on upgrade
    # QEMU never runs as root: the user it runs as is made on configure.
    assert "/usr/share/ferry/setup-qemu-user ferry-qemu" in postinst
    assert "adduser" in deps
    udev = subprocess.run(f"dpkg-deb --fsys-tarfile {DEBS[0]} | tar -tf - | grep rules.d/",
                          shell=True, capture_output=True, text=True).stdout
    assert udev.strip().endswith("-ferry.rules"), udev
    postrm = (ctl / "postrm").read_text()
    assert "rm -rf /etc/ferry /run/ferry" in postrm and "deb-systemd-helper purge" in postrm


def test_extracted_programs_run(root):
    assert run([str(root / "usr/sbin/ferryd"), "--version"]).strip() == "ferryd " + \
        run(["dpkg-deb", "-f", DEBS[0], "Version"]).strip().split("-")[0]
    assert run([str(root / "usr/bin/ferry"), "--version"]).startswith("ferry ")
    assert run([str(root / "usr/bin/ferry-probe"), "--version"]).startswith("ferry-probe ")
    # The packaged config loads in the packaged ferryd.
    run([str(root / "usr/sbin/ferryd"), "--config", str(root / "etc/ferry/ferryd.conf"),
         "--version"])
    # ferry finds the lab script next to itself (PREFIX/share/ferry/lab).
    assert "usage" in run([str(root / "usr/bin/ferry"), "lab", "--help"]).lower()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_packaged_unit_verifies(root, tmp_path):
    """systemd-analyze verify on the packaged unit, its ExecStart pointed at the extracted
    ferryd (verify checks that it exists) and man pages looked up in the extracted tree."""
    text = (root / "lib/systemd/system/ferryd.service").read_text()
    unit = tmp_path / "ferryd.service"
    unit.write_text(text.replace("/usr/sbin/ferryd", str(root / "usr/sbin/ferryd")))
    p = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       env=dict(os.environ, MANPATH=str(root / "usr/share/man")))
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare")
def test_purge_keeps_vm_disks(tmp_path):
    """The package's postrm purge, in a private mount namespace whose /etc, /var/lib and /run
    are scratch tmpfs: ferry's configuration and state go, a VHD under /var/lib/ferry stays."""
    ctl = tmp_path / "control"
    run(["dpkg-deb", "-e", DEBS[0], str(ctl)])
    # Our part only: debhelper's snippets talk to the real systemd's state.
    ours = (ctl / "postrm").read_text().split("# Automatically added by")[0]
    (tmp_path / "postrm").write_text(ours + "\nexit 0\n")
    script = f"""set -e
mount -t tmpfs none /etc; mount -t tmpfs none /var/lib; mount -t tmpfs none /run
mkdir -p /etc/ferry /var/lib/ferry/vms/web1 /var/lib/ferry/disks /run/ferry/vms
echo '{{}}' >/etc/ferry/ferryd.conf; echo x >/var/lib/ferry/vms/web1/spec.json
echo x >/var/lib/ferry/events.jsonl; echo t >/var/lib/ferry/api.token
echo disk >/var/lib/ferry/disks/web1.vhd; mkdir -p /var/lib/ferry/empty
sh {tmp_path}/postrm purge
find /etc /var/lib /run | sort
"""
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    left = set(p.stdout.split())
    assert left == {"/etc", "/var/lib", "/run", "/var/lib/ferry", "/var/lib/ferry/disks",
                    "/var/lib/ferry/disks/web1.vhd"}, left
    assert "kept the VM disks" in p.stderr
