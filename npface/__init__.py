"""npface: face signatures trained with the Multibatch estimator.

A from-scratch NumPy/Numba implementation of Tadmor et al., "Learning a Metric
Embedding for Face Recognition using the Multibatch Method".

Layers, each depending only on the ones before it::

    kernels/        jitted loops (no validation, no allocation policy)
    npface.ops      the public forward/backward API: validation, allocation, dispatch
    npface.model    the Table 2 network (alignment net, warp, signature net)
    npface.data / training / evaluation
    python -m npface.<command>   thin command-line entry points
"""

__version__ = "0.1.0"


def load(path=None, writable=False):
    """Load a saved model (``.npz``); with no path, the pretrained model shipped with npface.

    Its parameters are read-only unless ``writable`` (``model.copy()`` gives a writable copy). See
    ``npface.model.load`` for the checks made on the file.
    """
    from npface.model import load as _load
    return _load(path, writable)


def export_onnx(model, path, opset=None):
    """Write ``model`` (a FaceModel) to ``path`` as one ONNX graph, atomically: uint8 faces (N, 112, 112, 3)
    in, signatures (N, 128) and the alignment warp theta (N, 2, 3) out.

    ``opset`` is the ONNX opset version (default 20, the first with AffineGrid). Needs the optional extra
    ``pip install 'npface[onnx]'``; see ``npface.onnx_export``.
    """
    from npface.onnx_export import export_onnx as _export
    return _export(model, path, opset)
