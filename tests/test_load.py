"""Load: 1000 tunnels open at once through one tunneld --listen, each
moving its own bytes both ways, all byte-exact; and what they cost in
memory (PSS of tunneld's processes), reported in build/load.txt."""

import asyncio
import os
import random
import resource

from conftest import REPO, descendants, idle_spares, wait_until

TUNNELS = 1000
SIZE = 32 * 1024        # each way, per tunnel


def private_dirty_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Private_Dirty:"))


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass                        # ended meanwhile
    return total


async def echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    finally:
        writer.close()


async def one(proxy, target, i, opened, release):
    blob = random.Random(i).randbytes(SIZE)
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    writer.write(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    writer.write(blob)
    await writer.drain()
    got = await reader.readexactly(SIZE)
    opened.append(i)
    await release.wait()            # every tunnel open at once
    writer.write_eof()
    rest = await reader.read()
    writer.close()
    return got == blob and rest == b""


async def load(proxy):
    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=2048)
    target = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    opened, release = [], asyncio.Event()
    tasks = [asyncio.create_task(one(proxy, target, i, opened, release))
             for i in range(TUNNELS)]
    for _ in range(1200):               # at most 120 s for all to open
        if len(opened) == TUNNELS or any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.1)
    workers = descendants(proxy.pid)
    spares = idle_spares(proxy.pid)     # waiting for the next clients: none of these
    workers = [w for w in workers if w not in spares]
    pss = pss_kib(workers), pss_kib([proxy.pid])
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)
    server.close()
    return len(workers), pss, results


def test_1000_concurrent_tunnels(make_proxy):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    p = make_proxy("listen", args=["--max-conns", str(TUNNELS + 50)])
    # A worker starts from exec: what it wrote before its client came (its
    # relocations, its copy of the rules) is its own, not the listener's.
    assert wait_until(lambda: idle_spares(p.pid), 5)
    start = private_dirty_kib(sorted(idle_spares(p.pid))[0])
    nworkers, (pss, listener), results = asyncio.run(load(p))
    bad = [r for r in results if r is not True]
    assert not bad, f"{len(bad)} tunnels failed, e.g. {bad[:3]}"
    assert nworkers == TUNNELS, nworkers
    per = pss / nworkers
    (REPO / "build").mkdir(exist_ok=True)
    (REPO / "build" / "load.txt").write_text(
        f"{TUNNELS} tunnels, {SIZE} bytes each way each, all byte-exact\n"
        f"PSS of the {nworkers} workers: {pss} KiB, {per:.1f} KiB a tunnel; "
        f"listener {listener} KiB; a spare before its client {start} KiB private\n")
    # A buffer too many shows here.
    assert per - start < 64, f"{per:.1f} KiB PSS a tunnel, {start} KiB of it at start"
    assert wait_until(lambda: not p.workers(), 20), "workers left"
