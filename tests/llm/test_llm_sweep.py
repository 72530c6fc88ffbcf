"""docs/supported_llms.md against the pinned transformers and against what the exporter does today.

The page and its record (docs/supported_llms.json) are written by ``make llm-sweep``
(tools/llm_sweep.py, with tests/llm/llm_sweep.py): a change in what the exporter supports, or a
transformers release with other causal LM types, fails here until they are regenerated.
"""

import transformers
from llm_sweep import (
    IN_SCOPE,
    MODES,
    PAGE,
    RECORD,
    RECORDED,
    causal_lm_types,
    dump_record,
    load_record,
    record_entry,
    render,
    sweep_types,
)

SLICE = {
    "llama": MODES,  # dense attention, in every mode
    "mistral": ("f32",),  # sliding-window attention
    "gpt2": ("f32", "f16"),  # learned positions, fused attention projection
    "bloom": ("f32",),  # ALiBi
    "mixtral": ("f32", "q4_0"),  # mixture of experts
    "deepseek_v3": ("f32",),  # multi-head latent attention
    "mamba": ("f32",),  # recurrent states only, no positions
    "qwen3_next": ("f32",),  # Gated DeltaNet beside attention layers, experts
}
"""One type per family, and the modes it is exported in (f16 and Q4_0 for a few: each export takes seconds)."""


def test_page_lists_every_causal_lm_type_and_is_rendered_from_the_record() -> None:
    record = load_record()
    assert record["transformers"] == transformers.__version__, "run `make llm-sweep` with the pinned transformers"
    types = causal_lm_types()
    assert sorted(record["types"]) == sorted(types), "run `make llm-sweep`: transformers has other causal LM types"
    for model_type, entry in record["types"].items():
        assert tuple(entry) == RECORDED, model_type
        assert entry["model_class"] == types[model_type], model_type
        assert bool(entry["reason"]) == (entry["scope"] != IN_SCOPE), model_type
    assert RECORD.read_text() == dump_record(record)  # sorted, one type a line: as the sweep writes it
    assert PAGE.read_text() == render(record), "docs/supported_llms.md is stale: tools/llm_sweep.py --render-only"


def test_slice_of_families_exports_as_the_page_says() -> None:
    """Each family's export, run as the sweep runs it (in one subprocess for them all), has the status the record
    gives: a change in what the exporter supports fails here until the page is regenerated."""
    record = load_record()["types"]
    entries = sweep_types(SLICE, timeout=600)
    for model_type, modes in SLICE.items():
        got = record_entry(entries[model_type])
        want = record[model_type]
        compared = ("model_class", "scope", "reason", *modes)
        assert {k: got[k] for k in compared} == {k: want[k] for k in compared}, (
            f"{model_type} exports otherwise than docs/supported_llms.md says: "
            f"run `python tools/llm_sweep.py --types {model_type}`; {entries[model_type]['traces']}"
        )
