"""The text encoder: pooling, batching, save/load, offline checkpoints, the MiniLM default."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from fusion.text.encoder import (SETTINGS_FILE, CheckpointError, EncoderSettings, TextEncoder,
                                 default_checkpoint, random_checkpoint, resolve_checkpoint)

TEXTS = [
    "Larkspur wireless headphones with deep bass.",
    "A nonstick frying pan &amp; lid, induction ready.",
    "Great value, exactly my style!",
    "gift card",
    "The Everly smartwatch has superb build quality. Very expensive. " * 6,
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random BERT (hidden 32, 2 layers) whose vocabulary covers TEXTS."""
    return random_checkpoint(tmp_path_factory.mktemp("tiny"), TEXTS, max_length=64)


@pytest.fixture
def encoder(tiny_dir):
    return TextEncoder.from_pretrained(tiny_dir)


def test_encode_gives_unit_vectors_in_input_order(encoder):
    out = encoder.encode(TEXTS, batch_size=2)
    assert out.shape == (len(TEXTS), 32) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    one_by_one = torch.cat([encoder.encode([t]) for t in TEXTS])
    assert torch.allclose(out, one_by_one, atol=1e-5)  # padding and length-sorting change nothing
    assert encoder.encode([]).shape == (0, 32)


def test_forward_is_masked_mean_of_the_last_hidden_states(encoder):
    batch = encoder.tokenize(TEXTS[:3])
    with torch.no_grad():
        hidden = encoder.model(**batch).last_hidden_state                # [B, T, d]
        got = encoder(**batch)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert torch.allclose(got, want, atol=1e-6)


def test_tokens_come_from_the_written_vocabulary(encoder):
    ids = encoder.tokenize(["larkspur headphones"])["input_ids"][0].tolist()
    assert encoder.tokenizer.unk_token_id not in ids
    assert encoder.tokenize(["x " * 500])["input_ids"].shape[1] == 64  # truncated to max_length


def test_save_and_load_round_trip_atomically(encoder, tmp_path):
    target = tmp_path / "enc"
    (target / "stale").mkdir(parents=True)             # an older checkpoint is replaced
    encoder.save(target, extra_files={"note.json": "{}"})
    assert (target / "config.json").is_file() and (target / SETTINGS_FILE).is_file()
    assert (target / "note.json").is_file() and not (target / "stale").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["enc"]      # no temporary leftovers
    assert json.loads((target / SETTINGS_FILE).read_text())["max_length"] == 64
    again = TextEncoder.from_pretrained(target)
    assert again.fingerprint() == encoder.fingerprint()
    assert torch.allclose(again.encode(TEXTS), encoder.encode(TEXTS), atol=1e-6)
    from transformers import AutoModel
    assert AutoModel.from_pretrained(str(target), local_files_only=True).config.hidden_size == 32


def test_fingerprint_follows_weights_and_settings(encoder, tiny_dir, tmp_path):
    fp = encoder.fingerprint()
    assert len(fp) == 16 and fp == TextEncoder.from_pretrained(tiny_dir).fingerprint()
    assert TextEncoder.from_pretrained(tiny_dir, max_length=32).fingerprint() != fp
    other = random_checkpoint(tmp_path / "other", TEXTS, max_length=64, seed=1)
    assert TextEncoder.from_pretrained(other).fingerprint() != fp
    # the remembered hash is dropped as soon as an optimiser step changes a weight
    encoder.train()
    emb = encoder.embed(TEXTS[:2])
    (emb[0] @ emb[1]).backward()
    torch.optim.SGD(encoder.parameters(), lr=0.1).step()
    assert encoder.fingerprint() != fp


def test_missing_or_hub_checkpoints_are_refused_with_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="never downloads"):
        TextEncoder.from_pretrained("bert-base-uncased")
    with pytest.raises(CheckpointError, match=str(tmp_path / "nope")):
        TextEncoder.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        TextEncoder.from_pretrained(tmp_path / "empty")


def test_settings_validate_and_round_trip():
    s = EncoderSettings(max_length=32, pooling="cls", normalize=False)
    assert EncoderSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ValueError, match="pooling"):
        EncoderSettings(pooling="max")


def test_default_checkpoint_is_the_local_minilm_directory():
    path = resolve_checkpoint(None)
    assert path == default_checkpoint() and (path / "config.json").is_file()
    assert resolve_checkpoint("minilm") == path


def test_minilm_encodes_offline_and_ranks_related_texts_closer():
    encoder = TextEncoder.from_pretrained(max_length=32)
    e = encoder.encode(["wireless headphones", "bluetooth earphones", "nonstick frying pan"])
    assert e.shape == (3, 384) and encoder.settings.max_length == 32
    assert e[0] @ e[1] > e[0] @ e[2] + 0.1
    assert "layers=6" in repr(encoder)


