"""The ``export_llm_to_tract`` command: its options, and ``main``, which runs the export and returns the exit status.

Run it as ``export_llm_to_tract`` or ``python -m torch_to_nnef.llm`` (``--help`` lists every option).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from torch_to_nnef.io.compress import DEFAULT_COMPRESSION_REGISTRY
from torch_to_nnef.llm.export import DEFAULT_TRACT_VERSION, export_llm_to_tract
from torch_to_nnef.llm.loading import ATTN_IMPLEMENTATIONS, DTYPES, DType
from torch_to_nnef.llm.staging import EXPORT_DIR_STRUCTS
from torch_to_nnef.llm.verify import TOLERANCES
from torch_to_nnef.nnef.builder import NAMING_SCHEMES

__all__ = ["main"]

PACKAGE_LOGGER = logging.getLogger("torch_to_nnef.llm")
"""The parent logger of every module of :mod:`torch_to_nnef.llm`, whose level ``--verbose`` sets."""

_DESCRIPTION = """\
Export a HuggingFace causal language model (Llama, Qwen, Mistral, Phi-3, Gemma 1-3, GPT-2, ...)
to NNEF for tract, with its key-value cache as graph inputs and outputs, then check the export
in tract against PyTorch.

Writes into EXPORT_DIR, laid out by --export-dir-struct:
  deep (default)  model/model.nnef.tgz, model/io_spec.json (the graph's inputs and outputs),
                  tests/*.npz (inputs and PyTorch outputs of a prompt step and of a step with a
                  past, and a greedy generation of a few tokens); with -dwtac also
                  model/config.json and tokenizer/ (when the model has one)
  flat            the same files, all in EXPORT_DIR itself (model.nnef.tgz, io_spec.json, *.npz,
                  config.json and the tokenizer files), as in a Hugging Face repository
The export is written into a temporary folder beside EXPORT_DIR and renamed to EXPORT_DIR once
complete and checked: a failed export leaves nothing behind.

Graph: inputs input_ids (i64 [1, S]) then, per layer, in_cache_key_{i} and in_cache_value_{i}
([1, heads, P, head size], as the model caches them: sizes may differ between layers and between a
layer's key and value; io_spec.json gives each one); outputs logits then out_cache_key_{i} and
out_cache_value_{i} ([1, heads, P + S, head size]). Run a prompt with P = 0 and each next token
with the caches the previous step returned."""

_EPILOG = """\
examples:
  # a model saved with save_pretrained, in f16 with Q4_0 linear weights
  export_llm_to_tract -d ./my-llama -e ./llama_f16_q4_0 -f16 -c min_max_q4_0

  # from the Hugging Face Hub (needs the network, or the model in the Hub cache)
  export_llm_to_tract -s apple/OpenELM-1_1B-Instruct -e ./openelm_f16_q4_0 -f16 -c min_max_q4_0

  # a LoRA adapter merged into its base model, with the tokenizer and config, all files in one folder
  export_llm_to_tract -d ./my-llama -mp ./my-lora-adapter -e ./llama_lora -dwtac --export-dir-struct flat

  # a model larger than memory: its weights streamed from its safetensors shards, unchecked
  export_llm_to_tract -d ./my-llama-70b -e ./llama70b_q4_0 -f16 -c min_max_q4_0 -nv
  # ... or checked on a copy of its first 2 layers and its head
  export_llm_to_tract -d ./my-llama-70b -e ./llama70b_q4_0 -f16 -c min_max_q4_0 --check-layers 2

  # a compressor of your own: MY_REGISTRY maps names to function(model, **options) -> model
  export_llm_to_tract -d ./my-llama -e ./out --compression-registry my_pkg.compressors.MY_REGISTRY -c gptq_q4_0

exit status: 0 on success, 1 on any error (a one-line message; --verbose shows the traceback),
2 on a bad command line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export_llm_to_tract",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("model to export (one of)")
    source.add_argument(
        "-s",
        "--model-slug",
        metavar="SLUG",
        help="Hugging Face Hub model id, e.g. -s meta-llama/Llama-3.2-1B (needs the network or the Hub cache)",
    )
    source.add_argument(
        "-d",
        "--local-dir",
        metavar="DIR",
        help="a folder written by save_pretrained (config.json and weights), e.g. -d ./my-llama",
    )
    parser.add_argument(
        "-e",
        "--export-dirpath",
        required=True,
        metavar="EXPORT_DIR",
        help="folder to write (created; its parent must exist; an existing one must be empty)",
    )
    parser.add_argument(
        "--ignore-already-exist-dir",
        "-iaed",
        action="store_true",
        help="write into EXPORT_DIR even if it is not empty (the export's own files are replaced)",
    )
    parser.add_argument(
        "-dwtac",
        "--dump-with-tokenizer-and-conf",
        action="store_true",
        help="also write the model's config.json (deep: model/config.json) and its tokenizer files (deep: "
        "tokenizer/), when it has a tokenizer",
    )
    parser.add_argument(
        "--export-dir-struct",
        choices=list(EXPORT_DIR_STRUCTS),
        default="deep",
        help="layout of EXPORT_DIR: deep = model/, tokenizer/ and tests/ folders; flat = every file in "
        "EXPORT_DIR itself (default: %(default)s)",
    )
    parser.add_argument(
        "-mp",
        "--merge-peft",
        metavar="ADAPTER_DIR",
        help="a PEFT adapter folder (written by save_pretrained of a PeftModel, e.g. LoRA) merged into the "
        "model's weights before the export (needs peft)",
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("-f16", "--as-float16", action="store_true", help="export in float16 (same as -dt f16)")
    precision.add_argument(
        "-dt",
        "--dtype",
        choices=list(DTYPES),
        help="float type of the export (default: f32); bf16 is exported as f16, with a warning",
    )
    parser.add_argument(
        "-idt",
        "--inputs-dtype",
        choices=list(DTYPES),
        help="float type of the key-value caches given to and returned by the graph, cast to and from the "
        "model's inside it (default: the model's), e.g. -idt f16 for an f32 model with half-size caches",
    )
    parser.add_argument(
        "-c",
        "--compression-method",
        metavar="NAME",
        help="compressor of the registry applied after the float cast, e.g. -c min_max_q4_0 (Q4_0 linear "
        "weights); built in: min_max_q4_0, min_max_q4_0_with_embeddings, min_max_q4_0_all",
    )
    parser.add_argument(
        "--compression-registry",
        default=DEFAULT_COMPRESSION_REGISTRY,
        metavar="PKG.MODULE.REGISTRY",
        help="dotted path of the mapping of compressors -c picks from (default: %(default)s)",
    )
    parser.add_argument(
        "--tract-specific-version",
        metavar="X.Y.Z",
        help=f"tract release to target (default: this package's default, {DEFAULT_TRACT_VERSION})",
    )
    parser.add_argument(
        "-tt",
        "--tract-check-io-tolerance",
        choices=list(TOLERANCES),
        help="tolerance of the checks against PyTorch (default: approximate in f32, super in f16)",
    )
    parser.add_argument(
        "-n",
        "--naming-scheme",
        choices=list(NAMING_SCHEMES),
        default="natural_verbose_camel",
        help="how the graph's intermediate identifiers are named (default: %(default)s)",
    )
    parser.add_argument(
        "-f32-attn", "--force-f32-attention", action="store_true", help="in f16, compute attention in f32"
    )
    parser.add_argument(
        "-f32-lin-acc",
        "--force-f32-linear-accumulator",
        action="store_true",
        help="in f16, compute linear layers and matmuls in f32",
    )
    parser.add_argument(
        "-f32-norm", "--force-f32-normalization", action="store_true", help="in f16, compute normalisations in f32"
    )
    parser.add_argument(
        "--reify-sdpa-operator",
        action="store_true",
        help="write attention as tract's fused SDPA operator (tract >= 0.22.0)",
    )
    parser.add_argument(
        "--attn-implementation",
        choices=list(ATTN_IMPLEMENTATIONS),
        default="auto",
        help="transformers' attention implementation traced; auto: sdpa where the model has it, else eager "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--num-logits-to-keep",
        type=int,
        default=1,
        metavar="K",
        help="logits output for the last K positions; 0 outputs every position's (default: %(default)s)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let transformers run the code of the model's repository (off by default)",
    )
    parser.add_argument(
        "-nv",
        "--no-verify",
        action="store_true",
        help="skip the checks in tract (compressed or large models then stream their weights, see --stream; "
        "a model loaded in memory still gets its test .npz files)",
    )
    parser.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="never load the model: build it without weights and copy each weight from the folder's "
        ".safetensors files into the archive (cast or quantized on the way), so memory holds a few "
        "tensors whatever the model's size; no test .npz files, and the check runs on the first layers "
        "(--check-layers). Default, when the model allows it (the log says which ran and why): stream "
        "unchecked exports (-nv) of a folder that compress the weights (-c) or whose weights take more "
        "than a quarter of the memory available, and checked ones that do not fit in memory; --stream "
        "fails when it cannot stream, --no-stream always loads the model",
    )
    parser.add_argument(
        "--check-layers",
        type=int,
        metavar="K",
        default=None,
        help="stream the weights and check the export on a copy of the model cut to its first K layers "
        "and its head (same code, those weights only loaded); the whole archive is then loaded and run "
        "in tract where it fits in memory. Default when a checked model does not fit in memory: 2",
    )
    parser.add_argument(
        "--trace-all-layers",
        action="store_true",
        help="trace every decoder layer (by default, two alike layers are traced and the second repeated)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks on errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    PACKAGE_LOGGER.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    prog = "export_llm_to_tract"
    if (args.model_slug is None) == (args.local_dir is None):
        which = "both" if args.model_slug is not None else "neither"
        print(f"{prog}: error: pass one of -s/--model-slug or -d/--local-dir ({which} given)", file=sys.stderr)
        return 2
    dtype: DType = "f16" if args.as_float16 else (args.dtype or "f32")
    try:
        result = export_llm_to_tract(
            args.export_dirpath,
            model_slug=args.model_slug,
            local_dir=args.local_dir,
            dtype=dtype,
            inputs_dtype=args.inputs_dtype,
            compression_method=args.compression_method,
            compression_registry=args.compression_registry,
            tract_version=args.tract_specific_version,
            tolerance=args.tract_check_io_tolerance,
            naming_scheme=args.naming_scheme,
            force_f32_attention=args.force_f32_attention,
            force_f32_linear_accumulator=args.force_f32_linear_accumulator,
            force_f32_normalization=args.force_f32_normalization,
            reify_sdpa_operator=args.reify_sdpa_operator,
            attn_implementation=args.attn_implementation,
            num_logits_to_keep=args.num_logits_to_keep,
            trust_remote_code=args.trust_remote_code,
            ignore_already_exist_dir=args.ignore_already_exist_dir,
            dump_with_tokenizer_and_conf=args.dump_with_tokenizer_and_conf,
            export_dir_struct=args.export_dir_struct,
            merge_peft=args.merge_peft,
            verify=not args.no_verify,
            trace_all_layers=args.trace_all_layers,
            stream=args.stream,
            check_layers=args.check_layers,
        )
    except Exception as exc:
        if args.verbose:
            raise
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    checked = f"checked in tract at tolerance {result.tolerance!r}" if result.tolerance else "not checked"
    if result.checked_layers is not None and result.tolerance:
        checked += f" on its first {result.checked_layers} layers and the head"
    if result.streamed:
        checked += ", weights streamed from the checkpoint"
    print(f"exported {result.num_layers} layers ({result.dtype}) to {result.archive}, {checked}")
    return 0
