"""Data-parallel training over MPI ranks: the one module that knows about MPI (mpi4py).

Multibatch's loss is a mean over all k^2 - k pairs of the *global* batch of k
signatures (paper section 3). Data parallelism must keep it so: if each of R
ranks took only the pairs inside its own k/R images, the estimate would use
about k^2/R pairs, a different estimator whose variance Theorem 1 says is
larger. So, on R ranks, a training step is::

    every rank      draws the same global batch (k images) from the step's seed
    rank r          embeds only its contiguous rows share(k)        -> (k_r, D)
    all-gather      signatures and labels                            -> (k, D), (k,) on every rank
    every rank      the estimator over the global batch: loss, dL/dsig (k, D), dL/dtheta
    rank r          backpropagates its own rows of dL/dsig           -> its share of the gradients
    all-reduce      one flat buffer of every parameter's gradient (theta's included), summed
    every rank      the same SGD update, so the parameters stay identical

No image travels between ranks: only k x D signatures and k labels
(all-gather) and one gradient buffer of every parameter (all-reduce). The sum
over ranks of the per-row gradients is the gradient of the global loss,
because the estimator's normalisation (the mean over pairs) is already
inside dL/dsig. dL/dtheta is computed identically on every rank, so only rank
0 passes it into the sum: it is counted once.

``connect()`` returns ``SINGLE`` (one process, every collective the
identity, mpi4py never imported) unless an MPI launcher started this
process among more ranks, or ``force`` asks for MPI. Rank 0 alone writes
files and prints. A failure that every rank decides together (the ranks'
parameters differ, the loss of the gathered batch is not finite) is reported
once, by rank 0, and every rank ends with its status. A rank that fails alone
prints its message and aborts the whole job (``MPI_Abort``), so no rank waits
forever in a collective.
"""
import hashlib
import os
import sys
import time

import numpy as np

from npface.extras import install_hint

INSTALL_HINT = install_hint("mpi")
# What MPI launchers put in each process's environment: the job's size (MPICH's and Intel MPI's hydra,
# Slurm's PMI-2; Open MPI; MVAPICH2) or at least a rank (PMIx, e.g. srun --mpi=pmix).
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
# A failing rank other than 0 waits this long before aborting, so that a failure every rank shares
# (a bad flag, a missing file) is reported once, by rank 0, rather than once per rank.
NONROOT_FAIL_DELAY = 1.0
# A rank that aborts the job waits this long after printing its line: the abort can end the launcher's
# forwarding of the rank's stderr before the line has passed through it (an empty stderr was seen).
ABORT_DELAY = 0.5


class RanksDiverged(RuntimeError):
    """The ranks' parameters are no longer identical."""


