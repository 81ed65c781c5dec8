"""A real, impaired IP link into a network namespace, for the network fault tests (catalogue 8 and 9).

The far side is a network namespace (``ip netns add``) where a service runs (the broker, started
with :meth:`NetnsLink.command`). Two paths lead into it from the test's own namespace:

- the **impaired path**: a TUN device on each side (``near_ip`` here, ``far_ip`` there) with a
  router thread in this process between them that reads every IP packet from one device and writes
  it to the other, after a :class:`Impairment` (loss, delay with jitter, reordering, duplication,
  or a blackhole that drops everything without a RST or FIN: a half-open path);
- the **clean path**: a veth pair (``clean_near_ip`` / ``clean_far_ip``), for what the test does not
  impair (ingest, the provisioning commands).

Why not ``tc qdisc ... netem``: the kernel the tests run on may not have ``sch_netem`` (this
project's CI kernel has none), and a userspace router impairs the same real packets of the same
real TCP connections without it. Nothing is faked above IP: the kernel's TCP, TLS and MQTT on both
ends see packets lost, late, out of order or twice.

Needs root, ``ip`` (iproute2) and /dev/net/tun; :func:`netns_unavailable` says why not.
"""

from __future__ import annotations

import fcntl
import heapq
import itertools
import os
import random
import select
import shutil
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Impairment", "LinkStats", "NetnsLink", "netns_unavailable"]

_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000
_counter = itertools.count(1)


def netns_unavailable() -> str | None:
    """Why network-namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (no TUN support)"
    return None


@dataclass(frozen=True, slots=True)
class Impairment:
    """What happens to each packet on the impaired path, in both directions (netem's knobs)."""

    loss: float = 0.0  # probability a packet is dropped
    delay_s: float = 0.0  # every packet held this long ...
    jitter_s: float = 0.0  # ... plus a uniform extra in [0, jitter_s)
    reorder: float = 0.0  # probability a packet skips the delay (overtakes those held)
    duplicate: float = 0.0  # probability a packet is sent twice
    blackhole: bool = False  # drop everything, tell nobody: a half-open path

    def __post_init__(self) -> None:
        for p in (self.loss, self.reorder, self.duplicate):
            if not 0.0 <= p <= 1.0:
                raise ValueError("probabilities lie in [0, 1]")


@dataclass
class LinkStats:
    forwarded: int = 0
    dropped: int = 0
    reordered: int = 0
    duplicated: int = 0
    delayed: int = 0


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


@dataclass
class NetnsLink:
    """Create with :meth:`open`; :meth:`close` removes the namespace, its devices and the router."""

    ns: str
    near_ip: str
    far_ip: str
    clean_near_ip: str
    clean_far_ip: str
    seed: int = 0
    stats: LinkStats = field(default_factory=LinkStats)
    _fds: tuple[int, int] = (-1, -1)
    _impairment: Impairment = field(default_factory=Impairment)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _held: list[tuple[float, int, int, bytes]] = field(default_factory=list)

    @classmethod
    def open(cls, *, seed: int = 0) -> NetnsLink:
        n = next(_counter)
        tag = f"{os.getpid() % 100000}x{n}"
        net = 16 + (os.getpid() * 7 + n) % 200  # 10.<net>.0.0/16, distinct per process and link
        link = cls(f"vigil-{tag}", f"10.{net}.0.2", f"10.{net}.0.1", f"10.{net}.1.2", f"10.{net}.1.1", seed)
        link._setup(tag)
        return link

    def _setup(self, tag: str) -> None:
        near, far, vnear, vfar = f"vn{tag}", f"vf{tag}", f"cn{tag}", f"cf{tag}"
        _run("ip", "netns", "add", self.ns)
        try:
            self._fds = (_open_tun(near), _open_tun(far))
            inside = ("ip", "netns", "exec", self.ns)
            _run("ip", "link", "set", far, "netns", self.ns)
            _run("ip", "addr", "add", self.near_ip, "peer", self.far_ip, "dev", near)
            _run("ip", "link", "set", near, "up")
            _run(*inside, "ip", "link", "set", "lo", "up")
            _run(*inside, "ip", "addr", "add", self.far_ip, "peer", self.near_ip, "dev", far)
            _run(*inside, "ip", "link", "set", far, "up")
            _run("ip", "link", "add", vnear, "type", "veth", "peer", "name", vfar)
            _run("ip", "link", "set", vfar, "netns", self.ns)
            _run("ip", "addr", "add", f"{self.clean_near_ip}/30", "dev", vnear)
            _run("ip", "link", "set", vnear, "up")
            _run(*inside, "ip", "addr", "add", f"{self.clean_far_ip}/30", "dev", vfar)
            _run(*inside, "ip", "link", "set", vfar, "up")
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._route, name=f"netns-router-{tag}", daemon=True)
        self._thread.start()

    def command(self, *args: str) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.ns, *args]

    def impair(self, impairment: Impairment) -> None:
        with self._lock:
            self._impairment = impairment
            if impairment.blackhole:
                self.stats.dropped += len(self._held)
                self._held.clear()  # what was in flight is lost with the path

    def blackhole(self) -> None:
        self.impair(Impairment(blackhole=True))

    def restore(self) -> None:
        self.impair(Impairment())

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for fd in self._fds:
            if fd >= 0:
                os.close(fd)  # a TUN device goes with its last descriptor
        self._fds = (-1, -1)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)  # and the veth pair

    # -- the router thread ------------------------------------------------------------------------

    def _route(self) -> None:
        rng = random.Random(self.seed)
        near, far = self._fds
        other = {near: far, far: near}
        seq = itertools.count()
        while not self._stop.is_set():
            with self._lock:
                wait = min(0.05, max(0.0, self._held[0][0] - time.monotonic())) if self._held else 0.05
            readable, _, _ = select.select([near, far], [], [], wait)
            now = time.monotonic()
            for fd in readable:
                while (packet := _read(fd)) is not None:
                    self._admit(packet, other[fd], now, rng, seq)
            self._release(time.monotonic())

    def _admit(self, packet: bytes, out: int, now: float, rng: random.Random, seq: itertools.count[int]) -> None:
        with self._lock:
            imp = self._impairment
            if imp.blackhole or rng.random() < imp.loss:
                self.stats.dropped += 1
                return
            copies = 2 if rng.random() < imp.duplicate else 1
            self.stats.duplicated += copies - 1
            for _ in range(copies):
                delay = imp.delay_s + rng.random() * imp.jitter_s
                if delay > 0 and rng.random() < imp.reorder:
                    delay = 0.0
                    self.stats.reordered += 1
                elif delay > 0:
                    self.stats.delayed += 1
                heapq.heappush(self._held, (now + delay, next(seq), out, packet))

    def _release(self, now: float) -> None:
        with self._lock:
            while self._held and self._held[0][0] <= now:
                _, _, out, packet = heapq.heappop(self._held)
                try:
                    os.write(out, packet)
                    self.stats.forwarded += 1
                except OSError:  # the device is down or its queue full: the packet is lost
                    self.stats.dropped += 1


def _read(fd: int) -> bytes | None:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None
