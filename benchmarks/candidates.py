"""The candidate signature nets measured on the selection people, listed once.

Each run NAME has photos-selection-NAME.json (``benchmarks.photos --people selection``: the
``--frame detect`` agreement on pasted pictures) and heldout-selection-NAME.json
(``benchmarks.heldout --people selection``: fit-and-test accuracy and AUC) in benchmarks/results/. The
yardstick's, those of the earlier shipped model (`recipe2500`), are photos-selection-detector.json and
heldout-selection.json.

- ``benchmarks.photos`` puts every run in docs/PHOTOS.md's table under its ``label``, in this order;
- ``benchmarks.report`` gives each run with a ``what`` a paragraph in RESULTS.md section 5 that opens
  with it and closes with the framing rule's sentences (``what`` None: section 5 writes that run's
  paragraph with its own code, beside the runs measured before the rule); ``made_by`` names the command
  of a model made from finished runs rather than trained (its file records one run's configuration), and
  ``withdrawn`` why a run that was shipped was taken back.
"""
from typing import NamedTuple, Optional

# how the docs name the yardstick of every candidate: the model shipped from 2026-12-02 (runs/recipe2500, one
# alignment round, its selection measurements heldout-selection.json and photos-selection-detector.json),
# until the distilled model replaced it
YARDSTICK = "the earlier shipped model (`recipe2500`)"


class Candidate(NamedTuple):
    name: str                 # the NAME of its two results files
    label: str                # its row in docs/PHOTOS.md's table
    what: Optional[str]       # how its RESULTS.md paragraph opens (None: written elsewhere in section 5)
    made_by: Optional[str] = None     # the command that made it, when it was made from runs, not trained
    withdrawn: Optional[str] = None   # why it was taken back, when it was shipped and then withdrawn
    # the candidate it was measured against, the model shipped when its rule was fixed (None: recipe2500,
    # YARDSTICK), and that rule (benchmarks.report): "agreement", more --frame detect agreement at a small
    # cost at most (while #16's agreement target was open), or "accuracy", more accuracy at no cost
    yardstick: Optional[str] = None
    rule: str = "agreement"
    # True when it is its yardstick's own command with another seed: how far it lands from the yardstick is
    # then that recipe's spread by chance, not the effect of a change
    reseed: bool = False


