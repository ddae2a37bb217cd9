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
    verified as ``npface.verify --frame detect`` does (largest face). Its
    decision is compared with the decision on the original LFW frames
    (``--frame lfw``); a picture where no face is found counts as a
    disagreement. Accuracy against the truth is given for both.

Clustering
    Galleries of held-out people (every image of each person drawn, people
    with a single image included), several sizes, a few draws each; faces
    framed by the training crop; clustered at the model's theta by
    connected components and by Chinese whispers. Pairwise precision,
    recall, F1 and purity (``npface.gallery.pair_scores``), averaged over
    the draws.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import write_json
from benchmarks.pasted import paste
from npface.data.cache import atomic_write_text

RESULTS = Path("benchmarks/results/photos.json")
FRAMING = Path("benchmarks/results/framing.json")
CLUSTER_SEARCH = Path("benchmarks/results/cluster_search.json")
REPORT = Path("docs/PHOTOS.md")
GALLERY_PEOPLE = (25, 100, 404)          # people per gallery (404: every held-out person)


def held_out_faces(lfw, progress=False):
    """The held-out people's LFW images (training crop) and labels: (dataset, rows (M,) of held-out images)."""
    from npface.data.folders import load_lfw, split_identities
    ds = load_lfw(lfw, "peopleDevTrain.txt", progress=progress)
    _, held = split_identities(ds.identities, 0.1, seed=0)
    return ds, ds.indices_of(held)


