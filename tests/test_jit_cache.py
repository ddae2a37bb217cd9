"""kernels.jit.drop_stale_cache: Numba's cache is emptied when any kernel source changes."""
from kernels.jit import drop_stale_cache


def test_cache_is_dropped_when_a_source_changes_and_kept_otherwise(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "conv.py").write_text("a = 1\n")
    (src / "plan.py").write_text("b = 2\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    compiled = [cache / "plan.layer_forward-78.py311.nbi", cache / "plan.layer_forward-78.py311.1.nbc"]
    other = cache / "plan.cpython-311.pyc"                       # Python's own cache is not Numba's
    for f in compiled + [other]:
        f.write_bytes(b"x")

    assert drop_stale_cache(src.glob("*.py"), cache)             # no marker yet: built from unknown sources
    assert not any(f.exists() for f in compiled) and other.exists()
    for f in compiled:
        f.write_bytes(b"x")                                      # Numba compiles and caches again
    assert not drop_stale_cache(src.glob("*.py"), cache)         # same sources: kept
    assert all(f.exists() for f in compiled)

    (src / "conv.py").write_text("a = 3\n")                     # a callee's file changes, its caller's does not
    assert drop_stale_cache(src.glob("*.py"), cache)
    assert not any(f.exists() for f in compiled) and other.exists()
    assert len(list(cache.glob("sources-*.stamp"))) == 1


def test_an_unwritable_cache_folder_is_left_alone(tmp_path):
    src = tmp_path / "conv.py"
    src.write_text("a = 1\n")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    assert not drop_stale_cache([src], blocker / "__pycache__")
    assert blocker.read_text().startswith("a file")
