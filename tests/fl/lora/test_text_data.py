"""Generated text: deterministic, balanced, and the label follows topic and (negated) sentiment."""

import numpy as np

from airfl.fl.lora.text_data import CLASS_NAMES, NEGATIONS, NEGATIVE, POSITIVE, TOPICS, generate_text, sentence


def test_same_seed_same_sentences_and_balanced_labels():
    a, b = generate_text(60, seed=5), generate_text(60, seed=5)
    assert a.texts == b.texts and np.array_equal(a.labels, b.labels)
    assert generate_text(60, seed=6).texts != a.texts
    assert np.bincount(a.labels, minlength=len(CLASS_NAMES)).tolist() == [10] * 6


def test_label_follows_topic_and_negated_sentiment():
    rng = np.random.default_rng(0)
    topics = list(TOPICS)
    for label in range(len(CLASS_NAMES)):
        for _ in range(40):
            text = sentence(label, rng)
            topic = topics[label // 2]
            assert any(s in text for s in TOPICS[topic]["subject"] + TOPICS[topic]["event"])
            words = text.split()
            polarity = "positive" if any(w in POSITIVE for w in words) else "negative"
            assert any(w in POSITIVE + NEGATIVE for w in words)
            negated = any(f" {n} " in f" {text} " for n in NEGATIONS)
            if negated:
                polarity = "negative" if polarity == "positive" else "positive"
            assert CLASS_NAMES[label].endswith(polarity), text
