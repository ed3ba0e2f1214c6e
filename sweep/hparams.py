"""Peak LR and batch size per run, from a selectable rule (``train.lr_rule``, ``train.batch_rule``).

One small frozen dataclass per rule, with its paper. Every rule sees a run's ``Size``: N =
``params_nonembed`` (Kaplan et al. 2020 convention), its shape and its token budget. Batches are
whole sequences of ``model.seq_len`` tokens, at least 1 (a multiple of ``train.nproc``).

The published rules were fitted at 1e7–1e11 parameters; this tool's models are 1e4–1e6. With
``train.hp_ref_params`` (power) or ``train.hp_ref_flops`` (deepseek) set, a rule keeps the paper's
exponents and is anchored so that the reference size gets exactly ``train.lr`` and
``train.batch_size``; unset, the paper's own constants are extrapolated as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sweep import shapes
from sweep.errors import ConfigError
from sweep.records import HParams

if TYPE_CHECKING:
    from sweep.conf_schema import SweepConfig

LR_RULES = ("constant", "width", "power", "deepseek", "table")
BATCH_RULES = ("constant", "power", "deepseek", "table")


@dataclass(frozen=True)
class Size:
    """What a rule may depend on: one run's shape and budget."""

    params_nonembed: float  # N, non-embedding parameters (shapes.params_nonembed)
    width: int
    depth: int
    seq_len: int
    tokens: float  # training tokens the run is planned for

    @classmethod
    def of(cls, width: int, depth: int, seq_len: int, tokens: float) -> Size:
        return cls(shapes.params_nonembed(width, depth), width, depth, seq_len, tokens)

    @property
    def flops_deepseek(self) -> float:
        """C = M·D, M = non-embedding FLOPs/token incl. attention as DeepSeek LLM (2024) §3.2
        counts it: 72·n_layer·d² + 6·n_layer·seq·d; here 6·N_nonembed + 6·n_layer·seq·d."""
        return shapes.flops_per_token_deepseek(self.width, self.depth, self.seq_len) * self.tokens


class Rule(Protocol):
    name: str

    def lr(self, s: Size) -> float: ...
    def batch_tokens(self, s: Size) -> float: ...
    def lr_text(self) -> str: ...  # the formula, e.g. "0.007·(64/width)^1"
    def batch_text(self) -> str: ...  # the formula in tokens
    def source(self) -> str: ...  # paper and the meaning of its symbols


def _g(x: float) -> str:
    return f"{x:.4g}"


@dataclass(frozen=True)
class Constant:
    """The same peak LR and batch for every run."""

    lr_value: float
    batch_tokens_value: float
    name: str = "constant"

    def lr(self, s: Size) -> float:
        return self.lr_value

    def batch_tokens(self, s: Size) -> float:
        return self.batch_tokens_value

    def lr_text(self) -> str:
        return _g(self.lr_value)

    def batch_text(self) -> str:
        return f"{_g(self.batch_tokens_value)} tokens"

    def source(self) -> str:
        return ""


@dataclass(frozen=True)
class Width:
    """lr · (ref_width / width)^exponent: hidden-layer LRs shrink with width as in μP (Yang et al.
    2022, Tensor Programs V); exponent 1 is μP's Adam scaling. Batch stays constant."""

    lr_ref: float
    ref_width: int
    exponent: float
    batch_tokens_value: float
    name: str = "width"

    def lr(self, s: Size) -> float:
        return self.lr_ref * (self.ref_width / s.width) ** self.exponent

    def batch_tokens(self, s: Size) -> float:
        return self.batch_tokens_value

    def lr_text(self) -> str:
        return f"{_g(self.lr_ref)}·({self.ref_width}/width)^{_g(self.exponent)}"

    def batch_text(self) -> str:
        return f"{_g(self.batch_tokens_value)} tokens"

    def source(self) -> str:
        return "μP-style"


@dataclass(frozen=True)
class Power:
    """Power laws in N = non-embedding params (Porian et al. 2024, "Resolving Discrepancies in
    Compute-Optimal Scaling of Language Models", arXiv:2406.19146; used for OLMo ladders):
    LR = 0.0047·(N/108e6)^(-1/3), batch = 160·(N/108e6)^(2/3) sequences of 2048 tokens.
    Anchored: the same exponents through (ref_params, lr_ref, batch_ref_tokens)."""

    ref_params: float = 108e6
    lr_ref: float = 0.0047
    batch_ref_tokens: float = 160 * 2048
    lr_exponent: float = -1.0 / 3.0
    batch_exponent: float = 2.0 / 3.0
    name: str = "power"

    def lr(self, s: Size) -> float:
        return self.lr_ref * (s.params_nonembed / self.ref_params) ** self.lr_exponent

    def batch_tokens(self, s: Size) -> float:
        return self.batch_ref_tokens * (s.params_nonembed / self.ref_params) ** self.batch_exponent

    def lr_text(self) -> str:
        return f"{_g(self.lr_ref)}·(N/{_g(self.ref_params)})^(-1/3)"

    def batch_text(self) -> str:
        return f"{_g(self.batch_ref_tokens)} tokens·(N/{_g(self.ref_params)})^(2/3)"

    def source(self) -> str:
        return "Porian et al. 2024; N = params_nonembed"


