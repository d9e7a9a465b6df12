"""gateway.kept.Kept: bounded, least recently used out first, holding what it is told to."""

from __future__ import annotations

import gc
import weakref

from gateway.kept import Kept


class _Thing:
    pass


def test_least_recently_used_goes_first_and_held_objects_live() -> None:
    kept: Kept[str] = Kept(2)
    thing = _Thing()
    alive = weakref.ref(thing)
    kept.put(("a", id(thing)), "A", held=[thing])
    kept.put("b", "B")
    assert kept.get(("a", id(thing))) == "A"        # now the most recently used
    del thing
    gc.collect()
    assert alive() is not None                         # held by its entry
    kept.put("c", "C")                                 # "b" goes, not "a"
    assert kept.get("b") is None and kept.get("c") == "C" and len(kept) == 2
    kept.put("d", "D")                                 # now "a" goes, and its object with it
    gc.collect()
    assert alive() is None and len(kept) == 2
