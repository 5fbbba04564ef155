"""Generated, labelled English sentences: a text-classification task that needs no download.

Six classes = three topics (sport, finance, weather) x two sentiments (positive, negative). Each
topic has its own subjects and events; sentiment comes from an adjective that may be negated
("was not great" is negative, "was hardly terrible" is positive), so telling the sentiment apart
takes more than spotting words: exactly what fine-tuning a pre-trained encoder should add over its
frozen sentence embedding. Same seed, same sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOPICS: dict[str, dict[str, list[str]]] = {
    "sport": {
        "subject": ["the coach", "our striker", "the home side", "the goalkeeper", "the fans", "the captain",
                    "the runners", "the young winger"],
        "event": ["the match", "the final", "the season", "the race", "the derby", "the second half",
                  "the training camp", "the penalty shootout"],
    },
    "finance": {
        "subject": ["the bank", "investors", "the company", "the fund manager", "shareholders", "the analysts",
                    "the central bank", "the board"],
        "event": ["the quarter", "the earnings report", "the merger", "the bond sale", "the trading session",
                  "the forecast", "the stock market", "the annual results"],
    },
    "weather": {
        "subject": ["the forecaster", "the farmers", "the coast", "the valley", "the tourists", "the city",
                    "the hikers", "the villagers"],
        "event": ["the storm", "the sunshine", "the rain", "the breeze", "the heatwave", "the snowfall",
                  "the morning fog", "the long weekend"],
    },
}
POSITIVE = ["great", "excellent", "wonderful", "pleasant", "impressive", "superb", "encouraging", "lovely"]
NEGATIVE = ["terrible", "awful", "disappointing", "poor", "dreadful", "bad", "worrying", "miserable"]
NEGATIONS = ["not", "hardly", "far from", "never"]
TEMPLATES = [
    "{subject} said {event} was {adj}",
    "{event} was {adj} for {subject}",
    "everyone agreed that {event} was {adj}",
    "{subject} thought {event} had been {adj}",
    "according to {subject} {event} was {adj} {tail}",
    "{tail} {subject} called {event} {adj}",
]
TAILS = ["this week", "again", "honestly", "once more", "as expected", "today", "in the end", "overall"]
CLASS_NAMES = [f"{topic}/{mood}" for topic in TOPICS for mood in ("positive", "negative")]


@dataclass(frozen=True)
class TextDataset:
    """Sentences and their labels (0..5, see CLASS_NAMES)."""

    texts: list[str]
    labels: np.ndarray


def sentence(label: int, rng: np.random.Generator, negation_probability: float = 0.4) -> str:
    """One sentence of class `label` (topic = label // 2, negative sentiment = label % 2)."""
    topic = list(TOPICS)[label // 2]
    negative = label % 2 == 1
    negated = rng.random() < negation_probability
    # a negated adjective has the opposite polarity of the sentence
    pool = NEGATIVE if negative != negated else POSITIVE
    adj = str(rng.choice(pool))
    if negated:
        adj = f"{rng.choice(NEGATIONS)} {adj}"
    words = TOPICS[topic]
    text = str(rng.choice(TEMPLATES)).format(
        subject=rng.choice(words["subject"]), event=rng.choice(words["event"]), adj=adj, tail=rng.choice(TAILS)
    )
    return text.strip()


def generate_text(n: int, seed: int, negation_probability: float = 0.4) -> TextDataset:
    """`n` sentences with balanced labels (as balanced as n allows), shuffled, from `seed`."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    texts = [sentence(int(y), rng, negation_probability) for y in labels]
    return TextDataset(texts, labels)