@dataclass(frozen=True)
class DeepSeek:
    """Compute-based (DeepSeek LLM, Bi et al. 2024, arXiv:2401.02954, eq. 1):
    η_opt = 0.3118·C^(-0.1250), B_opt = 0.2920·C^(0.3271) tokens, C in FLOPs = M·D with M the
    non-embedding FLOPs/token including attention (``Size.flops_deepseek``).
    Anchored: the same exponents through (ref_flops, lr_ref, batch_ref_tokens)."""

    ref_flops: float = 1.0
    lr_ref: float = 0.3118
    batch_ref_tokens: float = 0.2920
    lr_exponent: float = -0.1250
    batch_exponent: float = 0.3271
    name: str = "deepseek"

    def lr(self, s: Size) -> float:
        return self.lr_ref * (s.flops_deepseek / self.ref_flops) ** self.lr_exponent

    def batch_tokens(self, s: Size) -> float:
        return self.batch_ref_tokens * (s.flops_deepseek / self.ref_flops) ** self.batch_exponent

    def _c(self) -> str:
        return "C" if self.ref_flops == 1.0 else f"(C/{_g(self.ref_flops)})"

    def lr_text(self) -> str:
        return f"{_g(self.lr_ref)}·{self._c()}^-0.125"

    def batch_text(self) -> str:
        return f"{_g(self.batch_ref_tokens)}·{self._c()}^0.3271 tokens"

    def source(self) -> str:
        return "DeepSeek LLM 2024 eq. 1; C = (6·N_nonembed + 6·layers·seq·width)·tokens FLOPs"


@dataclass(frozen=True)
class Table:
    """A user table (GPT-3 style, Brown et al. 2020 Table 2.1): rows (params_nonembed, lr,
    batch_size in sequences) sorted by params. LR is interpolated linearly in log N – log LR
    between rows (clamped at the ends); batch comes from the row nearest in log N. Only the
    columns in use (``use_lr``, ``use_batch``) must be filled."""

    rows: tuple[tuple[float, float | None, int | None], ...]
    seq_len: int
    use_lr: bool = True
    use_batch: bool = True
    name: str = "table"

    def __post_init__(self) -> None:
        if not self.rows:
            raise ConfigError("train.hp_table is empty: give rows {params, lr, batch_size}, "
                              "sorted by params")
        for i, (n, lr, bs) in enumerate(self.rows):
            bad = [f"params={n}"] if not n > 0 else []
            if self.use_lr and not (lr is not None and math.isfinite(lr) and lr > 0):
                bad.append(f"lr={lr}")
            if self.use_batch and not (bs is not None and bs >= 1):
                bad.append(f"batch_size={bs}")
            if bad:
                raise ConfigError(f"train.hp_table[{i}]: params and lr must be > 0 and "
                                  f"batch_size ≥ 1, got {', '.join(bad)}")
        ps = [r[0] for r in self.rows]
        if any(b <= a for a, b in zip(ps, ps[1:])):
            raise ConfigError(f"train.hp_table must be sorted by params, strictly increasing; "
                              f"got {ps}")

    def lr(self, s: Size) -> float:
        x, rows = math.log(s.params_nonembed), self.rows
        if x <= math.log(rows[0][0]):
            return rows[0][1]
        for (n0, lr0, _), (n1, lr1, _) in zip(rows, rows[1:]):
            if x <= math.log(n1):
                f = (x - math.log(n0)) / (math.log(n1) - math.log(n0))
                return math.exp(math.log(lr0) + f * (math.log(lr1) - math.log(lr0)))
        return rows[-1][1]

    def batch_tokens(self, s: Size) -> float:
        x = math.log(s.params_nonembed)
        row = min(self.rows, key=lambda r: abs(math.log(r[0]) - x))
        return row[2] * self.seq_len

    def lr_text(self) -> str:
        return "log-interpolated in N"

    def batch_text(self) -> str:
        return "nearest row in log N"

    def source(self) -> str:
        return (f"train.hp_table, {len(self.rows)} rows at N = params_nonembed "
                f"{_g(self.rows[0][0])}–{_g(self.rows[-1][0])}")