# in the order they were measured
CANDIDATES = (
    Candidate('b128x2',
              'the `recipe2500` recipe with 128 x 2 batches',
              None),
    Candidate('b128x2-context',
              'the `recipe2500` recipe with 128 x 2 batches and context jitter',
              'The `batch-128x2` and `context-jitter` levers together, two of those whose screens raised the '
              "detect agreement, trained for the `recipe2500` recipe's full length from the alignment pretraining "
              'run again into the same file (its weights differ from the alignment net `recipe2500` holds)'),
    Candidate('long5000',
              'the `recipe2500` recipe trained twice as long',
              None),
    Candidate('finetune-b128x2-context',
              '`recipe2500` fine-tuned with 128 x 2 batches and context jitter',
              '`recipe2500` fine-tuned with the same two levers at its final learning rate (0.001, ×0.1 at '
              '85%)'),
    Candidate('finetune-lr01-b128x2-context',
              'the same fine-tuning at the full learning rate',
              'The same fine-tuning at the full learning rate (0.01, ×0.1 at 85%)'),
    Candidate('b128x2-context-5000',
              'the `recipe2500` recipe with 128 x 2 batches and context jitter, trained twice as long',
              'The `batch-128x2` and `context-jitter` run above (`b128x2-context`, from the same start and '
              'seed) trained twice as long (`--steps 5000`, the learning-rate drop still at 85% of the run: up '
              "to the shorter run's drop at step 2,125 the two runs take the same steps, and their validations "
              'up to step 2,000 are the same figures)'),
    Candidate('soup-c1-c4',
              'the mean of the weights of `b128x2-context` and `b128x2-context-5000`',
              'The mean of the final weights (θ included) of the two runs above with 128 × 2 batches and '
              "context jitter, of 2,500 and 5,000 steps, which take the same steps up to the shorter run's "
              'learning-rate drop',
              made_by='python -m npface.average --out runs/soup-c1-c4.npz runs/b128x2-context/model.npz '
                      'runs/b128x2-context-5000/model.npz'),
    Candidate('b128x2-context-seed1',
              'the `recipe2500` recipe with 128 x 2 batches and context jitter, another seed',
              'The 2,500-step run with 128 × 2 batches and context jitter again, with another seed (`--seed 1`: '
              'another data order and augmentation, the same starting model), to tell its recipe from its draw'),
    Candidate('rounds2',
              "`recipe2500`'s weights with two alignment rounds",
              "`recipe2500`'s weights, untouched, with two alignment rounds (`ModelConfig.align_rounds`: the "
              'alignment net looks again at its own warp, the two similarities are composed, and the input is '
              'warped once by the composition), measured with `--align-rounds 2`',
              withdrawn="with two rounds the network amplifies float32 rounding, so that on the export tests' "
                        "random-noise images ONNX Runtime's signatures differ from npface's by more than the "
                        "export's stated tolerance (`tests/test_export.py`, which the shipped model must pass), "
                        'and the shipped file went back to one round'),
    Candidate('b128x2-context-a8000',
              'the `recipe2500` recipe with 128 x 2 batches and context jitter, from a longer alignment pretraining',
              'The `batch-128x2` and `context-jitter` levers together again, from an alignment net pretrained '
              'for 8,000 steps instead of 2,000: the three changes that each raised the detect agreement on the '
              'selection people, at once'),
    Candidate('distill-ft',
              '`recipe2500` fine-tuned towards an ensemble of three trained models',
              '`recipe2500` fine-tuned at its final learning rate (0.001, ×0.1 at 85%) with a distillation '
              'term (`--distill-from`, [its page](ops/pair_distill.md)): beside the hinge loss, over all pairs of '
              'each batch, the mismatch of the student\'s distances with the mean distance, in threshold units, '
              'of three trained models on the clean crops (`recipe2500`, then the shipped model, '
              '`b128x2-context-seed1` and '
              '`b128x2-context-5000`: three different trajectories), weighted 1.0 so that the two terms\' '
              'signature gradients are about equal on trained models'),
    Candidate('distill-s-c1-c5-w500',
              'the `recipe2500` recipe with the distillation term, from a fresh signature net',
              "The `recipe2500` recipe from its start (a fresh signature net) with the same distillation term and "
              'teachers, its weight ramped up from 0 to 1.0 over the first 500 steps (`--distill-warmup 500`): '
              'at full weight from the first step, a fresh net failed twice (the squared mismatch diverged, '
              "which led to Huber's loss; with it, the net collapsed to nearly equal signatures)"),
    Candidate('distill-b128x2-context-w500',
              'the `recipe2500` recipe with 128 x 2 batches, context jitter and the distillation term',
              'The two levers that raised the detect agreement at a cost in accuracy (`batch-128x2`, '
              '`context-jitter`), with the distillation term of the run above (same teachers, weight and '
              'warm-up), meant to pay that cost back'),
    Candidate('distill4-b128x2-context-5000',
              'the run above trained twice as long, with itself as a fourth teacher',
              'The run above (`distill-b128x2-context-w500`, then the shipped model) trained twice as long '
              '(`--steps 5000`, the learning-rate drop still at 85% of the run), with that model as a fourth '
              'teacher beside its three (`recipe2500`, its file taken back from the commit that replaced it). The '
              'aim: a student closer to its teachers, since the distillation term acts against overfitting, so '
              'that more steps might pay where they did not alone (`long5000`)',
              yardstick='distill-b128x2-context-w500', rule='accuracy'),
    Candidate('distill-w3-b128x2-context',
              'the shipped recipe with the distillation term at 3 times its weight',
              'The shipped model\'s recipe (`distill-b128x2-context-w500`) with the distillation term at 3.0 '
              'instead of 1.0 (`--distill-weight 3`), the same teachers, warm-up and seed: the weight had never '
              'been varied, and a heavier term pulls the student further towards the teachers\' mean distance, '
              'whose ensembles verify better than any one network on the selection people',
              yardstick='distill-b128x2-context-w500', rule='accuracy'),
    Candidate('soup-c8-c10',
              'the mean of the weights of the shipped model and the run above (at its θ it calls almost every '
              'pair the same, so its decisions barely change with the framing: the agreement says nothing here)',
              'The mean of the final weights (θ included) of the shipped model\'s run '
              '(`distill-b128x2-context-w500`) and the run above, which share their start, seed and every '
              'setting but the distillation weight. The mean did not keep their scale: its distances shrank '
              'far below its θ, the mean of theirs (the threshold fitted on its pairs and θ are both in its '
              'results file), so at θ it calls almost every pair the same',
              made_by='python -m npface.average --out runs/soup-c8-c10.npz '
                      'runs/distill-b128x2-context-w500/model.npz runs/distill-w3-b128x2-context/model.npz',
              yardstick='distill-b128x2-context-w500', rule='accuracy'),
    Candidate('distill4-b128x2-context',
              "the shipped recipe with the four teachers of the 5,000-step run, at the shipped length",
              'The shipped model\'s recipe with the four teachers of `distill4-b128x2-context-5000` (the shipped '
              'model added to its three), for the shipped 2,500 steps: that run changed the teachers and the '
              'length at once, and this one changes the teachers alone (same weight, warm-up and seed)',
              yardstick='distill-b128x2-context-w500', rule='accuracy'),
    Candidate('distill-singletons-b128x2-context',
              'the shipped recipe with 64 single-image people in each batch',
              'The shipped model\'s recipe with 64 of the 2,573 single-image training people in each batch '
              '(`--singletons 64`, k = 320), same teachers, start and seed. The distillation term needs no '
              'labels, and none of the three teachers trained on those images, so on their pairs the teachers\' '
              'distances are what they learned to generalise rather than what they fitted; the hinge takes '
              'them as not-same partners, as in the `singletons` screen',
              yardstick='distill-b128x2-context-w500', rule='accuracy'),
    Candidate('distill-b128x2-context-seed1',
              'the shipped recipe with another seed (1)',
              'The shipped model\'s recipe, unchanged but for the seed (`--seed 1`: data order, augmentation, the '
              'signature net\'s initial weights), same teachers and start. Every rule since '
              '`distill4-b128x2-context-5000` measures against the shipped model, one draw of its recipe; this run '
              'is a second draw, so the gap between the two is how far that recipe moves by chance alone',
              yardstick='distill-b128x2-context-w500', rule='accuracy', reseed=True),
)
