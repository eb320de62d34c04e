from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aidg.errors import ConfigError, DataError
from aidg.inference.encoding import encode_texts, predict_sentiment
from aidg.models.sentiment_extractor import (
    LABELS,
    MODEL_SHA256,
    SentimentConfig,
    SentimentExtractor,
    default_model_path,
)
from aidg.sim import World
from aidg.training.sentiment import evaluate_sentiment, train_sentiment

HEAD_ONLY = SentimentConfig(trainable_layers=0)  # fastest setting, for tests that do not check accuracy


@pytest.fixture(scope="module")
def model() -> SentimentExtractor:
    return SentimentExtractor()


@pytest.fixture(scope="module")
def split(tiny_world: World) -> tuple[set[str], set[str]]:
    ids = np.sort(tiny_world.tables["merchants"]["merchant_id"].unique())
    perm = np.random.default_rng(0).permutation(len(ids))
    held = set(ids[perm[: len(ids) // 5]].tolist())
    return set(ids.tolist()) - held, held


def test_outputs_have_the_documented_shapes(model: SentimentExtractor) -> None:
    batch = model.tokenize(["Merchant is thrilled with the deal.", "ok", "Owner is furious, the campaign lost money."])
    assert batch["input_ids"].shape[1] <= model.config.max_length
    with torch.inference_mode():
        out = model(**batch)
    assert out["vector"].shape == (3, 32) and out["logits"].shape == (3, 3) and out["intensity"].shape == (3,)
    assert out["vector"].abs().max() <= 1 and ((out["intensity"] >= 0) & (out["intensity"] <= 1)).all()
    assert model.LABELS == LABELS == ("positive", "negative", "neutral")
    assert "vector=32" in repr(model) and "top 4 layers trainable" in repr(model)


def test_only_the_top_layers_and_heads_are_trainable(model: SentimentExtractor) -> None:
    trainable = {
        name.split(".")[0] if not name.startswith("encoder.") else ".".join(name.split(".")[:4])
        for name, p in model.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"proj", "label_head", "intensity_head", *(f"encoder.encoder.layer.{i}" for i in range(2, 6))}
    model.train()
    assert not model.encoder.encoder.layer[1].training and model.encoder.encoder.layer[5].training
    model.eval()
    with pytest.raises(ConfigError, match="only 6 layers"):
        SentimentExtractor(SentimentConfig(trainable_layers=7))


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "minilm"
    shutil.copytree(default_model_path(), copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"model\.safetensors has sha256") as err:
        SentimentExtractor(model_path=copy)
    assert MODEL_SHA256 in str(err.value) and str(weights) in str(err.value)
    weights.unlink()
    with pytest.raises(DataError, match="does not exist"):
        SentimentExtractor(model_path=copy)


def test_encode_texts_keeps_the_input_order(model: SentimentExtractor) -> None:
    texts = ["Owner thanked us, the campaign was fantastic.", "ok", "Merchant declined the 30-day deal, timing is bad."]
    vectors = encode_texts(model, texts, batch_size=2)
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(encode_texts(model, texts[::-1])[::-1], vectors, atol=1e-5)
    assert encode_texts(model, []).shape == (0, 32)
    assert not model.training


def test_training_beats_the_majority_guess_on_unseen_phrasings(
    tiny_world: World, split: tuple[set[str], set[str]]
) -> None:
    notes = tiny_world.tables["feedback_notes"]
    train, held = split
    trained, info = train_sentiment(notes, train, max_examples=400, epochs=1, seed=0)
    assert info["examples_used"] == 400 and info["skipped_unreadable"] == 0
    # every held-out phrasing is unseen text, whoever the merchant; the held-out merchants alone are too few here
    result = evaluate_sentiment(trained, notes, train | held)
    assert result["n"] > 100
    assert result["sentiment_accuracy"] >= 0.6
    assert result["sentiment_accuracy"] > result["majority_accuracy"]
    predicted = predict_sentiment(trained, ["Owner is furious, the deal lost them money."])
    assert predicted["label"].tolist() == ["negative"]


def test_training_is_deterministic_and_leaves_the_global_rng_alone(
    tiny_world: World, split: tuple[set[str], set[str]]
) -> None:
    notes = tiny_world.tables["feedback_notes"]
    state = torch.get_rng_state()
    a, _ = train_sentiment(notes, split[0], max_examples=64, epochs=1, seed=3, config=HEAD_ONLY)
    b, _ = train_sentiment(notes, split[0], max_examples=64, epochs=1, seed=3, config=HEAD_ONLY)
    assert torch.equal(torch.get_rng_state(), state)
    texts = notes["text"].head(8).tolist()
    np.testing.assert_array_equal(encode_texts(a, texts), encode_texts(b, texts))


def test_a_cyrillic_note_is_skipped_and_training_still_runs(
    tiny_world: World, split: tuple[set[str], set[str]]
) -> None:
    notes = tiny_world.tables["feedback_notes"]
    train = split[0]
    extra = notes[notes["merchant_id"].isin(train) & notes["sentiment"].notna()].head(1).copy()
    extra["note_id"] = "n-cyrillic"
    extra["text"] = "Продавец очень недоволен последней акцией."
    extra["template_heldout"] = False
    messages: list[str] = []
    _, info = train_sentiment(
        pd.concat([notes, extra], ignore_index=True),
        train,
        max_examples=32,
        epochs=1,
        seed=0,
        config=HEAD_ONLY,
        mask_prob=0.15,
        progress=lambda message, fraction: messages.append(message),
    )
    assert info["skipped_unreadable"] == 1 and "CYRILLIC 1" in info["skipped_message"]
    assert any("cannot read" in m for m in messages)
    assert info["examples_used"] == 32


def test_user_data_without_simulator_columns_uses_all_labelled_notes(
    tiny_world: World, split: tuple[set[str], set[str]]
) -> None:
    notes = tiny_world.tables["feedback_notes"].drop(columns=["template_id", "template_heldout", "intensity"])
    model, _ = train_sentiment(notes, split[0], max_examples=32, epochs=1, seed=0, config=HEAD_ONLY)
    labelled_held = notes[notes["merchant_id"].isin(split[1]) & notes["sentiment"].notna()]
    result = evaluate_sentiment(model, notes, split[1])
    assert result["n"] == len(labelled_held) and np.isnan(result["intensity_mae"])
    assert 0 <= result["sentiment_accuracy"] <= 1


def test_no_usable_notes_is_a_clear_error(tiny_world: World) -> None:
    notes = tiny_world.tables["feedback_notes"]
    with pytest.raises(DataError, match="no usable labelled notes"):
        train_sentiment(notes, {"m-nobody"}, max_examples=10, epochs=1, seed=0, config=HEAD_ONLY)
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        train_sentiment(notes, {"m-nobody"}, max_examples=10, epochs=0, seed=0)
    bad = notes.assign(sentiment=notes["sentiment"].where(notes["sentiment"].isna(), "great"))
    with pytest.raises(DataError, match="unknown sentiment label"):
        train_sentiment(bad, set(notes["merchant_id"]), max_examples=10, epochs=1, seed=0, config=HEAD_ONLY)
