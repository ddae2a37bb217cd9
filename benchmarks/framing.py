"""Calibrate the detector-box-to-frame map and measure the framing error on held-out people.

    python -m benchmarks.framing --lfw ../shared/lfw            # writes npface/framing_calibration.py
    python -m benchmarks.framing --lfw ../shared/lfw --quick    # small, into runs/framing-quick/

People: peopleDevTrain.txt split as the shipped model's trainer split it
(``split_identities``, 10 % held out, seed 0). The calibration is fitted on
images of the trained-on people; the error is reported on images of the
held-out people only. Images whose landmarks came from LFW's fallback box
(``detected = 0``) are left out: their landmarks are not a reliable truth.

Each LFW frame is pasted at a random scale (0.5x to 3x) and position into a
larger picture (``benchmarks.pasted``) and the detector runs on the picture;
the command's rule (the main face, ``npface.detect``) picks the face. A
pick counts as a hit when its box holds the midpoint of the eyes; misses
(no face, or another region) are counted and left out of the error.

Errors, in pixels of the 112 x 112 crop, mean over the two eye centres
(each the mean of its six landmarks) and over images:

- ``before_alignment.vs_training_crop``: the eyes in the detector's frame
  against the eyes in the training crop (``LFW_CROP``) of the same frame,
  i.e. how far the detector framing is from the framing training used;
- ``before_alignment.vs_reference``: the eyes against their mean position
  in training crops (``reference_eyes``; the calibration's target is the
  mean of all 68 landmarks there, the landmark-derived frame), beside
  the same figure for the training crops themselves (the spread the
  training frame already has);
- ``after_alignment``: the eyes after the shipped model's alignment warp,
  against the template eyes (``TEMPLATE_EYES``, where the warp aims), for
  the detector frames and the training crops, and the distance between the
  two warped positions.

The uncalibrated frame (the detector's box itself) is reported beside.

False detections (``false_detections``): pictures without the subject's
face (strips of held-out frames below the training crop, and the pasted
pictures' backgrounds), and in how many the detector finds a face anyway,
with its second look (``npface.detect``) and without: what the second look
costs.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import write_json
from benchmarks.pasted import background, paste
from npface.cli import run_main
from npface.data.cache import atomic_write_text

RESULTS = Path("benchmarks/results/framing.json")
CALIBRATION_MODULE = Path("npface/framing_calibration.py")


def eye_centres(points):
    """(N, 68, 2) landmarks -> (N, 2, 2) centres of the image-left and image-right eye."""
    from npface.data.landmarks import LEFT_EYE, RIGHT_EYE
    return np.stack([points[:, LEFT_EYE].mean(1), points[:, RIGHT_EYE].mean(1)], axis=1)


def held_out_split(lfw):
    """(index, table rows, trained-on names, held-out names) of peopleDevTrain, split as the trainer splits."""
    from npface.data.folders import scan_folder, split_identities
    from npface.data.landmarks import read_landmarks
    lfw = Path(lfw)
    index = scan_folder(lfw / "lfw", lfw / "peopleDevTrain.txt")
    table = read_landmarks(lfw / "landmarks68.tsv")
    trained, held = split_identities(index.identities, 0.1, seed=0)
    return index, table, trained, held


def files_of(index, names):
    """The image files (relative, in index order) of the people ``names``."""
    wanted = set(names)
    return [f for f in index.files if f.split("/")[0] in wanted]


def sample_files(index, table, names, n, rng):
    """n image files (relative) of people ``names`` with detected landmarks, and their (n, 68, 2) landmarks."""
    files = files_of(index, names)
    rows = table.rows_for(files)
    keep = np.flatnonzero(table.detected[rows])
    pick = rng.choice(keep, size=min(n, len(keep)), replace=False)
    return [files[i] for i in pick], table.points[rows[pick]]


def detect_pasted(index, files, points, rng, log=print):
    """Paste each frame, detect, pick the main face; -> dict of arrays over the hits and the counts."""
    from npface.detect import detect_faces, read_picture
    eyes_frame = eye_centres(points)                                       # (N, 2, 2) in the 250 frame
    out = {"boxes": [], "eyes": [], "eyes_frame": [], "points": [], "pictures": [], "pastes": []}
    counts = {"images": len(files), "hits": 0, "no_face": 0, "wrong_face": 0}
    t0 = time.perf_counter()
    for i, (f, eyes, pts) in enumerate(zip(files, eyes_frame, points)):
        frame = read_picture(index.root / f)
        pasted = paste(frame, rng)
        faces = detect_faces(pasted.picture)
        eyes_pic = pasted.to_picture(eyes)                                 # (2, 2)
        if not faces:
            counts["no_face"] += 1
        else:
            left, top, w, h = faces[0].box
            mx, my = eyes_pic.mean(0) + 0.5                                # edge coordinates
            if left <= mx <= left + w and top <= my <= top + h:
                counts["hits"] += 1
                out["boxes"].append(faces[0].box)
                out["eyes"].append(eyes_pic)
                out["eyes_frame"].append(eyes)
                out["points"].append(pasted.to_picture(pts))
                out["pictures"].append(pasted.picture)
                out["pastes"].append(pasted)
            else:
                counts["wrong_face"] += 1
        if (i + 1) % max(1, len(files) // 10) == 0:
            log(f"  detected {i + 1}/{len(files)} ({time.perf_counter() - t0:.0f} s)")
    for k, shape in (("boxes", (-1, 4)), ("eyes", (-1, 2, 2)), ("eyes_frame", (-1, 2, 2)), ("points", (-1, 68, 2))):
        out[k] = np.asarray(out[k], dtype=np.float64).reshape(shape)
    return out, counts


def mean_error(a, b):
    """Mean over images and the two eyes of the distance between (N, 2, 2) eye positions."""
    return float(np.linalg.norm(a - b, axis=-1).mean())


def crops_of(hits, squares):
    """(N, 112, 112, 3) uint8 crops of the pasted pictures at ``squares`` (N, 4)."""
    from npface.framing import cut_frame
    return np.stack([cut_frame(Image.fromarray(p), sq) for p, sq in zip(hits["pictures"], squares)])


def measure(hits, cal, reference, model):
    """The framing errors (module docstring) of the held-out hits under calibration ``cal``."""
    from npface.data.folders import LFW_CROP
    from npface.data.landmarks import TEMPLATE_EYES, output_points
    from npface.framing import FrameCalibration, eyes_in_frame, frame_square
    from npface.pretrain_alignment import predict_thetas
    train_eyes = LFW_CROP.points_to_crop(hits["eyes_frame"])             # (N, 2, 2) eyes in the training crop
    # The training crop of each pasted frame: LFW_CROP moved by the paste.
    train_squares = np.array([p.square(LFW_CROP) for p in hits["pastes"]])  # (N, 4) edge coordinates
    train_theta = predict_thetas(model, crops_of(hits, train_squares))
    train_after = output_points(train_eyes, train_theta)
    result = {"images": int(len(train_eyes)),
              "training_crop": {"vs_reference_px": mean_error(train_eyes, reference),
                                "after_alignment_vs_template_px": mean_error(train_after, TEMPLATE_EYES)}}
    from npface.framing_net import bundled, refine_square
    framings = [("calibrated", frame_square(hits["boxes"], cal)),
                ("uncalibrated_box", frame_square(hits["boxes"], FrameCalibration(0.0, 0.0, 1.0)))]
    net = bundled()
    if net is not None:                  # the calibrated squares moved by the shipped framing net, as --frame detect
        framings.insert(1, ("framing_net", np.array([refine_square(Image.fromarray(p), sq, net)
                                                     for p, sq in zip(hits["pictures"], framings[0][1])])))
    for name, squares in framings:
        eyes = eyes_in_frame(hits["eyes"], squares)
        after = output_points(eyes, predict_thetas(model, crops_of(hits, squares)))
        result[name] = {
            "before_alignment": {"vs_training_crop_px": mean_error(eyes, train_eyes),
                                 "vs_reference_px": mean_error(eyes, reference)},
            "after_alignment": {"vs_template_px": mean_error(after, TEMPLATE_EYES),
                                "vs_training_crop_after_alignment_px": mean_error(after, train_after)}}
    return result


def write_calibration(path, cal, info):
    """The generated module holding the constants ``npface.framing.calibration`` reads."""
    text = ('"""The detector-box-to-frame calibration read by ``npface.framing.calibration``.\n\n'
            f"Generated by ``python -m benchmarks.framing --lfw LFW``; do not edit. Fitted on {info['images']}\n"
            "pasted LFW frames of trained-on peopleDevTrain people (68-point landmarks as truth); the framing error on\n"
            "held-out people is in "
            'benchmarks/results/framing.json.\n"""\n'
            f"CALIBRATION = {{\"dx\": {cal.dx!r}, \"dy\": {cal.dy!r}, \"scale\": {cal.scale!r}}}\n")
    atomic_write_text(Path(path), text)


