# SPDX-License-Identifier: MIT
"""The real Debian 12 guest (scripts/make-debian-guest) for end-to-end tests: build or find it
in the cache, give it an address by DHCP (busybox udhcpd with a static lease for its MAC: a
real guest takes no ferry.ip= from a kernel command line ferry does not write), boot it in
QEMU (TCG) from its own disk with ferry's devices or VMware's, time it, power it off."""
import json
import os
import shutil
import subprocess
import time

from ferrytest import BUILD, qmp_run, run, wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAKE_GUEST = os.path.join(ROOT, "scripts", "make-debian-guest")
RESPONDER = os.path.join(BUILD, "guest", "probe-responder")
QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
BUSYBOX = "/bin/busybox"
# A cold build downloads ~150 MB of packages and takes 3-6 min on a loaded 2-core machine.
BUILD_TIMEOUT = 900
BOOT_TIMEOUT = 300  # TCG, a full systemd boot: 20 s on a quiet machine, 160 s seen under load 18


def variant_args(variant):
    return ["--variant", variant] if variant else []


def missing(variant=None):
    """Why the real guest (or its variant, e.g. "ferry-host") cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root (mmdebstrap, network namespaces, taps)"
    if not os.access(RESPONDER, os.X_OK):
        return f"{RESPONDER} is not built"
    if not os.access(QEMU, os.X_OK):
        return "qemu-system-x86_64 is not installed"
    if not os.access(BUSYBOX, os.X_OK):
        return f"{BUSYBOX} (busybox-static, for udhcpd) is not installed"
    key = run([MAKE_GUEST, "--probe-responder", RESPONDER, "--print-key", *variant_args(variant)],
              check=False)
    if key.returncode != 0:
        return f"make-debian-guest: {key.stderr.strip()}"
    prefix = f"debian12+{variant}" if variant else "debian12"
    cached = os.path.join(cache_dir(), f"{prefix}-{key.stdout.strip()}", "info.json")
    if not os.path.exists(cached) and not shutil.which("mmdebstrap"):
        return "mmdebstrap is not installed: run scripts/install-deps guest"
    return None


def cache_dir():
    return os.environ.get("FERRY_GUEST_CACHE", "/var/cache/ferry/guests")


def build(variant=None):
    """The guest's directory (scripts/make-debian-guest's output) and its info.json, built
    first when the cache does not have it; the seconds it took are in info["took_s"]."""
    t0 = time.monotonic()
    p = run([MAKE_GUEST, "--probe-responder", RESPONDER, *variant_args(variant)],
            timeout=BUILD_TIMEOUT)
    d = p.stdout.strip().splitlines()[-1]
    with open(os.path.join(d, "info.json")) as f:
        info = json.load(f)
    info["took_s"] = round(time.monotonic() - t0, 2)
    return d, info


def to_fixed_vhd(src, dst, src_format="raw"):
    """Converts a disk to a fixed VHD of exactly its virtual size (force_size: no CHS
    rounding), as ferry keeps disks on a volume."""
    run(["qemu-img", "convert", "-f", src_format, "-O", "vpc", "-o",
         "subformat=fixed,force_size=on", src, dst], timeout=300)
    return dst


def dhcpd_conf(path, iface, server_ip, leases, pool):
    """Writes a udhcpd configuration: serve on iface, static leases {mac: ip}, the pool
    (first, last) for every other MAC. Returns path."""
    d = os.path.dirname(path)
    lines = [f"interface {iface}", f"start {pool[0]}", f"end {pool[1]}",
             f"lease_file {d}/udhcpd.leases", f"pidfile {d}/udhcpd.pid",
             f"server {server_ip}", "option subnet 255.255.255.0", "option lease 86400",
             "max_leases 64"]
    lines += [f"static_lease {mac} {ip}" for mac, ip in leases.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    open(os.path.join(d, "udhcpd.leases"), "w").close()
    return path


def start_dhcpd(netns, conf):
    """busybox udhcpd -f conf in netns, as a child of ours (the caller stops it with stop())."""
    return subprocess.Popen(["ip", "netns", "exec", netns, BUSYBOX, "udhcpd", "-f", conf],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop(proc, timeout=10):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Qemu:
    """The guest in QEMU (TCG) the way ferryd starts a VM without a kernel (-boot c, the disk a
    fixed VHD's data as raw, or a qcow2 overlay: disk_format="qcow2"), in netns on tap; devices
    "virtio" (ferry's) or "vmware" (pvscsi + vmxnet3, what the guest had under VMware); cpu:
    QEMU's -cpu (TCG's "max" offers SVM). Console to a file, QMP on a socket."""

    def __init__(self, netns, workdir, vhd, mac, tap="tap0", devices="virtio", memory=512,
                 cpus=1, disk_format="vhd", cpu="max"):
        self.console_path = os.path.join(workdir, "console.log")
        self.qmp_path = os.path.join(workdir, "qmp.sock")
        self.err_path = os.path.join(workdir, "qemu.err")
        if disk_format == "vhd":
            size = os.path.getsize(vhd) - 512  # the data before the VHD footer
            fmt = f"driver=raw,file=disk0-file,node-name=disk0,size={size}"
        elif disk_format == "qcow2":
            fmt = "driver=qcow2,file=disk0-file,node-name=disk0"
        else:
            raise ValueError(f"disk_format: {disk_format!r} is neither vhd nor qcow2")
        cmd = [QEMU, "-name", "guest=realguest", "-machine", "pc,accel=tcg", "-cpu", cpu,
               "-smp", str(cpus), "-m", str(memory), "-nodefaults", "-no-user-config",
               "-display", "none", "-vga", "none", "-serial", f"file:{self.console_path}",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
               "-blockdev", f"driver=file,filename={vhd},node-name=disk0-file",
               "-blockdev", fmt,
               "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no,vhost=off"]
        if devices == "virtio":
            cmd += ["-device", "virtio-blk-pci,drive=disk0",
                    "-device", f"virtio-net-pci,netdev=net0,mac={mac}"]
        elif devices == "vmware":
            cmd += ["-device", "pvscsi,id=scsi0", "-device", "scsi-hd,drive=disk0,bus=scsi0.0",
                    "-device", f"vmxnet3,netdev=net0,mac={mac}"]
        else:
            raise ValueError(f"devices: {devices!r} is neither virtio nor vmware")
        cmd += ["-boot", "c"]
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(["ip", "netns", "exec", netns, *cmd],
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        self.started = time.monotonic()

    def console(self):
        try:
            with open(self.console_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def alive(self):
        if self.proc.poll() is not None:
            with open(self.err_path) as f:
                raise AssertionError(f"QEMU exited {self.proc.returncode}:\n{f.read()}\n"
                                     f"console:\n{self.console()[-3000:]}")
        return True

    def qmp(self, command):
        reply = qmp_run(self.qmp_path, (command, None))[0]
        assert "error" not in reply, f"QMP {command}: {reply}"

    def powerdown(self, timeout=120):
        """The ACPI power button (what `ferry vm stop` presses); returns the seconds until
        QEMU exited after the guest powered itself off. Fails if it did not."""
        t0 = time.monotonic()
        self.qmp("system_powerdown")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"QEMU still runs {timeout} s after the ACPI power button:\n"
                                 f"{self.console()[-3000:]}") from None
        return time.monotonic() - t0

    def kill(self):
        stop(self.proc)


def udp_echo(netns, ip, port=7000, timeout=1.0):
    """One datagram to the probe responder at ip from netns; True if it came back."""
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(%r)\n"
            "s.sendto(b'ferry',(%r,%d))\n"
            "try:\n  d,_=s.recvfrom(64);sys.exit(0 if d==b'ferry' else 1)\n"
            "except OSError:\n  sys.exit(1)\n") % (timeout, ip, port)
    p = subprocess.run(["ip", "netns", "exec", netns, "/usr/bin/python3", "-c", code],
                       capture_output=True, timeout=timeout + 10)
    return p.returncode == 0


def tcp_banner(netns, ip, port=22, timeout=5.0):
    """The first line a TCP server at ip:port sends (an SSH server's version), or ''."""
    code = ("import socket\n"
            "s=socket.create_connection((%r,%d),timeout=%r)\n"
            "print(s.makefile('rb').readline().decode(errors='replace').strip())\n"
            ) % (ip, port, timeout)
    p = subprocess.run(["ip", "netns", "exec", netns, "/usr/bin/python3", "-c", code],
                       capture_output=True, text=True, timeout=timeout + 10)
    return p.stdout.strip() if p.returncode == 0 else ""


def wait_probe(netns, ip, guest, timeout=BOOT_TIMEOUT):
    """Seconds from QEMU's start until the probe responder at ip answers."""
    try:
        wait_for(lambda: guest.alive() and udp_echo(netns, ip, timeout=0.5), timeout,
                 f"the probe responder at {ip}", interval=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; console:\n{guest.console()[-3000:]}") from None
    return time.monotonic() - guest.started