def share(n, rank, size):
    """Rank ``rank``'s contiguous rows of n, as a slice: sizes differ by at most one, rank 0's first."""
    return slice(n * rank // size, n * (rank + 1) // size)


class Single:
    """One process: rank 0 of 1. Every collective is the identity, so the single-process step is unchanged."""

    rank, size = 0, 1
    who = ""                        # prefix of this rank's error messages

    @property
    def is_root(self):
        return self.rank == 0

    def share(self, n):
        """This rank's rows of a global batch of n."""
        return share(n, self.rank, self.size)

    def allgather_rows(self, local, n):
        """Every rank's rows (n_r, ...) stacked in rank order into the global array (n, ...)."""
        return local

    def gather_batch(self, sig_rows, labels):
        """The global batch's signatures (k, D) and labels (k,) from this rank's sig_rows (k_r, D)."""
        return sig_rows, labels

    def allreduce_sum(self, grads):
        """Parameter gradients (name -> array) summed over the ranks."""
        return grads

    def from_root(self, fn, *args):
        """fn(*args), computed on rank 0 alone and sent to every rank."""
        return fn(*args)

    def any(self, flag):
        """Whether ``flag`` is true on any rank (the same answer on every rank)."""
        return bool(flag)

    def check_identical(self, params, step):
        """Raise RanksDiverged unless every rank holds the same parameters (name -> array)."""

    def fail(self, line, status, every_rank=False):
        """Report a failure (one line on stderr) and end: return ``status`` here.

        Under MPI, ``every_rank`` says that every rank raised this failure at the same point, decided from
        data they all share: then rank 0 prints the line and every rank returns ``status``, with no abort.
        Otherwise this rank prints and aborts the whole job.
        """
        print(line, file=sys.stderr)
        return status


SINGLE = Single()


class MPIComm(Single):
    """R ranks of an MPI job (mpi4py's COMM_WORLD).

    ``seconds[op]`` and ``bytes_sent[op]`` add up, per collective, the wall
    time spent in it (waiting for slower ranks included) and the payload this
    rank contributed, for the benchmarks.
    """

    def __init__(self, world, MPI):
        self.world, self.MPI = world, MPI
        self.rank, self.size = world.Get_rank(), world.Get_size()
        self.who = f"rank {self.rank} of {self.size}: "
        self.seconds = {"allgather": 0.0, "allreduce": 0.0}
        self.bytes_sent = {"allgather": 0, "allreduce": 0}

    def _collective(self, name, nbytes, call, *args):
        t = time.perf_counter()
        call(*args)
        self.seconds[name] += time.perf_counter() - t
        self.bytes_sent[name] += nbytes

    def allgather_rows(self, local, n):
        local = np.ascontiguousarray(local)                          # (n_r, ...)
        row = int(np.prod(local.shape[1:], dtype=np.int64))
        counts = [row * (s.stop - s.start) for s in (share(n, r, self.size) for r in range(self.size))]
        out = np.empty((n,) + local.shape[1:], dtype=local.dtype)   # (n, ...)
        self._collective("allgather", local.nbytes, self.world.Allgatherv, local, [out, counts])
        return out

    def gather_batch(self, sig_rows, labels):
        k = len(labels)
        sig = self.allgather_rows(sig_rows, k)                                     # (k, D)
        gathered = self.allgather_rows(np.asarray(labels)[self.share(k)], k)      # (k,)
        if not np.array_equal(gathered, labels):
            raise ValueError("the ranks drew different batches from the same seed: every rank must read the "
                             "same data (the same --lfw folder and --people list on every machine)")
        return sig, gathered

    def allreduce_sum(self, grads):
        names = sorted(grads)
        flat = np.concatenate([np.ravel(grads[n]) for n in names])   # (total,) one message for all
        self._collective("allreduce", flat.nbytes, self.world.Allreduce, self.MPI.IN_PLACE, flat,
                         self.MPI.SUM)
        out, start = {}, 0
        for n in names:
            size = np.size(grads[n])
            out[n] = flat[start:start + size].reshape(np.shape(grads[n]))
            start += size
        return out

    def from_root(self, fn, *args):
        return self.world.bcast(fn(*args) if self.is_root else None, root=0)

    def any(self, flag):
        return bool(self.world.allreduce(bool(flag), op=self.MPI.LOR))

    def check_identical(self, params, step):
        digests = self.world.allgather(checksum(params))
        if len(set(digests)) > 1:
            raise RanksDiverged(f"step {step}: the ranks' parameters differ (checksums "
                                f"{', '.join(f'rank {r} {d:016x}' for r, d in enumerate(digests))}); every rank "
                                "must apply the same update, so the ranks do not run the same npface or MPI "
                                "summed differently; stopped")

    def fail(self, line, status, every_rank=False):
        if every_rank:
            if self.is_root:
                print(line, file=sys.stderr, flush=True)
            return status                          # every rank ends here; mpi4py finalises MPI at exit
        if not self.is_root:
            time.sleep(NONROOT_FAIL_DELAY)
        print(line, file=sys.stderr, flush=True)
        sys.stdout.flush()
        time.sleep(ABORT_DELAY)
        self.world.Abort(status)


def checksum(params):
    """A 64-bit digest of every parameter's bytes (name -> array), in name order."""
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(params):
        h.update(name.encode())
        h.update(np.ascontiguousarray(params[name]).tobytes())
    return int.from_bytes(h.digest(), "big")


def launched_size(environ=None):
    """(started by an MPI launcher?, the job's size if the launcher says it, else None)."""
    env = os.environ if environ is None else environ
    sizes = [int(env[v]) for v in SIZE_VARIABLES if env.get(v, "").isdigit()]
    launched = bool(sizes) or any(v in env for v in RANK_VARIABLES)
    return launched, (sizes[0] if sizes else None)


def connect(force=False, environ=None):
    """The communicator to train with: SINGLE, or MPIComm when under MPI with more than one rank.

    Without ``force`` and without an MPI launcher's environment, mpi4py is
    not even imported. ``force`` (``--distributed``) requires MPI: ValueError
    (one line) when mpi4py is missing or no launcher started this process.
    """
    launched, size = launched_size(environ)
    if not force and (not launched or size == 1):
        return SINGLE
    MPI = import_mpi()
    world = MPI.COMM_WORLD
    if world.Get_size() == 1:
        if size is not None and size > 1:
            raise ValueError(f"the MPI launcher started {size} processes but MPI sees 1 rank in each: mpi4py is "
                             "built against a different MPI than this mpiexec (see README, 'Training on many "
                             "processes')")
        if force and not launched:
            raise ValueError("--distributed: not started by an MPI launcher; run "
                             "mpiexec -n R python -m npface.train ... (or srun under Slurm)")
        if not force:
            return SINGLE
    return MPIComm(world, MPI)


def import_mpi():
    """mpi4py's MPI module, or ValueError naming what to install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ValueError(f"training on MPI ranks needs mpi4py and an MPI library ({e}): {INSTALL_HINT}") from None
    except RuntimeError as e:                        # mpi4py installed, its MPI library not loadable
        raise ValueError(f"mpi4py cannot load its MPI library ({' '.join(str(e).split())}): {INSTALL_HINT}") \
            from None
    return MPI