def false_detections(index, names, n, seed, log=print):
    """Pictures without the subject's face, and in how many the detector finds a face anyway, with its
    second look and without (``detect_faces(plain=True)``): ``n`` strips of held-out frames below the
    training crop (rows 216..250: clothes, hands, desks; another person's face now and then), enlarged 3x,
    and ``n`` backgrounds of the pasted pictures (``benchmarks.pasted.background``, 200 to 1500 px a side)."""
    from npface.data.folders import LFW_CROP
    from npface.detect import detect_faces
    rng = np.random.default_rng(seed)
    files = files_of(index, names)
    strips = []
    for i in rng.choice(len(files), size=min(n, len(files)), replace=False):
        frame = Image.open(index.root / files[i]).convert("RGB")
        strip = frame.crop((0, LFW_CROP.top + LFW_CROP.size, frame.width, frame.height))
        strips.append(np.asarray(strip.resize((3 * strip.width, 3 * strip.height), Image.Resampling.BILINEAR)))
    grounds = [np.asarray(background(rng, int(rng.integers(200, 1501)), int(rng.integers(200, 1501))))
               for _ in range(n)]
    out = {}
    for name, pictures in (("strips_below_the_crop", strips), ("backgrounds", grounds)):
        out[name] = {"pictures": len(pictures),
                     "with_a_face": sum(bool(detect_faces(p)) for p in pictures),
                     "with_a_face_plain": sum(bool(detect_faces(p, plain=True)) for p in pictures)}
        log(f"false detections, {name}: {out[name]}")
    return out


