"""Stage 6 of the pipeline: what the export targets, and the check that it runs there.

- :mod:`~torch_to_nnef.check.targets`: ``TractNNEF`` and ``KhronosNNEF``.
- :mod:`~torch_to_nnef.check.versions`: what each tract release reads.
- :mod:`~torch_to_nnef.check.tract`: the tract engine linked into this package, and the
  comparison of its outputs with PyTorch's.
- :mod:`~torch_to_nnef.check.debug_bundle`: everything needed to replay a failed check.
"""