# ---------------------------------------------------------------------------- batching and precision

MIXED = TEXTS + ["gift", TEXTS[4][:90], "", TEXTS[0], "deep bass " * 20, None, "a lid"]


def test_length_sorted_encoding_equals_one_by_one(encoder):
    one_by_one = torch.cat([encoder.encode([t]) for t in MIXED])
    for batch_size in (1, 2, 3, 7, 64):
        sorted_ = encoder.encode(MIXED, batch_size=batch_size)
        unsorted = encoder.encode(MIXED, batch_size=batch_size, sort_by_length=False)
        assert torch.allclose(sorted_, one_by_one, atol=1e-5, rtol=0)    # same vectors, same order
        assert torch.allclose(unsorted, one_by_one, atol=1e-5, rtol=0)
    assert torch.equal(one_by_one[8], one_by_one[0])                      # a repeated text: the same row
    assert torch.equal(one_by_one[10], one_by_one[7])                     # None is encoded as ""


def test_sorted_batches_pad_less(encoder, monkeypatch):
    shapes = []
    tokenize = encoder.tokenize

    def spy(texts, max_length=None):
        batch = tokenize(texts, max_length)
        shapes.append(tuple(batch["input_ids"].shape))
        return batch

    monkeypatch.setattr(encoder, "tokenize", spy)
    encoder.encode(MIXED, batch_size=3)
    sorted_cells, sorted_shapes = sum(b * t for b, t in shapes), list(shapes)
    shapes.clear()
    encoder.encode(MIXED, batch_size=3, sort_by_length=False)
    assert sorted_cells < sum(b * t for b, t in shapes)
    lengths = sorted(encoder.token_lengths([t if isinstance(t, str) else "" for t in MIXED]), reverse=True)
    assert [t for _, t in sorted_shapes] == [max(lengths[i: i + 3]) for i in range(0, len(lengths), 3)]


def _cosine(a, b):
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def test_int8_encoder_keeps_cosine_to_fp32_and_says_so(encoder, tiny_dir, tmp_path):
    fp32 = encoder.encode(MIXED)
    fp = encoder.fingerprint()
    q = encoder.quantize("int8")
    cos = _cosine(q.encode(MIXED), fp32)
    assert cos.min() >= 0.99, cos
    assert q.precision == "int8" and "precision=int8" in repr(q) and "precision" not in repr(encoder)
    assert not any(type(m) is torch.nn.Linear for m in q.model.modules())
    # the fp32 encoder is untouched: same Linear layers, same vectors, same fingerprint
    assert any(type(m) is torch.nn.Linear for m in encoder.model.modules())
    assert torch.equal(encoder.encode(MIXED), fp32) and encoder.fingerprint() == fp
    # its own fingerprint (an embedding cache never mixes int8 and fp32 vectors), the same on every load
    assert q.fingerprint() != fp and len(q.fingerprint()) == 16
    assert TextEncoder.from_pretrained(tiny_dir, precision="int8").fingerprint() == q.fingerprint()
    assert q.quantize("int8") is q
    with pytest.raises(ValueError, match="cannot be saved"):
        q.save(tmp_path / "q")
    with pytest.raises(ValueError, match="inference only"):
        q.embed(TEXTS[:2])


def test_int8_linear_is_the_quantized_product_exactly():
    from fusion.text.int8_linear import Int8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 10)
    x = torch.randn(3, 5, 24) * torch.tensor([0.01, 1.0, 30.0]).view(3, 1, 1)  # rows of very different scale
    layer = Int8Linear.from_linear(linear, bits=8)
    y = layer(x)
    assert y.shape == (3, 5, 10)
    # the formula by hand: round(x / s_x) . round(W / s_w) in integers, rescaled, plus the bias
    w = linear.weight.detach()
    s_w = w.abs().amax(1) / 127
    rows = x.reshape(-1, 24)
    s_x = rows.abs().amax(1, keepdim=True) / 127
    exact = (torch.round(rows / s_x).double() @ torch.round(w / s_w[:, None]).double().T) * s_x.double() \
        * s_w.double() + linear.bias.detach().double()
    assert torch.allclose(y.reshape(-1, 10).double(), exact, rtol=1e-5, atol=1e-6)
    # per token: each row's relative error is small whatever the other rows' scale
    ref = linear(x).detach()
    rel = (y - ref).norm(dim=-1) / ref.norm(dim=-1)
    assert rel.max() < 0.03, rel
    seven = Int8Linear.from_linear(linear, bits=7)     # the plain-AVX2 weight range
    assert seven.weight_q.abs().max() <= 63 and layer.weight_q.abs().max() == 127


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile needs a C compiler")
def test_int8_linear_compiles_to_the_same_numbers():
    from fusion.text.int8_linear import Int8Linear, w8a8_linear, weight_bits

    if weight_bits() != 8:
        pytest.skip("int8 is compiled only on CPUs with VNNI or AMX (see fusion.text.encoder)")

    torch.manual_seed(1)
    layer = Int8Linear.from_linear(torch.nn.Linear(48, 20), bits=8)
    compiled = torch.compile(w8a8_linear, dynamic=True)   # the int8 product stays an opaque operator
    for rows in (3, 17, 64):
        x = torch.randn(rows, 48)
        want = w8a8_linear(x, layer.weight_q, layer.weight_scale, layer.bias)
        assert torch.allclose(compiled(x, layer.weight_q, layer.weight_scale, layer.bias), want, atol=1e-4)


