"""Tests of npface.data.folders: listing, people files, decoding, cropping, the cache, the split."""
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npface.data import cache as cache_mod
from npface.data import folders
from npface.data.folders import (LFW_CROP, CropBox, decode_face, load_folder, load_lfw, read_people_file,
                                 scan_folder, split_identities)

LFW = Path(os.environ.get("NPFACE_LFW", Path(__file__).resolve().parents[2] / ".." / "shared" / "lfw"))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder; the user's cache is never touched."""
    d = tmp_path / "cache"
    monkeypatch.setenv("NPFACE_CACHE", str(d))
    return d


def _rgb(seed, size=60):
    """A smooth random colour image (H, W, 3) uint8 that survives JPEG well."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    c = rng.uniform(40, 215, size=(3, 3))
    img = c[:, 0, None, None] + c[:, 1, None, None] * 0.3 * np.sin(3 * x + seed) + c[:, 2, None, None] * 0.2 * y
    return np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def make_folder(root: Path) -> Path:
    """alice: 3 JPEG; bob: grayscale PNG + RGBA PNG; carol: 1 JPEG + 1 corrupt '.jpg'; plus clutter."""
    for name in ("alice", "bob", "carol", "dave_empty", ".hidden"):
        (root / name).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(_rgb(i)).save(root / "alice" / f"alice_{i + 1:04d}.jpg", quality=95)
    Image.fromarray(_rgb(10)[:, :, 1]).save(root / "bob" / "bob_0001.png")          # mode L
    rgba = np.concatenate([_rgb(11), np.full((60, 60, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(root / "bob" / "bob_0002.png")
    Image.fromarray(_rgb(20)).save(root / "carol" / "carol_0001.jpg", quality=95)
    (root / "carol" / "carol_0002.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "carol" / "notes.txt").write_text("not an image")
    (root / "alice" / ".alice_0009.jpg").write_bytes(b"hidden")
    Image.fromarray(_rgb(30)).save(root / ".hidden" / "x.jpg")
    Image.fromarray(_rgb(31)).save(root / "stray.jpg")
    return root


def write_people(path: Path, lines) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------
# Listing and people files
# --------------------------------------------------------------------------

def test_scan_layout(tmp_path):
    root = make_folder(tmp_path / "data")
    idx = scan_folder(root)
    assert idx.identities == ("alice", "bob", "carol")           # empty and hidden folders ignored
    assert idx.files == ("alice/alice_0001.jpg", "alice/alice_0002.jpg", "alice/alice_0003.jpg",
                         "bob/bob_0001.png", "bob/bob_0002.png", "carol/carol_0001.jpg", "carol/carol_0002.jpg")
    assert idx.labels.dtype == np.int64
    np.testing.assert_array_equal(idx.labels, [0, 0, 0, 1, 1, 2, 2])


def test_people_file_parse_and_restrict(tmp_path):
    root = make_folder(tmp_path / "data")
    plist = write_people(tmp_path / "people.txt", ["2", "carol\t2", "alice\t3"])
    assert read_people_file(plist) == [("carol", 2), ("alice", 3)]
    idx = scan_folder(root, plist)
    assert idx.identities == ("alice", "carol")
    assert set(f.split("/")[0] for f in idx.files) == {"alice", "carol"}
    # a sequence of names works the same way
    assert scan_folder(root, ["carol", "alice"]).files == idx.files


def test_people_file_count_mismatch_warns(tmp_path):
    root = make_folder(tmp_path / "data")
    plist = write_people(tmp_path / "people.txt", ["1", "alice\t5"])
    with pytest.warns(UserWarning, match="alice \\(listed 5, found 3\\)"):
        idx = scan_folder(root, plist)
    assert len(idx.files) == 3


@pytest.mark.parametrize("lines, match", [
    (["two", "alice\t3"], r"people\.txt:1: expected the number of people"),
    (["1", "alice"], r"people\.txt:2: expected 'name<TAB>n_images'"),
    (["1", "alice\tthree"], r"people\.txt:2: expected 'name<TAB>n_images'"),
    (["1", "alice\t3\textra"], r"people\.txt:2: expected 'name<TAB>n_images'"),
    (["1", "alice\t0"], r"people\.txt:2: .*n_images >= 1"),
    (["2", "alice\t3"], r"first line says 2 people but 1 are listed"),
    (["2", "alice\t3", "alice\t3"], r"people\.txt:3: person 'alice' is listed twice"),
    ([""], r"empty people list"),
])
def test_people_file_malformed(tmp_path, lines, match):
    plist = write_people(tmp_path / "people.txt", lines)
    with pytest.raises(ValueError, match=match):
        read_people_file(plist)


def test_errors_missing_and_empty(tmp_path):
    root = make_folder(tmp_path / "data")
    with pytest.raises(FileNotFoundError, match="dataset folder not found: .*nowhere"):
        scan_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="people list not found: .*missing.txt"):
        scan_folder(root, tmp_path / "missing.txt")
    plist = write_people(tmp_path / "people.txt", ["2", "alice\t3", "zoe\t1"])
    with pytest.raises(FileNotFoundError, match=r"person 'zoe' has no folder .*data/zoe"):
        scan_folder(root, plist)
    with pytest.raises(FileNotFoundError, match=r"person 'zoe' has no folder"):
        load_folder(root, ["zoe"], progress=False)
    empty = tmp_path / "empty"
    (empty / "someone").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty dataset: no image files .*empty"):
        scan_folder(empty)
    with pytest.raises(ValueError, match="empty dataset"):
        load_folder(empty, progress=False)
    with pytest.raises(ValueError, match="people must be a list-file path or a sequence"):
        scan_folder(root, ["../alice"])
    with pytest.raises(ValueError, match="crop must be a CropBox"):
        load_folder(root, crop=(53, 73, 144), progress=False)


def test_all_files_corrupt_is_an_empty_dataset(tmp_path, private_cache):
    root = tmp_path / "bad"
    (root / "x").mkdir(parents=True)
    (root / "x" / "a.jpg").write_bytes(b"junk")
    for use_cache in (False, True):
        with pytest.raises(ValueError, match="none of the 1 image files .* could be decoded, e.g. x/a.jpg"):
            load_folder(root, cache=use_cache, progress=False)
    assert not private_cache.exists() or list(private_cache.iterdir()) == []


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------

def test_decode_modes_and_corrupt_skipped(tmp_path):
    root = make_folder(tmp_path / "data")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\) .*carol/carol_0002.jpg"):
        ds = load_folder(root, crop=CropBox(0, 0, 60, frame=60, out=112), cache=False, progress=False)
    assert len(ds) == 6 and ds.images.shape == (6, 112, 112, 3) and ds.images.dtype == np.uint8
    assert ds.identities == ("alice", "bob", "carol")
    assert [s[0] for s in ds.skipped] == ["carol/carol_0002.jpg"]
    np.testing.assert_array_equal(ds.labels, [0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(ds.counts, [3, 2, 1])
    gray = ds.images[ds.files.index("bob/bob_0001.png")]
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    # RGBA: the colour is kept, the alpha (7, nearly transparent) is dropped
    rgba = ds.images[ds.files.index("bob/bob_0002.png")].astype(int)
    want = np.asarray(Image.fromarray(_rgb(11)).resize((112, 112), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(rgba - want).max() <= 1
    # every image is the whole 60x60 frame here, so the JPEGs match a plain resize closely
    jpg = ds.images[0].astype(int)
    want = np.asarray(Image.fromarray(_rgb(0)).resize((112, 112), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(jpg - want).mean() < 3


def test_exif_orientation_applied(tmp_path):
    img = _rgb(3, size=60)[:, :40]                                   # (60, 40, 3): taller than wide
    exif = Image.Exif()
    exif[0x0112] = 6                                                  # "rotate 90 clockwise to view"
    Image.fromarray(img).save(tmp_path / "rot.png", exif=exif)
    out = decode_face(tmp_path / "rot.png", CropBox(0, 0, 10, frame=10, out=112))
    want = np.asarray(Image.fromarray(np.rot90(img, k=-1).copy()).resize((112, 112), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out, want)


def test_person_losing_all_images_is_dropped(tmp_path):
    root = make_folder(tmp_path / "data")
    (root / "carol" / "carol_0001.jpg").write_bytes(b"also broken")
    with pytest.warns(UserWarning, match="skipped 2 .*1 people lost all their images"):
        ds = load_folder(root, cache=False, progress=False)
    assert ds.identities == ("alice", "bob")
    np.testing.assert_array_equal(ds.labels, [0, 0, 0, 1, 1])


def test_progress_callback(tmp_path):
    root = make_folder(tmp_path / "data")
    calls = []
    with pytest.warns(UserWarning):
        load_folder(root, cache=False, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 7) for i in range(1, 8)]


def test_printed_progress(tmp_path, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *a, **k):  # force the plain-text fallback
        if name == "tqdm":
            raise ImportError("no tqdm")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    root = make_folder(tmp_path / "data")
    with pytest.warns(UserWarning):
        load_folder(root, cache=False, progress=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"decoding {root}: 7/7 (100 %")
    assert len(err) == 7                              # a line per tenth, at most, and one at the end


def _blob(shape, x, y, sigma):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))


def test_crop_geometry_matches_points_to_crop(tmp_path):
    """A blob at a known frame position appears in the decoded crop where points_to_crop says."""
    for (x, y) in [(100.3, 120.7), (140.0, 160.25), (70.6, 95.1)]:
        img = (255 * _blob((250, 250), x, y, 4.0)).round().astype(np.uint8)
        path = tmp_path / "blob.png"
        Image.fromarray(np.stack([img] * 3, -1)).save(path)
        out = decode_face(path, LFW_CROP)[..., 0].astype(np.float64)       # (112, 112)
        assert out.shape == (112, 112)
        qx, qy = LFW_CROP.points_to_crop(np.array([x, y]))
        yy, xx = np.mgrid[0:112, 0:112]
        win = (np.abs(xx - qx) < 12) & (np.abs(yy - qy) < 12)
        w = out * win
        cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
        assert abs(cx - qx) < 0.1 and abs(cy - qy) < 0.1, (cx, cy, qx, qy)


def test_cropbox_points_round_trip_and_validation():
    p = np.random.default_rng(0).uniform(0, 250, size=(5, 68, 2))
    p0 = p.copy()
    q = LFW_CROP.points_to_crop(p)
    np.testing.assert_array_equal(p, p0)
    np.testing.assert_allclose(LFW_CROP.points_from_crop(q), p, atol=1e-12)
    # the box's outer edges map to the crop's outer edges
    np.testing.assert_allclose(LFW_CROP.points_to_crop(np.array([[52.5, 72.5], [196.5, 216.5]])),
                               [[-0.5, -0.5], [111.5, 111.5]], atol=1e-12)
    assert LFW_CROP.pil_box(250, 250) == (53, 73, 197, 217)
    with pytest.raises(ValueError, match="size must be an integer"):
        CropBox(0, 0, 10.5)
    with pytest.raises(ValueError, match=">= 1"):
        CropBox(0, 0, 0)
    with pytest.raises(ValueError, match=r"points must have shape \(\.\.\., 2\)"):
        LFW_CROP.points_to_crop(np.zeros((4, 3)))


def test_widened_crop_keeps_the_crop_in_its_centre(tmp_path):
    """The widened box samples the frame where the crop does in its centre: the decoded centre is the
    decoded crop, pixel for pixel (the same Pillow sampling positions and filter); and it sees more."""
    assert folders.LFW_CONTEXT == CropBox(26, 46, 198, 250, 154) == LFW_CROP.widened(folders.CONTEXT_MARGIN)
    m = folders.CONTEXT_MARGIN
    q = np.random.default_rng(1).uniform(0, 250, size=(10, 2))
    np.testing.assert_allclose(folders.LFW_CONTEXT.points_to_crop(q), LFW_CROP.points_to_crop(q) + m, atol=1e-9)
    rng = np.random.default_rng(2)
    img = (rng.uniform(0, 1, (50, 50, 3)) * 255).astype(np.uint8)
    path = tmp_path / "picture.png"
    Image.fromarray(np.asarray(Image.fromarray(img).resize((250, 250), Image.Resampling.BICUBIC))).save(path)
    crop, wide = decode_face(path, LFW_CROP), decode_face(path, folders.LFW_CONTEXT)
    assert wide.shape == (154, 154, 3)
    np.testing.assert_array_equal(wide[m:-m, m:-m], crop)
    assert LFW_CROP.widened(0) == LFW_CROP
    for margin, match in ((5, "whole-pixel corners"), (56, "leaves the 250-pixel frame"), (-7, "integer >= 0"),
                          (7.0, "integer >= 0")):
        with pytest.raises(ValueError, match=match):
            LFW_CROP.widened(margin)


# --------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------

def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NPFACE_CACHE", str(tmp_path / "elsewhere"))
    assert cache_mod.cache_dir() == tmp_path / "elsewhere" and (tmp_path / "elsewhere").is_dir()
    monkeypatch.delenv("NPFACE_CACHE")
    assert cache_mod.cache_dir(create=False) == Path.home() / ".cache" / "npface"


def test_cache_reuse(tmp_path, private_cache, monkeypatch):
    root = make_folder(tmp_path / "data")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds1 = load_folder(root, progress=False)
    assert ds1.cache_file is not None and ds1.cache_file.parent == private_cache
    assert sorted(p.suffix for p in private_cache.iterdir()) == [".json", ".npy"]   # no temp files left
    assert isinstance(ds1.images, np.memmap) and not ds1.images.flags.writeable

    def must_not_decode(*a, **k):
        raise AssertionError("cache hit expected, but an image was decoded")

    real_decode = folders.decode_face
    monkeypatch.setattr(folders, "decode_face", must_not_decode)
    with pytest.warns(UserWarning, match="skipped 1"):            # still told about the bad file
        ds2 = load_folder(root, progress=False)
    assert ds2.cache_file == ds1.cache_file
    np.testing.assert_array_equal(ds2.images, ds1.images)
    assert ds2.files == ds1.files and ds2.skipped == ds1.skipped
    np.testing.assert_array_equal(ds2.labels, ds1.labels)
    monkeypatch.setattr(folders, "decode_face", real_decode)
    # the cached array equals a fresh decode
    with pytest.warns(UserWarning):
        fresh = load_folder(root, cache=False, progress=False)
    np.testing.assert_array_equal(fresh.images, ds1.images)


def test_cache_key_changes(tmp_path):
    root = make_folder(tmp_path / "data")
    idx = scan_folder(root)
    k0 = folders.dataset_key(idx, LFW_CROP)
    assert folders.dataset_key(scan_folder(root), LFW_CROP) == k0                       # stable
    assert folders.dataset_key(idx, CropBox(53, 73, 150)) != k0                        # crop
    assert folders.dataset_key(scan_folder(root, ["alice", "bob"]), LFW_CROP) != k0    # file list
    Image.fromarray(_rgb(5)).save(root / "alice" / "alice_0004.jpg")
    k1 = folders.dataset_key(scan_folder(root), LFW_CROP)
    assert k1 != k0                                                                    # added file
    p = root / "bob" / "bob_0001.png"
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert folders.dataset_key(scan_folder(root), LFW_CROP) != k1                      # modified file


def test_cache_invalidated_by_changed_dataset(tmp_path):
    root = make_folder(tmp_path / "data")
    with pytest.warns(UserWarning):
        ds1 = load_folder(root, progress=False)
    Image.fromarray(_rgb(5)).save(root / "alice" / "alice_0004.jpg")
    with pytest.warns(UserWarning):
        ds2 = load_folder(root, progress=False)
    assert ds2.cache_file != ds1.cache_file and len(ds2) == len(ds1) + 1
    assert "alice/alice_0004.jpg" in ds2.files


def test_atomic_write(tmp_path):
    target = tmp_path / "x.bin"
    cache_mod.atomic_write_text(target, "old")

    def failing(tmp):
        tmp.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        cache_mod.atomic_write(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]
    cache_mod.atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    previous = os.umask(0o027)
    try:
        written = cache_mod.atomic_write_text(tmp_path / "x.txt", "x")
        npz = cache_mod.atomic_write_npz(tmp_path / "a.npz", {"a": np.arange(3)})
    finally:
        os.umask(previous)
    # 0666 minus the umask, as open() would give, not mkstemp's private 0600
    assert os.stat(written).st_mode & 0o777 == 0o640 and os.stat(npz).st_mode & 0o777 == 0o640
    with np.load(npz, allow_pickle=False) as f:                # exactly the path asked for, no '.npz' appended
        assert f["a"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "x.txt"]


def test_interrupted_decode_publishes_nothing(tmp_path, private_cache):
    root = make_folder(tmp_path / "data")

    def interrupt(done, total):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_folder(root, progress=interrupt)
    assert list(private_cache.iterdir()) == []
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = load_folder(root, progress=False)
    assert len(ds) == 6


def test_inconsistent_cache_is_rebuilt(tmp_path):
    root = make_folder(tmp_path / "data")
    with pytest.warns(UserWarning):
        ds1 = load_folder(root, progress=False)
    expected, path = np.array(ds1.images), ds1.cache_file
    del ds1                                                            # drop the memory map first
    np.save(path, np.zeros((2, 112, 112, 3), np.uint8))                # wrong row count
    with pytest.warns(UserWarning) as record:
        ds2 = load_folder(root, progress=False)
    assert any("ignoring inconsistent cache entry" in str(w.message) for w in record)
    np.testing.assert_array_equal(ds2.images, expected)


def test_load_lfw_layout(tmp_path):
    """load_lfw reads <dir>/lfw/<person>/... restricted by <dir>/peopleDevTrain.txt."""
    lfw_dir = tmp_path / "fake_lfw"
    make_folder(lfw_dir / "lfw")
    write_people(lfw_dir / "peopleDevTrain.txt", ["2", "alice\t3", "bob\t2"])
    ds = load_lfw(lfw_dir, progress=False)
    assert ds.identities == ("alice", "bob") and len(ds) == 5 and ds.root == lfw_dir / "lfw"
    with pytest.warns(UserWarning, match="skipped 1"):
        assert len(load_lfw(lfw_dir, people=None, cache=False, progress=False)) == 6
    with pytest.raises(FileNotFoundError, match="LFW folder not found: .*nowhere"):
        load_lfw(tmp_path / "nowhere")


# --------------------------------------------------------------------------
# Split and selection
# --------------------------------------------------------------------------

def test_split_identities():
    names = [f"p{i:03d}" for i in range(200)]
    tr, va = split_identities(names, 0.1, seed=3)
    assert len(va) == 20 and len(tr) == 180
    assert set(tr).isdisjoint(va) and set(tr) | set(va) == set(names)
    assert list(tr) == sorted(tr) and list(va) == sorted(va)
    assert split_identities(names[::-1], 0.1, seed=3) == (tr, va)        # order-independent
    assert split_identities(names, 0.1, seed=4) != (tr, va)
    assert split_identities(names, 0.0) == (tuple(names), ())
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        split_identities(names, 1.0)
    with pytest.raises(ValueError, match="given more than once"):
        split_identities(["a", "a"])


def test_indices_of(tmp_path):
    root = make_folder(tmp_path / "data")
    with pytest.warns(UserWarning):
        ds = load_folder(root, cache=False, progress=False)
    np.testing.assert_array_equal(ds.indices_of(["carol", "alice"]), [0, 1, 2, 5])
    with pytest.raises(ValueError, match="not in the dataset, e.g. 'zoe'"):
        ds.indices_of(["zoe"])


# --------------------------------------------------------------------------
# LFW (skipped when absent)
# --------------------------------------------------------------------------

lfw = pytest.mark.skipif(not (LFW / "lfw").is_dir(), reason=f"LFW not found at {LFW}")


@pytest.mark.lfw
@lfw
def test_lfw_people_and_listing():
    people = read_people_file(LFW / "peopleDevTrain.txt")
    assert len(people) == 4038 and sum(n for _, n in people) == 9525
    idx = scan_folder(LFW / "lfw", LFW / "peopleDevTrain.txt")       # no count mismatch warning
    assert len(idx.identities) == 4038 and len(idx.files) == 9525
    counts = np.bincount(idx.labels)
    assert (counts >= 2).sum() == 1184 and counts[counts >= 2].sum() == 6671


@pytest.mark.lfw
@lfw
def test_lfw_decode_sample():
    """A few real files decode to 112x112 RGB through the LFW crop (the full decode is not run here)."""
    idx = scan_folder(LFW / "lfw", LFW / "peopleDevTrain.txt")
    for rel in idx.files[::1900]:
        img = decode_face(LFW / "lfw" / rel, LFW_CROP)
        with Image.open(LFW / "lfw" / rel) as im:
            assert im.size == (250, 250)
            ref = np.asarray(im.convert("RGB").crop((53, 73, 197, 217)).resize((112, 112), Image.Resampling.BILINEAR))
        assert img.shape == (112, 112, 3) and img.dtype == np.uint8
        # cropping first clamps the filter at the box edge; inside, the two agree up to rounding
        diff = np.abs(img.astype(int) - ref.astype(int))
        assert diff[2:-2, 2:-2].max() <= 1 and diff.mean() < 0.5
