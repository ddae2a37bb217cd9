"""Your own photos, measured: verify on pasted pictures against the original frames, and clustering quality.

    python -m benchmarks.photos --lfw ../shared/lfw            # benchmarks/results/photos.json, docs/PHOTOS.md
    python -m benchmarks.photos --lfw ../shared/lfw --quick    # small, into runs/photos-quick/
    python -m benchmarks.photos --report                       # docs/PHOTOS.md from the results files only

People: the peopleDevTrain people the shipped model's trainer held out
(``split_identities(..., 0.1, seed=0)``, never trained on).

Verify agreement
    ``--pairs`` balanced pairs (half same person, half different;
    ``validation_pairs``) of held-out images. Each image is pasted at a
    random scale (0.5x to 3x) and position into a larger picture
    (``benchmarks.pasted``), saved as JPEG (quality 95), and the pair is
    verified as ``npface.verify --frame detect`` does (the main face). Its
    decision is compared with the decision on the original LFW frames
    (``--frame lfw``); a picture where no face is found counts as a
    disagreement. Accuracy against the truth is given for both, and the
    same for two reference framings that need the truth
    (``pasted_agreement``).

Clustering
    Galleries of held-out people (every image of each person drawn, people
    with a single image included), several sizes, a few draws each; faces
    framed by the training crop; clustered at the model's theta by each
    method of ``npface.gallery``. Pairwise precision,
    recall, F1 and purity (``npface.gallery.pair_scores``), averaged over
    the draws.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from benchmarks.candidates import CANDIDATES, YARDSTICK
from benchmarks.common import write_json
from benchmarks.pasted import paste
from npface.cli import check_output, output_file, run_main
from npface.data.cache import atomic_write_text
from npface.faces import VIEW_SHIFT_PX, VIEWS

RESULTS = Path("benchmarks/results/photos.json")
QUICK_RESULTS = Path("runs/photos-quick/photos.json")
LFW_NEEDS = ("lfw", "peopleDevTrain.txt", "landmarks68.tsv")   # what the measurements read under --lfw
FRAMING = Path("benchmarks/results/framing.json")
FRAMING_NET = Path("benchmarks/results/framing_net.json")        # written by python -m npface.pretrain_framing
CLUSTER_SEARCH = Path("benchmarks/results/cluster_search.json")
SELECTION = Path("benchmarks/results/photos-selection.json")     # --people selection (how --views was chosen)
# --people selection again, after the detector's second look and main-face rule (how they were kept)
DETECTOR_SELECTION = Path("benchmarks/results/photos-selection-detector.json")
# a framing net trained longer (its training metrics, and --people selection --framing-net with it): not kept
LONGER_FRAMING_NET = Path("benchmarks/results/framing_net-8000.json")
LONGER_FRAMING_NET_SELECTION = Path("benchmarks/results/photos-selection-framing8000.json")
REPORT = Path("docs/PHOTOS.md")
# (framing name, refine with the framing net, plain detector): how --frame detect runs, and what each part adds
DETECT_VARIANTS = (("detect", True, False), ("detect_calibrated", False, False), ("detect_plain", True, True))
GALLERY_PEOPLE = (25, 100, 404)          # people per gallery (404: every held-out person)


def held_out_faces(lfw, progress=False):
    """The held-out people's LFW images (training crop) and labels: (dataset, rows (M,) of held-out images)."""
    from npface.data.folders import load_lfw, split_identities
    ds = load_lfw(lfw, "peopleDevTrain.txt", progress=progress)
    _, held = split_identities(ds.identities, 0.1, seed=0)
    return ds, ds.indices_of(held)


def landmark_square(points, mean_face, out=112):
    """The landmark-derived frame of one face: the square (x0, y0, x1, y1) whose crop puts the face's
    landmarks (68, 2) (picture pixels, dlib convention) closest, by scale and shift, to ``mean_face`` (68, 2)."""
    design = np.zeros((points.size, 3))
    design[:, 0] = (points + 0.5).reshape(-1)                  # edge coordinates
    design[0::2, 1] = 1.0
    design[1::2, 2] = 1.0
    (a, cx, cy), *_ = np.linalg.lstsq(design, ((mean_face + 0.5) / out).reshape(-1), rcond=None)
    x0, y0 = -cx / a, -cy / a                                  # crop coordinate u = a x + c, u = 0 at x0
    return np.array([x0, y0, x0 + 1 / a, y0 + 1 / a])


