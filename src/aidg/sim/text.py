"""MM feedback and merchant notes: varied free text whose sentiment follows outcomes.

Each note comes from a theme (what happened) rendered through one of many
phrasings, an intensity-graded word, optional filler and typos. Phrasings
marked held out (about a fifth of each theme) are never used by the
``train`` split of the sentiment model, so it is tested on text it has not seen.
"""

from __future__ import annotations

import numpy as np

# theme -> (sentiment, phrasings). Slots: {adj} intensity word, {disc}, {cat}, {dur}.
THEMES: dict[str, tuple[str, list[str]]] = {
    "good_outcome": (
        "positive",
        [
            "Merchant is {adj} with the {disc} deal, sales beat what they expected.",
            "{adj} result on the {cat} promo, owner wants to run it again.",
            "Owner called to say the {dur}-day deal was {adj}, lots of new regulars.",
            "Deal at {disc} off did well, merchant is {adj} and asked for a repeat next month.",
            "Strong numbers, merchant {adj} about the traffic from the last deal.",
            "They loved it. {adj} response to the {cat} offer.",
            "Merchant says the voucher crowd was {adj}, would do the same terms again.",
            "Happy merchant: {adj} uptake on the {disc} discount.",
            "great week for them, {adj} feedback from the owner on the deal",
            "Owner thanked us, the campaign was {adj}.",
        ],
    ),
    "bad_outcome": (
        "negative",
        [
            "Merchant is {adj} about the {disc} deal, barely covered costs.",
            "{adj} result on the {cat} promo, owner doubts it was worth it.",
            "Owner complained the {dur}-day deal brought {adj} traffic and no repeat customers.",
            "Deal at {disc} off went {adj}, merchant unhappy with the payout.",
            "Weak numbers; the merchant is {adj} and questioning the partnership.",
            "They were {adj}. The {cat} offer did not sell.",
            "Merchant says the voucher buyers were {adj} bargain hunters who never came back.",
            "Unhappy merchant: {adj} uptake on the {disc} discount.",
            "rough month, owner {adj} about how the deal performed",
            "Owner is {adj}, says the campaign lost them money.",
        ],
    ),
    "neutral_outcome": (
        "neutral",
        [
            "Deal at {disc} off performed about as expected.",
            "The {cat} promo did okay, nothing special either way.",
            "Owner says the {dur}-day deal was fine, will think about the next one.",
            "Average results, merchant neutral on running it again.",
            "Numbers in line with last time for the {disc} discount.",
            "No strong feelings from the merchant about the last campaign.",
            "Merchant reviewed the report, results were middling.",
            "ok results. merchant will decide next quarter",
        ],
    ),
    "capacity_strain": (
        "negative",
        [
            "We were swamped, too many vouchers for our staff to handle.",
            "Way more customers than we can serve, please cap the {disc} deal.",
            "Our {cat} staff is overwhelmed by voucher bookings, we had to turn people away.",
            "Too much demand from the {dur}-day deal, we cannot keep up.",
            "Booked solid for weeks because of the deal, regulars are {adj}.",
            "Please limit the number of vouchers, the rush is {adj} for us.",
            "We sold out our capacity and the reviews are suffering.",
        ],
    ),
    "too_deep": (
        "negative",
        [
            "Merchant refused, {disc} off is far too steep for them.",
            "Owner said no, the discount is too deep to make money.",
            "Turned down: they will not go as low as {disc}.",
            "Merchant {adj} at the {disc} discount, wants something smaller.",
            "Declined, the margin at {disc} off does not work for a {cat} business.",
            "They pushed back hard, giving away {disc} is not an option.",
            "No deal, owner thinks the discount cheapens the brand.",
        ],
    ),
    "too_shallow": (
        "negative",
        [
            "Merchant declined, {disc} off is not enough to bring anyone in.",
            "Owner wants a bigger discount than {disc}, said no to this one.",
            "Turned down: they think customers will ignore such a small discount.",
            "Merchant {adj} that the {disc} deal is too timid.",
            "Declined, they want to go deeper than {disc} to stand out.",
            "They said the offer is too weak against the other {cat} deals nearby.",
        ],
    ),
    "reject_other": (
        "negative",
        [
            "Merchant declined the {dur}-day deal, timing is bad.",
            "Owner said no to the proposal, not convinced by the terms.",
            "Turned down the {cat} offer, wants to revisit later.",
            "Merchant {adj} with the proposal and declined.",
            "They passed on this one, the package does not fit their customers.",
        ],
    ),
    "merchant_happy": (
        "positive",
        [
            "Thanks, the last deal brought in a lot of new faces!",
            "Loved working with you, the {disc} promo was {adj}.",
            "Great campaign, we are {adj} and want to do it again.",
            "Our new customers from the deal keep coming back, {adj}!",
            "The {dur}-day deal was {adj} for us.",
            "Very pleased with the results, thank you.",
        ],
    ),
}

