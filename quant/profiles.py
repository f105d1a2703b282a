"""Built-in model profiles from published configs, and the GGUF quant types the planner reasons over.

A profile lets the planner answer "what would this model need?" without the weights. Geometry is
copied from each model's published `config.json`:
- IQuest-Coder-V1-40B (Base/Instruct): 80 layers, hidden 5120, 40 query / 8 KV heads (head_dim
  128), intermediate 27648, vocab 76,800, 131,072 positions, `rope_scaling: null`, untied output.
- The Loop variant (`IQuestLoopCoderForCausalLM`) has the same weights geometry with
  `loop_num: 2`: every token runs the 80 layers twice. Mainline llama.cpp has no loop support.
- DeepSeek-Coder-33B-Instruct: 62 layers, hidden 7168, 56 query / 8 KV heads, intermediate
  19200, vocab 32,256, 16,384 positions (linear RoPE scaling, factor 4), untied output.
"""

from __future__ import annotations

import msgspec

from codeflow.quant.errors import PlanError


class QuantType(msgspec.Struct, kw_only=True, frozen=True):
    """A llama.cpp file type and its effective bits per weight over a whole llama-family model."""

    name: str
    bpw: float
    # 0 = best; the preference "quality" walks this order, "speed" walks it backwards.
    rank: int


# Effective bpw of whole files (the K-quant mixes keep some tensors at Q6_K), checked against the
# published sizes of deepseek-coder-33b-instruct GGUFs: Q4_K_M 19.94 GB / 33.3B weights = 4.79.
QUANT_TYPES: tuple[QuantType, ...] = (
    QuantType(name="F16", bpw=16.0, rank=0),
    QuantType(name="Q8_0", bpw=8.5, rank=1),
    QuantType(name="Q6_K", bpw=6.57, rank=2),
    QuantType(name="Q5_K_M", bpw=5.67, rank=3),
    QuantType(name="Q5_K_S", bpw=5.52, rank=4),
    QuantType(name="Q4_K_M", bpw=4.80, rank=5),
    QuantType(name="Q4_K_S", bpw=4.55, rank=6),
    QuantType(name="IQ4_XS", bpw=4.30, rank=7),
    QuantType(name="Q3_K_L", bpw=4.22, rank=8),
    QuantType(name="Q3_K_M", bpw=3.89, rank=9),
    QuantType(name="IQ3_M", bpw=3.70, rank=10),
    QuantType(name="Q2_K", bpw=3.37, rank=11),
)
QUANTS = {q.name: q for q in QUANT_TYPES}
# Below this the planner only goes when nothing better fits, and says so.
MIN_GOOD_BPW = 4.25


class Profile(msgspec.Struct, kw_only=True, frozen=True):
    """A model's geometry from its published config; no weights needed."""

    name: str
    display: str
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    n_ctx_train: int
    tied_embeddings: bool = False
    # Passes over the layers per token (IQuest Loop models run them twice).
    loop: int = 1
    rope_scaling: str | None = None
    # The Hugging Face repository a remote server loads.
    hf_repo: str = ""

    def layer_params(self) -> int:
        """Weights in one transformer block (attention, FFN, two norms)."""
        q_o = 2 * self.n_embd * self.n_head * self.head_dim
        k_v = 2 * self.n_embd * self.n_head_kv * self.head_dim
        return q_o + k_v + 3 * self.n_embd * self.n_ff + 2 * self.n_embd

    def params(self) -> int:
        """All weights: the blocks, the embedding and (when untied) the output matrix."""
        embd = self.n_vocab * self.n_embd
        return self.n_layer * self.layer_params() + embd * (1 if self.tied_embeddings else 2)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="iquest-coder-v1-40b-instruct", display="IQuest-Coder-V1-40B-Instruct",
            arch="llama", n_layer=80, n_embd=5120, n_head=40, n_head_kv=8, head_dim=128,
            n_ff=27648, n_vocab=76800, n_ctx_train=131072,
            hf_repo="IQuestLab/IQuest-Coder-V1-40B-Instruct",
        ),
        Profile(
            name="iquest-coder-v1-40b-loop-instruct", display="IQuest-Coder-V1-40B-Loop-Instruct",
            arch="iquestloopcoder", n_layer=80, n_embd=5120, n_head=40, n_head_kv=8,
            head_dim=128, n_ff=27648, n_vocab=76800, n_ctx_train=131072, loop=2,
            hf_repo="IQuestLab/IQuest-Coder-V1-40B-Loop-Instruct",
        ),
        Profile(
            name="deepseek-coder-33b-instruct", display="DeepSeek-Coder-33B-Instruct",
            arch="llama", n_layer=62, n_embd=7168, n_head=56, n_head_kv=8, head_dim=128,
            n_ff=19200, n_vocab=32256, n_ctx_train=16384, rope_scaling="linear",
            hf_repo="deepseek-ai/deepseek-coder-33b-instruct",
        ),
    )
}


def get_profile(name: str) -> Profile:
    """The built-in profile called `name`."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise PlanError(f"unknown profile {name!r}; built in: {known}") from None


def get_quant(name: str) -> QuantType:
    """The quant type called `name` (case-insensitive)."""
    try:
        return QUANTS[name.upper()]
    except KeyError:
        known = ", ".join(QUANTS)
        raise PlanError(f"unknown quant type {name!r}; known: {known}") from None