class PastedSet(NamedTuple):
    """Pasted pictures of held-out pairs and their crops, made once and measured with any model (``agreement``)."""
    ds: object                      # the LFW dataset (images in the training crop, labels, files)
    pairs: np.ndarray               # (P, 2) dataset rows of each pair
    same: np.ndarray                # (P,) bool: the two images show one person
    used: np.ndarray                # (U,) the rows in any pair
    crops: dict                     # framing name -> {row: (112, 112, 3) uint8 crop of its pasted picture}
    people: str                     # whose pairs: "held-out", "selection" or "report"
    seed: int                       # of the pairs, the pastes' positions and scales


def pasted_pictures(lfw, n_pairs, seed=0, people=None, log=print, framing_net=None) -> PastedSet:
    """Paste the images of ``n_pairs`` balanced held-out pairs into larger pictures and frame their faces.

    ``people``: None for every held-out person, or "selection" / "report" for one side of
    ``benchmarks.heldout``'s split (a lever compared on framing uses the selection people only).
    Each picture is framed five ways: as ``npface.verify --frame detect`` does (the main face), the same
    without the framing net (the calibrated square alone), the same with the plain detector (one search,
    the largest face: ``npface.detect.detect_faces(plain=True)``),
    by the training crop itself (``LFW_CROP`` moved by the paste: what is left is resampling and JPEG),
    and by the landmark-derived frame (the square that puts the face's 68 landmarks at their mean place
    in training crops: a perfect face-based framing, which still differs from LFW's own crop).
    ``framing_net``: a ``FramingNet`` to refine with instead of the shipped one.
    """
    from npface.data.folders import LFW_CROP, split_identities
    from npface.data.landmarks import read_landmarks
    from npface.data.sampler import validation_pairs
    from npface.framing import cut_frame
    from npface.photos import frame_picture
    ds, rows = held_out_faces(lfw)
    if people is not None:
        from benchmarks.heldout import people_of
        names = set(people_of(people, sorted({ds.identities[label] for label in ds.labels[rows]})))
        rows = rows[[ds.identities[label] in names for label in ds.labels[rows]]]
    table = read_landmarks(Path(lfw) / "landmarks68.tsv")
    trained, _ = split_identities(ds.identities, 0.1, seed=0)
    fit_rows = ds.indices_of(trained)
    mean_face = LFW_CROP.points_to_crop(table.points[table.rows_for([ds.files[i] for i in fit_rows])]).mean(0)
    pairs, same = validation_pairs(ds.labels, n_pairs // 2, seed=seed, indices=rows)     # (P, 2), (P,)
    used = np.unique(pairs)
    rng = np.random.default_rng(seed)
    crops = {"detect": {}, "detect_calibrated": {}, "detect_plain": {}, "training_crop": {}, "landmark_frame": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n, r in enumerate(used):
            frame = np.asarray(Image.open(Path(lfw) / "lfw" / ds.files[r]).convert("RGB"))
            path = Path(tmp) / f"{r}.jpg"
            pasted = paste(frame, rng)
            Image.fromarray(pasted.picture).save(path, quality=95)
            for name, refine, plain in DETECT_VARIANTS:
                faces = frame_picture(path, "detect", refine=refine, plain_detector=plain,
                                      framing_net=framing_net).faces
                if faces:
                    crops[name][int(r)] = faces[0].crop               # the main face, as verify picks it
            with Image.open(path) as saved:
                picture = saved.convert("RGB")
            crops["training_crop"][int(r)] = cut_frame(picture, pasted.square(LFW_CROP))
            points = pasted.to_picture(table.points[table.rows_for([ds.files[r]])[0]])
            crops["landmark_frame"][int(r)] = cut_frame(picture, landmark_square(points, mean_face))
            if (n + 1) % max(1, len(used) // 5) == 0:
                log(f"  pasted and detected {n + 1}/{len(used)} ({time.perf_counter() - t0:.0f} s)")
    return PastedSet(ds, pairs, same, used, crops, people or "held-out", seed)


def agreement(pasted: PastedSet, model, views: int = 1, flip: bool = False) -> dict:
    """Verify decisions at the model's theta on each framing of the pasted pictures against those on the
    original frames (``--frame lfw``); a picture without a detected face counts as a disagreement.
    ``views`` and ``flip``: the test-time views and flip of every signature, the original frames' included
    (``--views``, ``--flip``)."""
    from npface.faces import embed_faces
    ds, pairs, same, used = pasted.ds, pasted.pairs, pasted.same, pasted.used
    theta = model.threshold

    def signatures(faces):
        keys = sorted(faces)
        return dict(zip(keys, embed_faces(model, np.stack([faces[k] for k in keys]), flip, views=views))) \
            if keys else {}

    def decide(sig, i, j):
        if i not in sig or j not in sig:
            return None
        return bool(((sig[i].astype(np.float64) - sig[j]) ** 2).sum() < theta)
    orig = dict(zip(used.tolist(), embed_faces(model, np.ascontiguousarray(ds.images[used]), flip, views=views)))
    d_orig = [decide(orig, int(i), int(j)) for i, j in pairs]
    out = {"pairs": int(len(pairs)), "same_pairs": int(same.sum()), "pictures": int(len(used)),
           "people": pasted.people,
           "accuracy_original_frames": float(np.mean([a == s for a, s in zip(d_orig, same)])),
           "threshold": theta, "seed": pasted.seed, "views": int(views), "flip": bool(flip)}
    for name, faces in pasted.crops.items():
        sig = signatures(faces)
        d = [decide(sig, int(i), int(j)) for i, j in pairs]
        key = "" if name == "detect" else f"{name}_"
        out[f"{key}agreement"] = float(np.mean([a == b for a, b in zip(d_orig, d)]))
        out[f"{key}accuracy"] = float(np.mean([b is not None and b == s for b, s in zip(d, same)]))
        if name.startswith("detect"):
            out[f"{key}pictures_without_face"] = int(len(used) - len(faces))
            out[f"{key}pairs_without_face"] = int(sum(b is None for b in d))
    return out


def pasted_agreement(lfw, n_pairs, seed=0, model=None, log=print, people=None, views=(1,), framing_net=None):
    """Verify decisions on pasted pictures (--frame detect, and two framings that need the truth) against
    those on the original frames (--frame lfw): ``agreement`` of ``pasted_pictures``, for each test-time
    view count in ``views`` on the same pictures (the first at the top level, each other one under
    "views<V>"), and with test-time flip and the first view count (under "flip"). ``framing_net``: a
    ``FramingNet`` for ``--frame detect`` instead of the shipped one."""
    from npface.model import load
    model = model if model is not None else load()
    pasted = pasted_pictures(lfw, n_pairs, seed, people, log, framing_net)
    out = agreement(pasted, model, views[0])
    for v in views[1:]:
        out[f"views{v}"] = agreement(pasted, model, v)
    out["flip"] = agreement(pasted, model, views[0], flip=True)          # verify's and embed's default
    return out


def clustering_quality(lfw, sizes=GALLERY_PEOPLE, draws=3, model=None, log=print):
    """Pairwise precision/recall/F1 and purity of both methods on held-out galleries of several sizes."""
    from npface.faces import embed_faces
    from npface.gallery import METHODS, close_pairs, cluster, pair_scores
    from npface.model import load
    model = model if model is not None else load()
    ds, rows = held_out_faces(lfw)
    labels = ds.labels[rows]                                                        # (M,)
    people = np.unique(labels)
    galleries = []                                  # (size, draws, [face rows of each draw])
    for size in sizes:
        size = min(size, len(people))
        n_draws = 1 if size == len(people) else draws
        galleries.append((size, n_draws, [np.flatnonzero(np.isin(labels, np.random.default_rng(draw).choice(
            people, size, replace=False))) for draw in range(n_draws)]))
    needed = np.unique(np.concatenate([k for _, _, keeps in galleries for k in keeps]))
    sig = np.zeros((len(rows), model.config.signature_dim), dtype=np.float32)      # (M, D), only needed rows set
    sig[needed] = embed_faces(model, np.ascontiguousarray(ds.images[rows[needed]]))
    out = []
    for size, n_draws, keeps in galleries:
        scores = {m: [] for m in METHODS}
        faces = []
        for keep in keeps:
            faces.append(len(keep))
            i, j, d = close_pairs(sig[keep], model.threshold)
            for m in METHODS:
                scores[m].append(pair_scores(labels[keep], cluster(len(keep), i, j, d, model.threshold, m)))
        row = {"people": int(size), "faces_mean": float(np.mean(faces)), "draws": n_draws}
        for m in METHODS:
            row[m] = {k: float(np.mean([s[k] for s in scores[m]]))
                      for k in ("precision", "recall", "f1", "purity", "clusters")}
        log(f"  {size} people, {row['faces_mean']:.0f} faces: " + "; ".join(
            f"{m} P {row[m]['precision']:.3f} R {row[m]['recall']:.3f} F1 {row[m]['f1']:.3f}" for m in METHODS))
        out.append(row)
    return {"threshold": model.threshold, "frame": "training crop (LFW_CROP)", "galleries": out}


def _read(path):
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def _px(v):
    return f"{v:.2f} px"


def _part_row(w, name, label) -> list:
    """The table row of the framing ``name`` (``DETECT_VARIANTS``: ``--frame detect`` without one of its
    parts), when ``w`` measured it."""
    if f"{name}_agreement" not in w:
        return []
    return [f"| {label} | {100 * w[f'{name}_agreement']:.1f}% | {100 * w[f'{name}_accuracy']:.1f}% |"]


def _parts_rows(w, long=False) -> list:
    """The rows of ``--frame detect`` without the framing net, and with the plain detector."""
    missing = (f"; {w['detect_plain_pictures_without_face']} of {w['pictures']} pictures without a face"
               if long and "detect_plain_pictures_without_face" in w else "")
    return (_part_row(w, "detect_calibrated", "the same without the framing net"
                      + (" (the calibrated square alone)" if long else ""))
            + _part_row(w, "detect_plain", "the same with the plain detector"
                        + (f" (one search, the largest face{missing})" if long else "")))


def _candidates_table(results_dir=Path("benchmarks/results")) -> list:
    """docs/PHOTOS.md's lines comparing signature nets on the selection people's pasted pictures: the
    --frame detect agreement with flip beside the selection accuracy and AUC with flip (RESULTS.md section 5),
    for the shipped model and each run of ``benchmarks.candidates`` measured on the same pictures and the same
    pairs; [] without the shipped model's files or any candidate's."""
    shipped_digest = (_read(Path(results_dir) / "shipped.json") or {}).get("model_sha256")

    def measured(photos_name, heldout_name):
        ph, acc = _read(Path(results_dir) / photos_name), _read(Path(results_dir) / heldout_name)
        if not (ph and acc and isinstance(ph.get("verify", {}).get("flip"), dict)
                and acc.get("people") == "selection" and (acc.get("summary") or {}).get("flip")):
            return None
        return ph["verify"], acc["summary"]["flip"], "yes" if acc.get("model_sha256") == shipped_digest else "no"

    shipped = measured(DETECTOR_SELECTION.name, "heldout-selection.json")
    if shipped is None:
        return []
    # the yardstick: the model shipped before the distilled one (runs/recipe2500), whose selection files these are
    rows = [(YARDSTICK, *shipped)]
    for c in CANDIDATES:
        run = measured(f"photos-selection-{c.name}.json", f"heldout-selection-{c.name}.json")
        if run and run[0]["pairs"] == shipped[0]["pairs"] and run[1].get("test_pairs") == shipped[1].get("test_pairs"):
            rows.append((f"{c.label} (`{c.name}`)", *run))
    if len(rows) < 2:
        return []
    lines = [f"How much of the framing gap above a signature net can close by itself, on the selection people "
             f"({shipped[0]['pairs']} pasted pairs and the fit-and-test pairs of `benchmarks.heldout`, both "
             "with flip; each run is described in [RESULTS.md](RESULTS.md) section 5):", "",
             "| signature net | `--frame detect` agreement | accuracy | AUC | shipped |", "|---|---|---|---|---|"]
    for label, verify, flip, shipped_now in rows:
        lines.append(f"| {label} | {100 * verify['flip']['agreement']:.2f}% | {100 * flip['accuracy']:.1f}% | "
                     f"{flip['auc']:.3f} | {shipped_now} |")
    base, agree = shipped[1], shipped[0]["flip"]["agreement"]
    better = [(label, flip) for label, verify, flip, _ in rows[1:] if verify["flip"]["agreement"] > agree]
    costless = [label for label, f in better if f["accuracy"] >= base["accuracy"] and f["auc"] >= base["auc"]]
    where = ("RESULTS.md section 5 describes each run, with the rule fixed before it where there was one and "
             "whether it was met, and how far two seeds of one recipe differ, the yardstick for these differences.")
    if better and not costless:
        lines += ["", f"Each net that agrees more often than {YARDSTICK} has a lower accuracy or AUC than its own "
                  "on the same pairs, if at times by little. " + where]
    elif costless:
        lines += ["", f"Nets that agree more often than {YARDSTICK}, with neither a lower accuracy nor a lower "
                  "AUC: " + "; ".join(costless) + ". " + where]
    return lines + [""]


def _detector_choice(sel) -> str:
    """The paragraph on how the detector's second look and main-face rule were adopted (selection people)."""
    if not sel or "detect_plain_agreement" not in sel["verify"].get("flip", {}):
        return ""
    from npface.detect import NEAR_TIE
    f = sel["verify"]["flip"]
    return ("The detector's second look (a picture whose equalised copy shows no face is searched again as it is) "
            f"and its main-face rule (faces at least {NEAR_TIE:g} of the largest's side count as tied, the higher "
            "score wins) were chosen on the selection people, among other fallbacks (fewer overlapping hits, OpenCV's "
            "alt2 cascade, a finer pyramid) and tie shares (0.5 to 0.9), then kept by a rule fixed before "
            "measuring all the held-out people: at least 1 point more agreement with flip there. On the "
            f"selection people (`{sel['command']}`), with flip: agreement {100 * f['agreement']:.1f}% against "
            f"{100 * f['detect_plain_agreement']:.1f}% with the plain detector, accuracy "
            f"{100 * f['accuracy']:.1f}% against {100 * f['detect_plain_accuracy']:.1f}%, pictures without a "
            f"face {f['pictures_without_face']} against {f['detect_plain_pictures_without_face']} of "
            f"{f['pictures']}.")


def _framing_net_choice(sf) -> str:
    """The sentence on how the framing net was adopted, from the selection people's flip results ``sf``."""
    if "detect_calibrated_agreement" not in sf:
        return ""
    return (" The framing net was adopted on these pictures (with the plain detector of the time), by a rule "
            "fixed before measuring it (at least 2 points more agreement with flip, at most 1 point less "
            "accuracy): with flip, agreement "
            f"{100 * sf['agreement']:.1f}% with it against {100 * sf['detect_calibrated_agreement']:.1f}% without, "
            f"accuracy {100 * sf['accuracy']:.1f}% against {100 * sf['detect_calibrated_accuracy']:.1f}%. It is "
            "the second of two nets tried on them: the first, trained from a fresh start instead of the shipped "
            "model's alignment net, missed the rule and was not shipped.")


def _longer_framing_net(fn, longer, longer_sel, shipped_sel) -> str:
    """The paragraph on a framing net trained longer than the shipped one (``longer``: its training metrics;
    ``longer_sel`` / ``shipped_sel``: the selection people's pasted pictures with it and with the shipped net),
    and whether it met the rule fixed before measuring it; '' unless all were measured on as many pairs."""
    if not (fn and longer and longer_sel and shipped_sel):
        return ""
    a, b = shipped_sel["verify"], longer_sel["verify"]
    if a["pairs"] != b["pairs"] or not (isinstance(a.get("flip"), dict) and isinstance(b.get("flip"), dict)):
        return ""
    met = (b["flip"]["agreement"] >= a["flip"]["agreement"] + 0.01 and b["agreement"] >= a["agreement"]
           and longer["heldout_rms_px"]["net"] < fn["heldout_rms_px"]["net"])
    return (f"A net trained longer (`{longer['command']}`, {longer['settings']['steps']:,} steps) leaves an RMS "
            f"displacement of {_px(longer['heldout_rms_px']['net'])} on the same held-out cuts, against "
            f"{_px(fn['heldout_rms_px']['net'])} for the shipped net. On the selection people's pasted pictures "
            f"(`{longer_sel['command']}`, {b['pairs']} pairs) its `--frame detect` decisions agree with the "
            f"original frames' for {100 * b['agreement']:.1f}% without flip and {100 * b['flip']['agreement']:.1f}% "
            f"with, against {100 * a['agreement']:.1f}% and {100 * a['flip']['agreement']:.1f}% for the shipped "
            "net on the same pictures. The rule fixed before measuring it (a smaller error, at least 1 point more "
            "agreement with flip and none less without) was " + ("met." if met else "not met: the shipped net "
                                                                  "stays, and a smaller framing error alone did "
                                                                  "not buy agreement."))


def _variant_table(w, flags, intro) -> list:
    """docs/PHOTOS.md's lines for one test-time variant of ``agreement`` (``w``, run with ``flags``): its
    introduction, then each framing's agreement and accuracy."""
    return [intro, "", "| framing of the pasted face | agreement with the original frames | accuracy |", "|---|---|---|",
            f"| `--frame detect {flags}` | {100 * w['agreement']:.1f}% | {100 * w['accuracy']:.1f}% |",
            *_parts_rows(w),
            f"| the landmark-derived frame | {100 * w['landmark_frame_agreement']:.1f}% | "
            f"{100 * w['landmark_frame_accuracy']:.1f}% |",
            f"| the training crop itself | {100 * w['training_crop_agreement']:.1f}% | "
            f"{100 * w['training_crop_accuracy']:.1f}% |", ""]


def write_report(path=REPORT, results=RESULTS, framing=FRAMING, cluster_search=CLUSTER_SEARCH,
                 framing_net=FRAMING_NET):
    """docs/PHOTOS.md from the results files (each section only when its file exists)."""
    lines = ["# Your own photos: measured", "",
             "Generated by `python -m benchmarks.photos --report` from `benchmarks/results/framing.json`, "
             "`framing_net.json`, `photos.json` and `cluster_search.json`; each section names the command that "
             "measured it.", ""]
    fr = _read(framing)
    if fr:
        e, det = fr["test_errors_px"], fr["test_detection"]
        cal = fr["calibration"]
        lines += ["## Framing (`python -m benchmarks.framing --lfw ../shared/lfw`)", "",
                  f"Calibration (fitted on {fr['fit_detection']['hits']} pasted frames of trained-on people): "
                  f"frame centre {cal['dx']:+.3f} / {cal['dy']:+.3f} box sides right / below the box centre, "
                  f"side {cal['scale']:.3f} box sides.", "",
                  f"Held-out people, {det['images']} pasted frames: the main face was the pasted face in "
                  f"{det['hits']} ({det['no_face']} without a face, {det['wrong_face']} another region). "
                  "Eye-centre error in pixels of the 112 x 112 crop, mean over both eyes:", "",
                  "| frame | vs the training crop of the same frame | vs the mean training-crop eyes | "
                  "after the alignment net, vs the template eyes |", "|---|---|---|---|",
                  f"| training crop (LFW_CROP) | 0 | {_px(e['training_crop']['vs_reference_px'])} | "
                  f"{_px(e['training_crop']['after_alignment_vs_template_px'])} |"]
        for name, label in (("calibrated", "detector, calibrated frame"),
                            ("framing_net", "detector, calibrated frame moved by the framing net (`--frame detect`)"),
                            ("uncalibrated_box", "detector box as is")):
            if name not in e:
                continue
            b, a = e[name]["before_alignment"], e[name]["after_alignment"]
            lines.append(f"| {label} | {_px(b['vs_training_crop_px'])} | {_px(b['vs_reference_px'])} | "
                         f"{_px(a['vs_template_px'])} |")
        lines.append("")
        if "false_detections" in fr:
            st, bg = fr["false_detections"]["strips_below_the_crop"], fr["false_detections"]["backgrounds"]
            lines += ["Pictures without the subject's face, and what the detector's second look costs: it finds a "
                      f"face in {st['with_a_face']} of {st['pictures']} strips of held-out frames below the training "
                      f"crop (clothes, hands, desks, now and then another person; enlarged 3x), against "
                      f"{st['with_a_face_plain']} with one search, and in {bg['with_a_face']} of {bg['pictures']} "
                      f"of the pasted pictures' backgrounds, against {bg['with_a_face_plain']}.", ""]
    fn = _read(framing_net)
    if fn:
        st, err = fn["settings"], fn["heldout_rms_px"]
        j = st["jitter"]
        lines += [f"## The framing net (`{fn['command']}`)", "",
                  "`--frame detect` moves each calibrated square with the framing net (`npface/framing_net.py`): "
                  "the alignment net's layers with parameters of their own"
                  + ("" if st.get("init", "fresh (seed)") == "fresh (seed)" else
                     ", starting from the alignment net of the model named by `--init`")
                  + ", trained to predict where the training "
                  f"crop lies from a cut that is off by a random similarity (up to {j['max_rotation']:g} degrees, "
                  f"{100 * j['max_scale']:g}% scale and {j['max_shift']:g} of the half side), for {st['steps']:,} "
                  f"steps of {st['batch_size']} ({fn['train_seconds'] / 60:.0f} min on this machine). On the "
                  f"{err['images']} images of the held-out people, each cut once through a fixed random similarity, "
                  f"the RMS displacement of a 5 x 5 grid of face points from the training crop is {_px(err['net'])} "
                  f"after the net, against {_px(err['identity'])} for the cut as it is.", ""]
        longer = _longer_framing_net(fn, _read(LONGER_FRAMING_NET), _read(LONGER_FRAMING_NET_SELECTION),
                                     _read(DETECTOR_SELECTION))
        lines += [longer, ""] if longer else []
    ph = _read(results)
    if ph and "verify" in ph:
        v = ph["verify"]
        lines += ["## Verify on pasted pictures (`python -m benchmarks.photos --lfw ../shared/lfw`)", "",
                  f"{v['pairs']} pairs of held-out people ({v['same_pairs']} same), each picture an LFW frame "
                  "pasted at 0.5x-3x into a larger picture and saved as JPEG. Agreement with the decision on the "
                  f"original frames (accuracy of those: {100 * v['accuracy_original_frames']:.1f}%), and accuracy "
                  "against the truth, at the learned threshold, by how the pasted face was framed:", "",
                  "| framing of the pasted face | agreement with the original frames | accuracy |", "|---|---|---|",
                  f"| `--frame detect` (the detector's main face; {v['pictures_without_face']} of "
                  f"{v['pictures']} pictures without a face) | {100 * v['agreement']:.1f}% | {100 * v['accuracy']:.1f}% |",
                  *_parts_rows(v, long=True),
                  f"| the landmark-derived frame (needs the 68 landmarks: perfect face-based framing) | "
                  f"{100 * v['landmark_frame_agreement']:.1f}% | {100 * v['landmark_frame_accuracy']:.1f}% |",
                  f"| the training crop itself, moved by the paste (needs the truth) | "
                  f"{100 * v['training_crop_agreement']:.1f}% | {100 * v['training_crop_accuracy']:.1f}% |", "",
                  "The last row isolates resampling and JPEG; the gap between it and the rows above is framing: "
                  "the signatures change with where exactly the face sits in the crop, more than the alignment "
                  "net undoes.", ""]
        if isinstance(v.get("flip"), dict):
            lines += _variant_table(
                v["flip"], "--flip", "With `--flip` (each signature averaged with its mirror image's, on both sides "
                "of every comparison; the default of `verify` and `embed`; accuracy of the original frames' decisions "
                f"{100 * v['flip']['accuracy_original_frames']:.1f}%), same pictures:")
        for key in sorted(k for k in v if k.startswith("views") and isinstance(v[k], dict)):
            w = v[key]
            lines += _variant_table(
                w, f"--views {w['views']}", f"With `--views {w['views']}` (each signature averaged over the crop and "
                f"four copies shifted by {VIEW_SHIFT_PX} px, on both sides of every comparison: the original frames' "
                f"decisions are made with views too, accuracy of those {100 * w['accuracy_original_frames']:.1f}%), "
                "same pictures:")
        sel = _read(SELECTION)
        if sel and "views5" in sel.get("verify", {}):
            s1, s5 = sel["verify"], sel["verify"]["views5"]
            lines += [f"The views were chosen on the selection people alone (`{sel['command']}`, "
                      f"{s1['pairs']} pairs): `--frame detect` agreement {100 * s1['agreement']:.1f}% with one view, "
                      f"{100 * s5['agreement']:.1f}% with five; the original frames' accuracy "
                      f"{100 * s1['accuracy_original_frames']:.1f}% and {100 * s5['accuracy_original_frames']:.1f}%. "
                      "Five views cost five forward passes per face, so the commands keep one as their default."
                      + (f" Flip, on the same pictures: agreement {100 * sel['verify']['flip']['agreement']:.1f}%, the "
                         f"original frames' accuracy {100 * sel['verify']['flip']['accuracy_original_frames']:.1f}%, "
                         "for two passes per face; `verify` and `embed` flip by default."
                         if isinstance(sel["verify"].get("flip"), dict) else "")
                      + _framing_net_choice(sel["verify"].get("flip") or {}), ""]
        detector = _detector_choice(_read(DETECTOR_SELECTION))
        lines += [detector, ""] if detector else []
        lines += _candidates_table()
    if ph and "clustering" in ph:
        c = ph["clustering"]
        lines += ["## Clustering held-out people (`python -m benchmarks.photos --lfw ../shared/lfw`)", "",
                  f"At the model's theta ({c['threshold']:.4f}), faces framed by the training crop; pairwise "
                  "precision / recall / F1 and purity, mean over the draws:", "",
                  "| people | faces | draws | method | precision | recall | F1 | purity | clusters |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for g in c["galleries"]:
            for m in ("majority", "whispers", "components"):
                s = g[m]
                lines.append(f"| {g['people']} | {g['faces_mean']:.0f} | {g['draws']} | {m} | {s['precision']:.3f} | "
                             f"{s['recall']:.3f} | {s['f1']:.3f} | {s['purity']:.3f} | {s['clusters']:.0f} |")
        lines.append("")
    cs = _read(cluster_search)
    if cs:
        lines += ["## Scale (`python -m benchmarks.cluster_search`)", "", cs.get("note", ""), "",
                  "| task | faces | seconds | peak memory of the blocks | how |", "|---|---|---|---|---|"]
        for r in cs["rows"]:
            lines.append(f"| {r['task']} | {r['faces']:,} | {r['seconds']:.3g} | {r['memory_mb']:.0f} MB | "
                         f"{r['how']} |")
        lines.append("")
    atomic_write_text(Path(path), "\n".join(lines))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.photos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", metavar="DIR",
                        help="the LFW folder (lfw/, peopleDevTrain.txt); required unless --report")
    parser.add_argument("--pairs", type=int, default=400, metavar="P",
                        help="pasted pairs, half same and half not: an even number, at least 2 (default 400)")
    parser.add_argument("--quick", action="store_true", help="40 pairs, one small gallery; into runs/photos-quick/")
    parser.add_argument("--report", action="store_true", help="only regenerate docs/PHOTOS.md from the results")
    parser.add_argument("--model", metavar="PATH", help="measure this model file instead of the shipped model "
                        "(then --json is needed, and docs/PHOTOS.md is left alone)")
    parser.add_argument("--framing-net", metavar="PATH", help="refine --frame detect's squares with this framing "
                        "net file (python -m npface.pretrain_framing --out) instead of the shipped one (then --json "
                        "is needed)")
    parser.add_argument("--align-rounds", type=int, metavar="R", help="run the model with R alignment rounds "
                        "(npface.model.ModelConfig.align_rounds) instead of the number its file holds (then --json "
                        "is needed)")
    parser.add_argument("--json", type=output_file, metavar="PATH",
                        help="with --model, --framing-net, --align-rounds or --people: "
                             "where to write the results")
    parser.add_argument("--people", choices=("selection", "report"),
                        help="only verify on pasted pictures, with pairs of one side of benchmarks.heldout's split "
                             "of the held-out people (settings are chosen on 'selection'); needs --json")
    args = parser.parse_args(argv)
    varied = args.model or args.people or args.framing_net or args.align_rounds is not None
    if bool(varied) != bool(args.json):
        parser.error("--json goes with --model, --framing-net, --align-rounds or --people (the shipped model's full "
                     f"run writes {RESULTS})")
    if args.report and varied:
        parser.error("--report regenerates docs/PHOTOS.md from the shipped model's results; it takes no --model, "
                     "--framing-net, --align-rounds or --people")
    if args.align_rounds is not None and args.align_rounds < 1:
        parser.error("--align-rounds must be at least 1")
    if args.json and Path(args.json).resolve() in (RESULTS.resolve(), QUICK_RESULTS.resolve()):
        parser.error(f"--json {args.json} would overwrite the shipped model's results; choose another file")
    if args.report:
        print(f"wrote {write_report()}")
        return 0
    if not args.lfw:
        parser.error("--lfw is required (unless --report)")
    if args.pairs < 2 or args.pairs % 2:
        parser.error(f"--pairs must be an even number, at least 2 (half same, half not), got {args.pairs}")
    t0 = time.perf_counter()
    from npface.framing_net import load_framing_net
    from npface.model import load
    loaded = {}
    for flag, path, reader in (("--model", args.model, load), ("--framing-net", args.framing_net, load_framing_net)):
        try:
            loaded[flag] = reader(path) if path else None
        except (OSError, ValueError) as e:
            print(f"python -m benchmarks.photos: error: {flag}: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
    model, framing_net = loaded["--model"], loaded["--framing-net"]
    missing = [name for name in LFW_NEEDS if not (Path(args.lfw) / name).exists()]
    if missing:
        parser.error(f"--lfw {args.lfw}: no {' and no '.join(missing)} there (LFW's root, as in ../shared/lfw)")
    check_output(parser, "--json", args.json or (QUICK_RESULTS if args.quick else RESULTS))
    if args.align_rounds is not None:
        model = (model if model is not None else load()).with_align_rounds(args.align_rounds)
    if args.quick:
        out_file, report = QUICK_RESULTS, QUICK_RESULTS.with_name("PHOTOS.md")
        verify = pasted_agreement(args.lfw, 40, model=model, people=args.people, views=VIEWS,
                                  framing_net=framing_net)
        clustering = None if args.people else clustering_quality(args.lfw, sizes=(25,), draws=1, model=model)
    else:
        out_file, report = RESULTS, REPORT
        print("verify on pasted pictures")
        verify = pasted_agreement(args.lfw, args.pairs, model=model, people=args.people, views=VIEWS,
                                  framing_net=framing_net)
        print("clustering" if not args.people else "(no clustering: --people measures verify only)")
        clustering = None if args.people else clustering_quality(args.lfw, model=model)
    command = ("python -m benchmarks.photos" + (" --quick" if args.quick else f" --pairs {args.pairs}")
               + (f" --model {args.model}" if args.model else "")
               + (f" --framing-net {args.framing_net}" if args.framing_net else "")
               + (f" --align-rounds {args.align_rounds}" if args.align_rounds is not None else "")
               + (f" --people {args.people}" if args.people else "")
               + (f" --json {args.json}" if args.json else ""))
    if args.json:
        out_file, report = Path(args.json), None
    results = {"command": command, "verify": verify, "seconds": round(time.perf_counter() - t0, 1)}
    if clustering is not None:
        results["clustering"] = clustering
    write_json(out_file, results)
    if report is not None:
        write_report(report, out_file)
    print(f"wrote {out_file}" + (f" and {report}" if report is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.photos"))
