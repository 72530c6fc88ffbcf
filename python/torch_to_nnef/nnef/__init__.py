"""Stage 4 of the pipeline: the NNEF document.

- :mod:`~torch_to_nnef.nnef.builder`: identifiers, invocations, variables and the extensions they
  need (no torch here: it writes text and collects tensors).
- :mod:`~torch_to_nnef.nnef.translate`: the driver that walks the IR and calls the op registry
  (:mod:`torch_to_nnef.op`) for every node.
"""