def pasted_agreement(lfw, n_pairs, seed=0, model=None, log=print):
    """Verify decisions on pasted pictures (--frame detect) against those on the original frames (--frame lfw)."""
    from npface.data.sampler import validation_pairs
    from npface.faces import embed_faces
    from npface.model import load
    from npface.photos import frame_picture
    model = model if model is not None else load()
    ds, rows = held_out_faces(lfw)
    pairs, same = validation_pairs(ds.labels, n_pairs // 2, seed=seed, indices=rows)     # (P, 2), (P,)
    used = np.unique(pairs)
    rng = np.random.default_rng(seed)
    detected, no_face = {}, []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n, r in enumerate(used):
            frame = np.asarray(Image.open(Path(lfw) / "lfw" / ds.files[r]).convert("RGB"))
            path = Path(tmp) / f"{r}.jpg"
            Image.fromarray(paste(frame, rng).picture).save(path, quality=95)
            faces = frame_picture(path, "detect").faces
            if faces:
                detected[int(r)] = faces[0].crop                   # the largest face, as verify picks it
            else:
                no_face.append(int(r))
            if (n + 1) % max(1, len(used) // 5) == 0:
                log(f"  pasted and detected {n + 1}/{len(used)} ({time.perf_counter() - t0:.0f} s)")
    theta = model.threshold
    orig = dict(zip(used.tolist(), embed_faces(model, np.ascontiguousarray(ds.images[used]))))
    keys = sorted(detected)
    det = dict(zip(keys, embed_faces(model, np.stack([detected[k] for k in keys])))) if keys else {}

    def decide(sig, i, j):
        if i not in sig or j not in sig:
            return None
        return bool(((sig[i].astype(np.float64) - sig[j]) ** 2).sum() < theta)
    d_orig = [decide(orig, int(i), int(j)) for i, j in pairs]
    d_det = [decide(det, int(i), int(j)) for i, j in pairs]
    agree = [a == b for a, b in zip(d_orig, d_det)]
    return {"pairs": int(len(pairs)), "same_pairs": int(same.sum()), "pictures": int(len(used)),
            "pictures_without_face": len(no_face), "pairs_without_face": int(sum(b is None for b in d_det)),
            "agreement": float(np.mean(agree)),
            "accuracy_original_frames": float(np.mean([a == s for a, s in zip(d_orig, same)])),
            "accuracy_detect_frames": float(np.mean([b is not None and b == s for b, s in zip(d_det, same)])),
            "threshold": theta, "seed": seed}


def clustering_quality(lfw, sizes=GALLERY_PEOPLE, draws=3, model=None, log=print):
    """Pairwise precision/recall/F1 and purity of both methods on held-out galleries of several sizes."""
    from npface.faces import embed_faces
    from npface.gallery import METHODS, close_pairs, cluster, pair_scores
    from npface.model import load
    model = model if model is not None else load()
    ds, rows = held_out_faces(lfw)
    sig = embed_faces(model, np.ascontiguousarray(ds.images[rows]))                 # (M, D)
    labels = ds.labels[rows]                                                        # (M,)
    people = np.unique(labels)
    out = []
    for size in sizes:
        size = min(size, len(people))
        n_draws = 1 if size == len(people) else draws
        scores = {m: [] for m in METHODS}
        faces = []
        for draw in range(n_draws):
            chosen = np.random.default_rng(draw).choice(people, size, replace=False)
            keep = np.flatnonzero(np.isin(labels, chosen))
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


def write_report(path=REPORT, results=RESULTS, framing=FRAMING, cluster_search=CLUSTER_SEARCH):
    """docs/PHOTOS.md from the results files (each section only when its file exists)."""
    lines = ["# Your own photos: measured", "",
             "Generated by `python -m benchmarks.photos --report` from `benchmarks/results/framing.json`, "
             "`photos.json` and `cluster_search.json`; each section names the command that measured it.", ""]
    fr = _read(framing)
    if fr:
        e, det = fr["test_errors_px"], fr["test_detection"]
        cal = fr["calibration"]
        lines += ["## Framing (`python -m benchmarks.framing --lfw ../shared/lfw`)", "",
                  f"Calibration (fitted on {fr['fit_detection']['hits']} pasted frames of trained-on people): "
                  f"frame centre {cal['dx']:+.3f} / {cal['dy']:+.3f} box sides right / below the box centre, "
                  f"side {cal['scale']:.3f} box sides.", "",
                  f"Held-out people, {det['images']} pasted frames: the largest face was the pasted face in "
                  f"{det['hits']} ({det['no_face']} without a face, {det['wrong_face']} another region). "
                  "Eye-centre error in pixels of the 112 x 112 crop, mean over both eyes:", "",
                  "| frame | vs the training crop of the same frame | vs the mean training-crop eyes | "
                  "after the alignment net, vs the template eyes |", "|---|---|---|---|",
                  f"| training crop (LFW_CROP) | 0 | {_px(e['training_crop']['vs_reference_px'])} | "
                  f"{_px(e['training_crop']['after_alignment_vs_template_px'])} |"]
        for name, label in (("calibrated", "detector, calibrated frame"), ("uncalibrated_box", "detector box as is")):
            b, a = e[name]["before_alignment"], e[name]["after_alignment"]
            lines.append(f"| {label} | {_px(b['vs_training_crop_px'])} | {_px(b['vs_reference_px'])} | "
                         f"{_px(a['vs_template_px'])} |")
        lines.append("")
    ph = _read(results)
    if ph and "verify" in ph:
        v = ph["verify"]
        lines += ["## Verify on pasted pictures (`python -m benchmarks.photos --lfw ../shared/lfw`)", "",
                  f"{v['pairs']} pairs of held-out people ({v['same_pairs']} same), each picture an LFW frame "
                  "pasted at 0.5x-3x into a larger picture: `--frame detect` agrees with the decision on the "
                  f"original frames for {100 * v['agreement']:.1f}% of the pairs ({v['pictures_without_face']} of "
                  f"{v['pictures']} pictures without a face found). Accuracy against the truth at the learned "
                  f"threshold: {100 * v['accuracy_original_frames']:.1f}% on the original frames, "
                  f"{100 * v['accuracy_detect_frames']:.1f}% with `--frame detect`.", ""]
    if ph and "clustering" in ph:
        c = ph["clustering"]
        lines += ["## Clustering held-out people (`python -m benchmarks.photos --lfw ../shared/lfw`)", "",
                  f"At the model's theta ({c['threshold']:.4f}), faces framed by the training crop; pairwise "
                  "precision / recall / F1 and purity, mean over the draws:", "",
                  "| people | faces | draws | method | precision | recall | F1 | purity | clusters |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for g in c["galleries"]:
            for m in ("whispers", "components"):
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
    parser.add_argument("--lfw", metavar="DIR", help="the LFW folder (lfw/, peopleDevTrain.txt)")
    parser.add_argument("--pairs", type=int, default=400, metavar="P", help="pasted pairs (default 400)")
    parser.add_argument("--quick", action="store_true", help="40 pairs, one small gallery; into runs/photos-quick/")
    parser.add_argument("--report", action="store_true", help="only regenerate docs/PHOTOS.md from the results")
    args = parser.parse_args(argv)
    if args.report:
        print(f"wrote {write_report()}")
        return 0
    if not args.lfw:
        parser.error("--lfw is required (unless --report)")
    t0 = time.perf_counter()
    if args.quick:
        out_file, report = Path("runs/photos-quick/photos.json"), Path("runs/photos-quick/PHOTOS.md")
        verify = pasted_agreement(args.lfw, 40)
        clustering = clustering_quality(args.lfw, sizes=(25,), draws=1)
    else:
        out_file, report = RESULTS, REPORT
        print("verify on pasted pictures")
        verify = pasted_agreement(args.lfw, args.pairs)
        print("clustering")
        clustering = clustering_quality(args.lfw)
    write_json(out_file, {"command": "python -m benchmarks.photos", "verify": verify, "clustering": clustering,
                          "seconds": round(time.perf_counter() - t0, 1)})
    write_report(report, out_file)
    print(f"wrote {out_file} and {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