# Intensity-graded words: tier 0 (mild) .. 2 (strong), per sentiment.
ADJECTIVES: dict[str, list[list[str]]] = {
    "positive": [
        ["pleased", "satisfied", "decent"],
        ["happy", "glad", "good"],
        ["thrilled", "fantastic", "delighted", "amazing"],
    ],
    "negative": [
        ["a bit disappointed", "unsure", "lukewarm"],
        ["disappointed", "unhappy", "poor"],
        ["furious", "terrible", "awful", "livid"],
    ],
    "neutral": [["fine"], ["okay"], ["alright"]],
}
FILLERS = ["", "", "", "FYI: ", "Note: ", "Update - ", "call recap: ", "spoke w/ owner. ", "per phone call, "]
THEME_NAMES = list(THEMES)
HELDOUT_FRACTION = 0.2


def template_table() -> list[tuple[int, str, int, str, bool]]:
    """Every phrasing: (template_id, theme, index in theme, sentiment, held_out)."""
    out = []
    tid = 0
    for theme, (sentiment, phrasings) in THEMES.items():
        n_held = max(1, round(len(phrasings) * HELDOUT_FRACTION))
        for i, _ in enumerate(phrasings):
            out.append((tid, theme, i, sentiment, i >= len(phrasings) - n_held))
            tid += 1
    return out


def _typo(rng: np.random.Generator, text: str) -> str:
    if len(text) < 8:
        return text
    i = int(rng.integers(1, len(text) - 2))
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def render_notes(
    rng: np.random.Generator,
    themes: np.ndarray,
    intensity: np.ndarray,
    discount: np.ndarray,
    duration: np.ndarray,
    category_name: np.ndarray,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, template ids and held-out flags for notes of the given themes.

    Args:
        themes: theme index per note (into ``THEME_NAMES``).
        intensity: sentiment strength in [0, 1] per note; picks the word tier.
    """
    table = template_table()
    by_theme: dict[int, list[tuple[int, str, int, str, bool]]] = {}
    for row in table:
        by_theme.setdefault(THEME_NAMES.index(row[1]), []).append(row)
    texts: list[str] = []
    tids = np.empty(len(themes), dtype=np.int64)
    held = np.empty(len(themes), dtype=bool)
    choice = rng.random(len(themes))
    tiers = np.clip((intensity * 3).astype(int), 0, 2)
    fill = rng.integers(0, len(FILLERS), len(themes))
    typo = rng.random(len(themes)) < 0.08
    lower = rng.random(len(themes)) < 0.15
    adj_pick = rng.integers(0, 1 << 30, len(themes))
    for i, th in enumerate(themes):
        rows = by_theme[int(th)]
        tid, theme, idx, sentiment, is_held = rows[int(choice[i] * len(rows))]
        template = THEMES[theme][1][idx]
        words = ADJECTIVES[sentiment][tiers[i]]
        adj = words[adj_pick[i] % len(words)]
        text = template.format(adj=adj, disc=f"{round(discount[i] * 100)}%", dur=int(duration[i]), cat=category_name[i])
        text = FILLERS[fill[i]] + text[0].upper() + text[1:]
        if typo[i]:
            text = _typo(rng, text)
        if lower[i]:
            text = text.lower()
        texts.append(text)
        tids[i] = tid
        held[i] = is_held
    return texts, tids, held
