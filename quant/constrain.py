"""Make a model's first tokens spell out text the user already typed (issue 14, item 3).

Token healing stops the prompt before a half-typed word (`User.auth` becomes `User.` plus the
lead `auth`), so that the model is not asked to continue half a token. Left free, the model then
starts with its own first choice (`find_by_email`), which does not extend `auth`, and the answer
is thrown away. Restricting sampling to the tokens whose text agrees with the lead, until the
lead is covered, yields `authenticate(...)` whenever the model knows such a name.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import numpy as np


class TokenTable:
    """Every token's bytes, indexed for "which tokens are a prefix of, or start with, X"."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.by_text: dict[bytes, list[int]] = {}
        for token, piece in enumerate(pieces):
            if piece:
                self.by_text.setdefault(piece, []).append(token)
        self.sorted = sorted(self.by_text)

    def agreeing(self, lead: bytes) -> list[int]:
        """Tokens whose bytes are a non-empty prefix of `lead`, or begin with all of it."""
        ids = [t for end in range(1, len(lead) + 1) for t in self.by_text.get(lead[:end], ())]
        start = bisect.bisect_left(self.sorted, lead)
        for text in self.sorted[start:]:
            if not text.startswith(lead):
                break
            if text != lead:
                ids += self.by_text[text]
        return ids


class LeadConstraint:
    """A llama-cpp-python logits processor: only tokens that agree with the rest of the lead.

    `generated(ids)` gives the bytes of the tokens generated so far (the caller knows where the
    prompt ended); once they cover the lead, or left it, the scores pass unchanged.
    """

    def __init__(self, table: TokenTable, lead: str, generated: Callable[[Sequence[int]], bytes]) -> None:
        self.table = table
        self.lead = lead.encode("utf-8")
        self.generated = generated

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        done = self.generated(input_ids)
        if len(done) >= len(self.lead) or not self.lead.startswith(done):
            return scores
        allowed = self.table.agreeing(self.lead[len(done):])
        if not allowed:
            return scores
        masked = np.full_like(scores, -np.inf)
        masked[allowed] = scores[allowed]
        return masked
