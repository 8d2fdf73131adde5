"""Packed documents through the model: ``model(x, seq_idx=...)`` and ``cu_seqlens``.

A hybrid of every builtin that packs runs packed rows exactly as it runs each document alone
(outputs and gradients, float64 tight and float32 within 1e-5 relative), for every chunk size;
a NaN planted anywhere changes no earlier output; the boundaries are validated, and a layer that
does not declare packing is refused by name.
"""

from __future__ import annotations

import pytest
import torch
from test_all_builtins import SMALL
from toy_layers import conv_spec, mlp_spec

import hybridzoo
from hybridzoo.packing import (
    IGNORE_INDEX,
    as_seq_idx,
    document_positions,
    next_token_targets,
    pack_sequences,
)

#: every builtin that declares packing today, each once
PATTERN = "M A G R E F K S D"
EMBED = SMALL["hidden_size"] + 3
#: the documents of the two rows (lengths), documents of length 1 among them
LAYOUT = [[5, 1, 9, 1, 4], [1, 12, 7]]
LENGTH = 20
#: chunk sizes of the chunked kernels, small ones included
CHUNKS = (2, 8, 64)


def test_the_pattern_has_every_builtin_that_packs() -> None:
    registry = hybridzoo.get_registry()
    packing = {
        spec.symbol
        for spec in map(registry.get, registry.names())
        if registry.source(spec.name)[0] == "hybridzoo"
        and (spec.capabilities.packing or spec.capabilities.positionwise)
    }
    assert sorted(PATTERN.split()) == sorted(packing)


def seq_idx_of(layout: list[list[int]]) -> torch.Tensor:
    return torch.stack(
        [torch.repeat_interleave(torch.arange(len(r)), torch.tensor(r)) for r in layout]
    )


def build(chunk: int = 64, dtype: torch.dtype = torch.float64, **options) -> hybridzoo.HybridModel:
    torch.manual_seed(0)
    settings = {
        **SMALL,
        "output": "sequence",
        "positional_encoding": "sinusoidal",
        "gla_chunk_size": chunk,
        "rwkv_chunk_size": chunk,
        "mamba2_chunk_size": chunk,
        "gated_deltanet_chunk_size": chunk,
        **options,
    }
    model = hybridzoo.build(PATTERN, embed_dim=EMBED, **settings)
    return model.to(dtype).eval()


def outputs_and_gradients(model, x, w, **packing):
    x = x.detach().clone().requires_grad_(True)
    y = model(x, **packing)
    params = list(model.parameters())
    grads = torch.autograd.grad((y * w).sum(), [x, *params], allow_unused=True)
    return y.detach(), [
        torch.zeros_like(p) if g is None else g for g, p in zip(grads, [x, *params], strict=True)
    ]


def separate(model, x, w):
    """Outputs and gradients of each document of :data:`LAYOUT` run alone."""
    y = torch.zeros(x.shape[0], x.shape[1], model.config.hidden_size, dtype=x.dtype)
    grads = None
    for row, lengths in enumerate(LAYOUT):
        start = 0
        for n in lengths:
            part = slice(start, start + n)
            y_doc, g_doc = outputs_and_gradients(
                model, x[row : row + 1, part], w[row : row + 1, part]
            )
            y[row, part] = y_doc[0]
            if grads is None:
                grads = [torch.zeros_like(x)] + [torch.zeros_like(g) for g in g_doc[1:]]
            grads[0][row, part] = g_doc[0][0]
            for total, g in zip(grads[1:], g_doc[1:], strict=True):
                total += g
            start += n
    return y, grads


def inputs(dtype: torch.dtype, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, LENGTH, EMBED, generator=gen, dtype=torch.float64).to(dtype)
    w = torch.randn(2, LENGTH, SMALL["hidden_size"], generator=gen, dtype=torch.float64)
    return x, w.to(dtype)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_a_hybrid_packs_exactly_as_separate_documents_float64(chunk: int) -> None:
    model = build(chunk)
    x, w = inputs(torch.float64)
    y, grads = outputs_and_gradients(model, x, w, seq_idx=seq_idx_of(LAYOUT))
    y_sep, grads_sep = separate(model, x, w)
    torch.testing.assert_close(y, y_sep, atol=1e-11, rtol=1e-9)
    names = ["<input>", *(n for n, _ in model.named_parameters())]
    for name, g, g_sep in zip(names, grads, grads_sep, strict=True):
        torch.testing.assert_close(g, g_sep, atol=1e-11, rtol=1e-9, msg=name)