def run(lfw, n_fit, n_test, seed, results, calibration_module, log=print, n_empty=600):
    from npface.data.folders import LFW_CROP
    from npface.detect import CASCADE_FILE, MAX_SIDE, MIN_FACE, MIN_NEIGHBOURS, SCALE_STEP
    from npface.framing import fit_calibration
    from npface.model import load
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    index, table, trained, held = held_out_split(lfw)
    fit_files, fit_points = sample_files(index, table, trained, n_fit, rng)
    test_files, test_points = sample_files(index, table, held, n_test, rng)
    log(f"fit: {len(fit_files)} images of trained-on people; test: {len(test_files)} of held-out people")
    mean_face = LFW_CROP.points_to_crop(fit_points).mean(0)               # (68, 2) mean landmarks in training crops
    reference = LFW_CROP.points_to_crop(eye_centres(fit_points)).mean(0)   # (2, 2) their eye centres
    fit_hits, fit_counts = detect_pasted(index, fit_files, fit_points, rng, log)
    cal = fit_calibration(fit_hits["boxes"], fit_hits["points"], mean_face)
    log(f"calibration: dx {cal.dx:.4f}, dy {cal.dy:.4f}, scale {cal.scale:.4f}")
    test_hits, test_counts = detect_pasted(index, test_files, test_points, rng, log)
    errors = measure(test_hits, cal, reference, load())
    empty = false_detections(index, held, n_empty, seed, log)
    out = {
        "command": "python -m benchmarks.framing",
        "detector": {"cascade": CASCADE_FILE, "max_side": MAX_SIDE, "min_face": MIN_FACE,
                     "scale_step": SCALE_STEP, "min_neighbours": MIN_NEIGHBOURS},
        "people": {"split": "split_identities(peopleDevTrain, 0.1, seed=0), as the shipped model's trainer",
                   "fit": "trained-on people", "test": "held-out people"},
        "paste": {"scales": [0.5, 3.0], "margins": [1.2, 2.5], "seed": seed},
        "calibration": {"dx": cal.dx, "dy": cal.dy, "scale": cal.scale},
        "reference_eyes_px": reference.tolist(),
        "fit_detection": fit_counts, "test_detection": test_counts,
        "test_errors_px": errors,
        "false_detections": empty,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(results, out)
    if calibration_module is not None:
        write_calibration(calibration_module, cal, {"images": fit_counts["hits"]})
    log(f"wrote {results}" + (f" and {calibration_module}" if calibration_module else ""))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.framing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", required=True, metavar="DIR", help="the LFW folder (lfw/, peopleDevTrain.txt, "
                                                                    "landmarks68.tsv)")
    parser.add_argument("--fit", type=int, default=1500, metavar="N", help="fit images (default 1500)")
    parser.add_argument("--test", type=int, default=600, metavar="N", help="held-out test images (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="sampling and pasting seed (default 0)")
    parser.add_argument("--quick", action="store_true",
                        help="150 fit and 100 test images; results into runs/framing-quick/, calibration untouched")
    args = parser.parse_args(argv)
    if args.quick:
        run(args.lfw, 150, 100, args.seed, Path("runs/framing-quick/framing.json"), None, n_empty=50)
    else:
        run(args.lfw, args.fit, args.test, args.seed, RESULTS, CALIBRATION_MODULE)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.framing"))
