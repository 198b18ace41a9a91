"""Child process of the store's crash test: writes forever, printing each acknowledged write.

The parent kills it with SIGKILL mid-stream; every line printed before that is a write the
store acknowledged, so it must be there when the parent reopens the file.
"""

from __future__ import annotations

import asyncio
import sys

from kubelite.store import open_store


async def main(path: str) -> None:
    store = open_store(path)
    await store.start()

    async def writer(n: int) -> None:
        i = 0
        while True:
            key = f"/registry/crash/{n}/{i:08d}"
            kv = await store.create(key, b'{"writer": %d, "i": %d}' % (n, i))
            print(key, kv.mod_revision, flush=True)
            i += 1

    # Several writers, so that acknowledged writes come from group commits of many.
    await asyncio.gather(*(writer(n) for n in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