def test_int8_encoder_runs_uncompiled_with_a_warning_where_compiling_fails(encoder, monkeypatch):
    def broken(model, **kwargs):
        def run(**inputs):
            raise RuntimeError("no C compiler")
        return run

    from fusion.text import encoder as module

    monkeypatch.setattr(module, "weight_bits", lambda: 8)   # compiled on any CPU for this test
    want = encoder.quantize("int8").encode(MIXED)
    monkeypatch.setattr(torch, "compile", broken)
    q = encoder.quantize("int8")
    with pytest.warns(RuntimeWarning, match="uncompiled.*could not be compiled.*no C compiler"):
        got = q.encode(MIXED)
    assert _cosine(got, want).min() > 0.999     # the same math, uncompiled
    assert torch.allclose(q.encode(MIXED), got)  # and it stays uncompiled (no second warning needed)


@pytest.mark.parametrize("wrong", ["nan", "different"])
def test_int8_encoder_checks_its_compiled_model_and_falls_back(encoder, monkeypatch, wrong):
    from fusion.text import encoder as module

    class Wrong(torch.nn.Module):  # a compiled model gone wrong: NaN, or other numbers
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, **inputs):
            out = self.model(**inputs)
            h = out.last_hidden_state
            out.last_hidden_state = torch.full_like(h, float("nan")) if wrong == "nan" else h.flip(-1)
            return out

    monkeypatch.setattr(module, "weight_bits", lambda: 8)   # compiled on any CPU for this test
    monkeypatch.setattr(torch, "compile", lambda model, **kw: Wrong(model))
    q = encoder.quantize("int8")
    with pytest.warns(RuntimeWarning, match="non-finite" if wrong == "nan" else "differs from the eager"):
        got = q.encode(MIXED)
    assert torch.isfinite(got).all() and _cosine(got, encoder.encode(MIXED)).min() >= 0.99


def test_bf16_encoder_keeps_cosine_to_fp32_and_says_so(encoder):
    b = encoder.quantize("bf16")
    assert _cosine(b.encode(MIXED), encoder.encode(MIXED)).min() >= 0.99
    assert b.encode(MIXED).dtype == torch.float32
    assert "precision=bf16" in repr(b)
    assert len({b.fingerprint(), encoder.fingerprint(), encoder.quantize("int8").fingerprint()}) == 3
    with pytest.raises(ValueError, match="already bf16"):
        b.quantize("int8")


def test_precision_is_checked(tiny_dir):
    with pytest.raises(ValueError, match="precision must be one of"):
        TextEncoder.from_pretrained(tiny_dir, precision="fp16")
    with pytest.raises(ValueError, match="CPU only"):
        TextEncoder.from_pretrained(tiny_dir, precision="int8", device="meta")
    enc = TextEncoder.from_pretrained(tiny_dir, precision="fp32")
    assert enc.precision == "fp32" and enc.quantize("fp32") is enc
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode(TEXTS, batch_size=0)


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(tiny_dir, monkeypatch):
    from fusion.text import encoder as module

    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(module, "native_bf16", lambda native=native: native)
        assert module.resolve_precision("auto") == want
        assert module.resolve_precision("auto", "cpu") == want
        assert module.resolve_precision("auto", "cuda") == "fp32"  # a GPU: never bf16 by "auto"
        assert module.resolve_precision("int8") == "int8"  # an explicit choice stays
        assert TextEncoder.from_pretrained(tiny_dir, precision="auto").precision == want


def test_embedding_cache_keeps_int8_and_fp32_vectors_apart(encoder, tmp_path):
    from fusion.text.index import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache")
    fp32 = cache.encode(encoder, TEXTS)
    q = encoder.quantize("int8")
    int8 = cache.encode(q, TEXTS)
    assert cache.last.misses == len(TEXTS) and cache.last.hits == 0       # nothing read from the fp32 shards
    assert torch.allclose(int8, q.encode(TEXTS), atol=1e-6)
    assert torch.allclose(cache.encode(encoder, TEXTS), fp32) and cache.last.hits == len(TEXTS)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([encoder.fingerprint(), q.fingerprint()])
