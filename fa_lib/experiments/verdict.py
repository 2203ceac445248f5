"""One rule judges every finding of every chapter, and a structured verdict records the judgement.

The rule: the thesis says A beats B (by ``paper_gap``); we measured a gap ``mean(A) - mean(B)`` of
scores where higher is better (AUC@7%, or minus an error). The gap **counts** when it exceeds twice
its standard error over seeds, sqrt(s_A^2 / n_A + s_B^2 / n_B) with each side's sample standard
deviation over its seeds; a side trained with one seed borrows the chapter's pooled seed spread when
the chapter has one. Then the finding *holds* (same sign as the thesis) or is *reversed*; a gap under
two standard errors is *within noise*. When no spread is known at all (every side a single seed and
no pooled spread), the comparison is *single seed*: the direction is reported, nothing is concluded.

Where each method is one trained network compared on the same test faces (chapter 6), the same
outcomes are decided with the standard error of the mean per-face difference (:func:`judge_paired`,
:data:`PAIRED_RULE`): the test faces' sampling noise, not the training noise, and each verdict says so.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Iterable, Sequence

import numpy as np

RULE = ("a gap counts when it exceeds twice its standard error over seeds "
        "(sqrt(s_a^2/n_a + s_b^2/n_b); a single-seed side uses the chapter's pooled seed spread)")

#: the outcomes a verdict can have, with ``holds`` for each
OUTCOMES = {"holds": True, "reversed": False, "within noise": None, "single seed": None,
            "not measurable": None}


@dataclass(frozen=True)
class Verdict:
    """The judgement of one finding of the thesis from our numbers.

    ``holds``: True (the thesis's ordering is reproduced beyond the noise), False (reversed beyond
    the noise) or None (within noise, single seed, or not measurable at this scale: ``outcome`` says
    which). ``gap`` is ``mean(better) - mean(worse)`` in ``metric`` (higher is better), with its
    ``standard_error`` (NaN when unknown) and the thesis's ``paper_gap``.
    """

    claim: str
    outcome: str
    metric: str = "AUC@7%"
    better: str = ""
    worse: str = ""
    better_values: tuple[float, ...] = ()
    worse_values: tuple[float, ...] = ()
    gap: float = float("nan")
    standard_error: float = float("nan")
    paper_gap: float | None = None
    rule: str = RULE
    note: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {list(OUTCOMES)}, got {self.outcome!r}")

    @property
    def holds(self) -> bool | None:
        return OUTCOMES[self.outcome]

    @property
    def seeds(self) -> tuple[int, int]:
        return len(self.better_values), len(self.worse_values)

    @classmethod
    def from_dict(cls, record: dict) -> "Verdict":
        """The verdict of a :meth:`to_dict` record (as stored in a result's provenance JSON)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        for key in ("better_values", "worse_values"):
            values[key] = tuple(float(v) for v in values.get(key, ()))
        for key in ("gap", "standard_error"):
            values[key] = float("nan") if values.get(key) is None else float(values[key])
        return cls(**values)

    @property
    def label(self) -> str:
        """The outcome in words, as the book shows it."""
        if self.outcome == "not measurable":
            return "not measurable at this scale"
        if self.outcome == "single seed":
            direction = {True: "direction as in the thesis", False: "direction opposite to the thesis",
                         None: "no difference"}[self.direction_agrees]
            return f"single seed, {direction}"
        return self.outcome

    def details(self) -> str:
        """The claim and the numbers compared (Markdown, without the outcome)."""
        if self.outcome == "not measurable":
            return self.claim + (f": {self.note}" if self.note else "")
        paper = "" if self.paper_gap is None else f"thesis {self.paper_gap:+.1f}, "
        if math.isfinite(self.standard_error):
            spread = f"+- {2 * self.standard_error:.2f} at 2 standard errors"
        else:
            spread = "one seed each: spread unknown"
        named = "" if self.better in self.claim and self.worse in self.claim else f"{self.better} vs {self.worse}: "
        basis = (f"{self.seeds[0]} and {self.seeds[1]} seed(s)" if self.rule == RULE else
                 "one network each, the spread over the test faces" if self.rule == PAIRED_RULE else self.rule)
        numbers = f"{named}{paper}ours {self.gap:+.2f} {self.metric} ({spread}; {basis})"
        return f"{self.claim}: {numbers}" + (f". {self.note}" if self.note else "")

    def sentence(self) -> str:
        """One Markdown line: the outcome in bold, the claim, the numbers compared."""
        return f"**{self.label}** - {self.details()}"

    @property
    def direction_agrees(self) -> bool | None:
        """Is the measured gap's sign the thesis's (whatever the noise)? None when there is no gap."""
        if not math.isfinite(self.gap) or self.gap == 0:
            return None
        sign = 1.0 if self.paper_gap is None or self.paper_gap >= 0 else -1.0
        return self.gap * sign > 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["holds"] = self.holds
        return d


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count."""
    v = np.asarray(list(values), np.float64)
    if v.size == 0:
        raise ValueError("no values")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def mean_std_cells(row: str, column: str, values: Iterable[float]) -> list[dict]:
    """A result table's cells of ``values`` over seeds: ``column`` (mean) and ``<column> std`` (sample
    std) of ``row``."""
    mean, std, _ = mean_std(values)
    return [dict(row=row, column=column, reproduced=mean), dict(row=row, column=f"{column} std", reproduced=std)]


def pooled_std(groups: Iterable[Sequence[float]]) -> float | None:
    """Pooled sample standard deviation of the groups with two or more values (the run-to-run
    spread of a chapter's budget), or None when no group has two values."""
    num, den = 0.0, 0
    for values in groups:
        if len(values) > 1:
            num += float(np.var(values, ddof=1)) * (len(values) - 1)
            den += len(values) - 1
    return math.sqrt(num / den) if den else None


def judge(claim: str, better: str, better_values: Sequence[float], worse: str, worse_values: Sequence[float],
          *, paper_gap: float | None = None, noise: float | None = None, metric: str = "AUC@7%",
          note: str = "") -> Verdict:
    """Apply :data:`RULE` to "the thesis says ``better`` beats ``worse``" (scores: higher is better).

    ``paper_gap`` (thesis's better minus worse) sets the expected sign when the thesis's own gap is
    negative; ``noise`` is the chapter's pooled seed spread for single-seed sides."""
    ma, sa, na = mean_std(better_values)
    mb, sb, nb = mean_std(worse_values)
    sa = sa if na > 1 else (noise if noise is not None else float("nan"))
    sb = sb if nb > 1 else (noise if noise is not None else float("nan"))
    se = math.sqrt(sa ** 2 / na + sb ** 2 / nb)
    verdict = judge_gap(claim, better, worse, ma - mb, se if math.isfinite(se) else float("nan"),
                        paper_gap=paper_gap, metric=metric, rule=RULE, note=note)
    return replace(verdict, better_values=tuple(float(v) for v in better_values),
                   worse_values=tuple(float(v) for v in worse_values))


#: the rule for one trained network per method, compared on the same test faces
PAIRED_RULE = ("one trained network per method: a gap counts when it exceeds twice the standard error of the mean "
               "per-face difference on the same test faces (the test faces' sampling noise; the run-to-run "
               "training noise is not included)")


def judge_gap(claim: str, better: str, worse: str, gap: float, standard_error: float, *,
              paper_gap: float | None = None, metric: str = "AUC@10%", rule: str = PAIRED_RULE,
              note: str = "") -> Verdict:
    """:data:`RULE`'s outcome for a gap (``better`` minus ``worse``, higher is better) whose standard
    error was measured some other way (``rule`` says how)."""
    sign = 1.0 if paper_gap is None or paper_gap >= 0 else -1.0
    if not math.isfinite(standard_error):
        outcome = "single seed"
    elif abs(gap) <= 2 * standard_error:
        outcome = "within noise"
    else:
        outcome = "holds" if gap * sign > 0 else "reversed"
    return Verdict(claim=claim, outcome=outcome, metric=metric, better=better, worse=worse, gap=float(gap),
                   standard_error=float(standard_error), paper_gap=paper_gap, rule=rule, note=note)


def judge_paired(claim: str, better: str, better_scores: Sequence[float], worse: str, worse_scores: Sequence[float],
                 *, paper_gap: float | None = None, metric: str = "AUC@10%", note: str = "") -> Verdict:
    """:data:`PAIRED_RULE` on per-face scores of two methods on the same faces (higher is better; e.g.
    an image's contribution to the AUC, ``100 * max(0, 1 - NME / threshold)``, whose mean is the AUC)."""
    a, b = np.asarray(better_scores, np.float64), np.asarray(worse_scores, np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired scores need the same faces, got {a.shape} and {b.shape}")
    diff = a - b
    se = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else float("nan")
    verdict = judge_gap(claim, better, worse, float(diff.mean()), se, paper_gap=paper_gap, metric=metric, note=note)
    return replace(verdict, better_values=(float(a.mean()),), worse_values=(float(b.mean()),))


def not_measurable(claim: str, reason: str, metric: str = "AUC@7%") -> Verdict:
    """A finding this scale cannot test (say why in ``reason``)."""
    return Verdict(claim=claim, outcome="not measurable", metric=metric, note=reason)


def summarise(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """Counts of each outcome (for a chapter's summary)."""
    counts = {k: 0 for k in OUTCOMES}
    for v in verdicts:
        counts[v.outcome] += 1
    return counts


def describe_verdicts(verdicts: "pd.DataFrame") -> str:
    """Markdown: how many of the thesis's findings checked so far (``ctx.verdict_table()``) hold, are
    reversed, are within the noise, rest on single seeds or are not measurable here."""
    if verdicts.empty:
        return "No finding of the thesis was checked."
    counts = summarise([Verdict(claim="", outcome=o) for o in verdicts["outcome"]])
    parts = [f"Of {len(verdicts)} findings of the thesis checked, **{counts['holds']} hold** here, "
             f"**{counts['reversed']} are reversed**, **{counts['within noise']} are within noise** (the difference "
             f"is within two standard errors of its spread: over seeds, or over the test faces where each method is "
             f"one network), {counts['single seed']} rest on "
             f"single seeds (direction only) and {counts['not measurable']} are not measurable at this scale."]
    for outcome, title in (("holds", "Holding"), ("reversed", "Reversed")):
        rows = verdicts[verdicts["outcome"] == outcome]
        if len(rows):
            parts.append(f"{title}: " + "; ".join(f"{r['finding']} ({r['result']})" for _, r in rows.iterrows()) + ".")
    return " ".join(parts)
