"""Server-owned metadata: uids are RFC 4122 version 4, generated names use utilrand's alphabet."""

from __future__ import annotations

import uuid

from kubelite.apiserver import objects


def test_uids_are_random_version_4() -> None:
    seen = set()
    for _ in range(2000):
        u = objects.new_uid()
        parsed = uuid.UUID(u)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == u
        seen.add(u)
    assert len(seen) == 2000


def test_generated_names_take_five_characters_of_the_alphabet() -> None:
    names = {objects.generate_name("web-") for _ in range(2000)}
    assert len(names) > 1990
    for n in names:
        assert n.startswith("web-") and len(n) == 9 and set(n[4:]) <= set(objects._ALPHABET)
    assert len(objects.generate_name("x" * 70)) == 63


def test_a_forked_child_draws_its_own_uids() -> None:
    import os

    objects.new_uid()  # the parent's pool is filled
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.write(w, objects.new_uid().encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.waitpid(pid, 0)
    os.close(r)
    assert child != objects.new_uid()
