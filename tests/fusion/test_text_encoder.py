"""The text encoder: pooling, batching, save/load, offline checkpoints, the MiniLM default."""

from __future__ import annotations

import json

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