def test_a_hybrid_packs_within_1e_5_relative_in_float32() -> None:
    model = build(8, torch.float32)
    x, w = inputs(torch.float32)
    y, grads = outputs_and_gradients(model, x, w, seq_idx=seq_idx_of(LAYOUT))
    y_sep, grads_sep = separate(model, x, w)
    for got, want in zip([y, *grads], [y_sep, *grads_sep], strict=True):
        scale = float(want.abs().max())
        assert float((got - want).abs().max()) <= 1e-5 * max(scale, 1e-30)


def test_packed_results_are_the_same_for_every_chunk_size() -> None:
    x, _ = inputs(torch.float64)
    seq_idx = seq_idx_of(LAYOUT)
    with torch.no_grad():
        results = [build(chunk)(x, seq_idx=seq_idx) for chunk in CHUNKS]
    for y in results[1:]:
        torch.testing.assert_close(y, results[0], atol=1e-11, rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_input_never_changes_an_earlier_packed_output(dtype, value) -> None:
    model = build(4, dtype)
    x, _ = inputs(dtype)
    seq_idx = seq_idx_of(LAYOUT)
    with torch.no_grad():
        y = model(x, seq_idx=seq_idx)
        for s in (1, 5, 6, 7, LENGTH - 1):  # starts of documents and positions inside them
            x2 = x.clone()
            x2[:, s] = value
            assert torch.equal(model(x2, seq_idx=seq_idx)[:, :s], y[:, :s]), s


def test_the_sinusoidal_encoding_restarts_at_each_document() -> None:
    model = build()
    x, _ = inputs(torch.float64)
    y = model(x[:1], seq_idx=torch.zeros(1, LENGTH, dtype=torch.long))
    torch.testing.assert_close(y, model(x[:1]))  # one document: the plain forward
    h = model._embed(x, 0, seq_idx_of(LAYOUT))
    second = model._embed(x[:1, 5:6], 0)  # the second document of row 0 is at position 0
    torch.testing.assert_close(h[:1, 5:6], second)


def test_cu_seqlens_is_the_batch_one_form_of_seq_idx() -> None:
    model = build()
    x, _ = inputs(torch.float64)
    with torch.no_grad():
        expected = model(x[:1], seq_idx=seq_idx_of(LAYOUT[:1]))
        torch.testing.assert_close(
            model(x[:1], cu_seqlens=torch.tensor([0, 5, 6, 15, 16, 20])), expected
        )
        torch.testing.assert_close(model(x[:1], cu_seqlens=[0, 5, 6, 15, 16, 20]), expected)


@pytest.mark.parametrize(
    ("packing", "match"),
    [
        (
            {"seq_idx": torch.tensor([[0, 0, 1, 0, 1]] * 2)},
            "non-decreasing.*row 0 goes from 1 to 0",
        ),
        ({"seq_idx": torch.zeros(2, 4, dtype=torch.long)}, r"shape \[B, T\] = \(2, 5\)"),
        ({"seq_idx": torch.zeros(2, 5)}, "integer tensor.*float32"),
        ({"seq_idx": torch.zeros(2, 5, dtype=torch.bool)}, "integer tensor.*bool"),
        ({"seq_idx": [[0] * 5] * 2}, "must be a torch.Tensor"),
        ({"cu_seqlens": torch.tensor([0, 5])}, "batch 1.*has batch 2"),
    ],
)
def test_malformed_boundaries_are_refused(packing, match) -> None:
    model = build()
    with pytest.raises(hybridzoo.PackingError, match=match):
        model(torch.zeros(2, 5, EMBED, dtype=torch.float64), **packing)


@pytest.mark.parametrize(
    ("cu_seqlens", "match"),
    [
        (torch.tensor([0, 2, 2, 5]), "strictly increasing.*2 then 2"),
        (torch.tensor([1, 5]), "start at 0 and end at the sequence length 5, got 1 .. 5"),
        (torch.tensor([0, 4]), "end at the sequence length 5"),
        (torch.tensor([0.0, 5.0]), "integer tensor"),
        (torch.tensor([[0, 5]]), "1-d"),
        ("0,5", "1-d integer tensor"),
    ],
)
def test_malformed_cu_seqlens_are_refused(cu_seqlens, match) -> None:
    with pytest.raises(hybridzoo.PackingError, match=match):
        as_seq_idx(1, 5, cu_seqlens=cu_seqlens)


def test_both_forms_at_once_are_refused() -> None:
    with pytest.raises(hybridzoo.PackingError, match="not both"):
        as_seq_idx(1, 2, seq_idx=torch.zeros(1, 2, dtype=torch.long), cu_seqlens=[0, 2])


def test_a_layer_without_the_capability_is_refused_by_name() -> None:
    # a third-party conv (no packing) and a positionwise MLP (packs without declaring it)
    with hybridzoo.temporary_layers(conv_spec("myconv", "Q"), mlp_spec("mymlp", "P")):
        model = hybridzoo.build("Q P Q M", embed_dim=8, hidden_size=8, output="sequence")
        with pytest.raises(hybridzoo.PackingError, match="'myconv' declares neither"):
            model(torch.zeros(1, 4, 8), seq_idx=torch.zeros(1, 4, dtype=torch.long))
        ok = hybridzoo.build("P M P", embed_dim=8, hidden_size=8, output="sequence").eval()
        x = torch.randn(1, 4, 8)
        packed = ok(x, seq_idx=torch.tensor([[0, 0, 1, 1]]))
        torch.testing.assert_close(packed, torch.cat([ok(x[:, :2]), ok(x[:, 2:])], 1))


def test_output_last_is_refused_under_packing() -> None:
    model = hybridzoo.build("M", embed_dim=8, hidden_size=8)
    with pytest.raises(hybridzoo.PackingError, match="output='sequence'"):
        model(torch.zeros(1, 4, 8), seq_idx=torch.zeros(1, 4, dtype=torch.long))


def test_document_positions_restart_at_each_boundary() -> None:
    seq_idx = torch.tensor([[3, 3, 3, 4, 7, 7], [0, 0, 0, 0, 0, 0]])
    assert document_positions(seq_idx).tolist() == [[0, 1, 2, 0, 0, 1], [0, 1, 2, 3, 4, 5]]


def test_next_token_targets_never_cross_a_document() -> None:
    ids = torch.tensor([[10, 11, 12, 20, 21, 30]])
    seq_idx = torch.tensor([[0, 0, 0, 1, 1, 2]])
    x = IGNORE_INDEX
    assert next_token_targets(ids).tolist() == [[11, 12, 20, 21, 30, x]]
    assert next_token_targets(ids, seq_idx).tolist() == [[11, 12, x, 21, x, x]]


def test_pack_sequences_fills_rows_in_order_and_splits_what_does_not_fit() -> None:
    packed = pack_sequences([[1, 2, 3], [4, 5], [6, 7, 8, 9, 10], [11]], 4, pad_id=0)
    assert packed.input_ids.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 0]]
    assert packed.seq_idx.tolist() == [[0, 0, 0, 1], [0, 1, 1, 1], [0, 0, 1, 2]]
    x = IGNORE_INDEX
    assert packed.targets.tolist() == [[2, 3, x, x], [x, 7, 8, x], [10, x, x, x]]
    assert packed.documents == ((0, 0, 3), (0, 3, 1), (1, 0, 1), (1, 1, 3), (2, 0, 2), (2, 2, 1))
    with pytest.raises(hybridzoo.PackingError, match="sequence 1 is empty"):
        pack_sequences([[1], []], 4)


def test_the_listings_say_which_layers_pack() -> None:
    from hybridzoo.cli.layers import rows
    from hybridzoo.plugins_report import collect

    listed = {row["name"]: row["packing"] for row in rows()}
    assert listed["mamba"] and listed["ffn"] and not listed["retention"]
    layers = [layer for plugin in collect()["plugins"] for layer in plugin["layers"]]
    assert {layer["name"]: layer["packing"] for layer in layers}["attention"] is True
