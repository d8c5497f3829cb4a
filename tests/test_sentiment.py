"""Sentiment-aware question choice: the VADER part changes the ranking of a fixed example."""
from convo import questions as qg
from convo import sentiment


def _cand(text, logprob, grounding=1.0):
    cand = qg._Candidate(text, qg.Chunk(0, 0, 100, ((0, 100),)), (0, 100))
    cand.lm_logprob, cand.grounding = logprob, grounding
    return cand


def test_strength_and_feeling_are_vader_compound_magnitudes():
    assert sentiment.strength("What is the capital of Norway?") == 0.0
    assert sentiment.strength("What do you love most about Norway?") > 0.5
    assert sentiment.strength("Why was the funeral so sad and awful?") > 0.5  # negative counts as strong too
    strong = "What do you love most about Norway?"
    flat = "The train leaves at noon."
    assert sentiment.strength(flat) == 0.0
    assert sentiment.feeling(strong, flat) == sentiment.strength(strong) / 2
    assert sentiment.feeling(strong, "I adore it, it is wonderful!") > sentiment.feeling(strong, flat)


def test_sentiment_part_changes_the_ranking():
    flat = _cand("What is the population of Norway?", -1.0)       # likelier
    warm = _cand("What do you love most about Norway?", -1.2)     # warmer
    off = qg.rank([flat, warm], 2, qg.QuestionSettings())
    assert [c.text for c, _ in off] == [flat.text, warm.text]
    assert "sentiment" not in off[0][1]                           # the option is off: no part shown
    on = qg.rank([flat, warm], 2, qg.QuestionSettings(sentiment_weight=sentiment.DEFAULT_WEIGHT))
    assert [c.text for c, _ in on] == [warm.text, flat.text]
    parts = dict((c.text, p) for c, p in on)
    assert parts[flat.text]["sentiment"] == 0.0
    assert parts[warm.text]["sentiment"] == sentiment.strength(warm.text) > 0.5
    # the score is the documented sum of its parts
    p = parts[warm.text]
    assert abs(p["score"] - (0.7 * p["relevance"] + 0.3 * p["diversity"] + 0.3 * p["sentiment"])) < 1e-9


def test_sentiment_weight_is_validated():
    import pytest

    with pytest.raises(ValueError, match="sentiment_weight must be in"):
        qg.QuestionSettings(sentiment_weight=2)


def test_follow_up_ranking_weighs_feeling(monkeypatch):
    """The chat's follow-up ranking: the likelier flat question wins without the option, the warmer
    one with it, and its parts show the sentiment."""
    from convo import chat

    flat, warm = "What time did your train leave?", "What did you love most about the trip?"
    monkeypatch.setattr(chat, "generate_batch", lambda lm, prompts, sampling, **kw: [f"{flat} {warm}"] * len(prompts))
    monkeypatch.setattr(chat, "render_prompt", lambda lm, messages: "prompt")
    monkeypatch.setattr(chat, "continuation_logprobs", lambda lm, prompt, texts: [-1.0 if t == flat else -1.1 for t in texts])
    history = [{"role": "user", "content": "I had a wonderful, amazing trip!"}, {"role": "assistant", "content": "Nice."}]
    off = chat.follow_up_questions(None, history, n=2)
    assert [f.text for f in off] == [flat, warm] and "sentiment" not in off[0].parts
    on = chat.follow_up_questions(None, history, n=2, sentiment_weight=sentiment.DEFAULT_WEIGHT)
    assert [f.text for f in on] == [warm, flat]
    assert on[0].parts["sentiment"] == round(sentiment.feeling(warm, history[0]["content"]), 3) > 0.5
    assert on[0].score == round(-1.1 + sentiment.DEFAULT_WEIGHT * sentiment.feeling(warm, history[0]["content"]), 3)