def _rule(name: str, cfg: SweepConfig, key: str) -> Rule:
    t, seq = cfg.train, cfg.model.seq_len
    batch_tokens = float(t.batch_size * seq)
    if name == "constant":
        return Constant(t.lr, batch_tokens)
    if name == "width":
        return Width(t.lr, t.lr_ref_width, t.lr_exponent, batch_tokens)
    if name == "power":
        if t.hp_ref_params is None:
            return Power()
        return Power(ref_params=t.hp_ref_params, lr_ref=t.lr, batch_ref_tokens=batch_tokens)
    if name == "deepseek":
        if t.hp_ref_flops is None:
            return DeepSeek()
        return DeepSeek(ref_flops=t.hp_ref_flops, lr_ref=t.lr, batch_ref_tokens=batch_tokens)
    if name == "table":
        return Table(tuple((r.params, r.lr, r.batch_size) for r in t.hp_table), seq,
                     use_lr=t.lr_rule == "table", use_batch=t.batch_rule == "table")
    allowed = LR_RULES if key == "train.lr_rule" else BATCH_RULES
    raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {name!r}")


@dataclass(frozen=True)
class Rules:
    """The LR rule and the batch rule of a sweep."""

    lr_rule: Rule
    batch_rule: Rule
    seq_len: int
    multiple: int = 1  # batches are a multiple of this many sequences (train.nproc for DDP)

    def choose(self, width: int, depth: int, tokens: float) -> HParams:
        """Peak LR and batch (whole sequences, ≥ 1) for one run planned for ``tokens``."""
        s = Size.of(width, depth, self.seq_len, tokens)
        lr = self.lr_rule.lr(s)
        k = self.multiple
        batch = k * max(1, round(self.batch_rule.batch_tokens(s) / self.seq_len / k))
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"train.lr_rule={self.lr_rule.name} gives lr {lr!r} for width "
                              f"{width} × depth {depth}")
        return HParams(lr=lr, batch_size=batch, lr_rule=self.lr_rule.name,
                       batch_rule=self.batch_rule.name)

    def describe(self) -> str:
        """One line for `sweep plan`: which rules made the LRs and batches."""
        a, b = self.lr_rule, self.batch_rule
        if a is b:
            head = f"lr and batch by rule '{a.name}'"
            body = f"peak lr {a.lr_text()}, batch {b.batch_text()}" + (
                f" ({a.source()})" if a.source() else "")
        else:
            body = (f"peak lr {a.lr_text()}" + (f" ({a.source()})" if a.source() else "")
                    + f"; batch {b.batch_text()}" + (f" ({b.source()})" if b.source() else ""))
            head = f"lr by rule '{a.name}', batch by rule '{b.name}'"
        return f"{head}: {body}; batches in whole sequences of {self.seq_len} tokens"


def rules(cfg: SweepConfig) -> Rules:
    """The sweep's rules from ``train.lr_rule`` and ``train.batch_rule``; ConfigError if unknown
    or if a rule's settings are bad (e.g. an empty or unsorted ``train.hp_table``)."""
    t = cfg.train
    if t.lr_rule not in LR_RULES:
        raise ConfigError(f"train.lr_rule must be one of {', '.join(LR_RULES)}; got {t.lr_rule!r}")
    if t.batch_rule not in BATCH_RULES:
        raise ConfigError(f"train.batch_rule must be one of {', '.join(BATCH_RULES)}; "
                          f"got {t.batch_rule!r}")
    for key in ("hp_ref_params", "hp_ref_flops"):
        v = getattr(t, key)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ConfigError(f"train.{key} must be a positive number or null, got {v!r}")
    if t.schedule == "wsd" and "deepseek" in (t.lr_rule, t.batch_rule):
        raise ConfigError("train.schedule=wsd trains a shape's budgets as branches of one run with "
                          "one LR and batch; the deepseek rule changes them with each budget")
    if t.hp_table and "table" not in (t.lr_rule, t.batch_rule):  # unused, but still checked
        Table(tuple((r.params, r.lr, r.batch_size) for r in t.hp_table), cfg.model.seq_len,
              use_lr=False, use_batch=False)
    lr_rule = _rule(t.lr_rule, cfg, "train.lr_rule")
    batch_rule = lr_rule if t.batch_rule == t.lr_rule else _rule(t.batch_rule, cfg,
                                                                  "train.batch_rule")
    return Rules(lr_rule, batch_rule, cfg.model.seq_len, max(1, getattr(t, "nproc", 1)))


def choose(cfg: SweepConfig, width: int, depth: int, tokens: float) -> HParams:
    """Peak LR and batch for one run of ``width`` × ``depth`` planned for ``tokens`` tokens."""
    return rules(cfg).choose(width, depth, tokens)
