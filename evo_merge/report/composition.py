"""An individual as a weighted sum of the members: the effective weight of each member's task
vector, per tensor, folded out of its whole history.

Linear steps compose exactly: a ``linear`` or ``task_arithmetic`` merge (crossover, the
uniform merge, per-group compositions: coefficient searches, split-point and layer-wise
crossovers, member nudges) and a swarm step (``x + step * v``, with ``v`` itself a linear
form of the history). Other steps are told, never guessed:

- ``residual``: Gaussian mutation noise was added somewhere; the member weights are exact,
  but the individual is those weights plus a noise term no member explains;
- ``approximate``: a LoRA product merge refactored to a rank (an SVD truncation);
- ``undefined``: a step that is not linear in its parents (TIES, DARE, SLERP, SVD mutation,
  an unknown operator): no member weights exist, so none are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from evo_merge.merge.groups import groups_from_params
from evo_merge.report.composition_rows import collapse

LEVELS = ("exact", "residual", "approximate", "undefined")


@dataclass
class Form:
    """Per tensor (rows) the weight of each member (columns); ``x`` None when undefined."""

    x: np.ndarray | None
    level: str = "exact"
    notes: list[str] = field(default_factory=list)
    v: np.ndarray | None = None  # the swarm velocity as a form (None: zero)
    v_defined: bool = True


@dataclass
class Composition:
    """The member weights of one individual, collapsed to the tensor groups where they differ."""

    ind_id: int
    members: list[int]
    names: dict[int, str]
    level: str
    notes: list[str]
    rows: list[tuple[str, list[float]]]  # (group label, weight per member) ; empty when undefined

    @property
    def defined(self) -> bool:
        return self.level != "undefined"

    def summary(self) -> str:
        """One line: how far the numbers can be trusted, and why."""
        notes = list(dict.fromkeys(self.notes))
        why = "; ".join(notes[:4]) + (f"; and {len(notes) - 4} more such steps" if len(notes) > 4 else "")
        if self.level == "exact":
            return "exact: every step of its history is linear in the members' task vectors" + (
                f" ({why})" if why else "")
        if self.level == "residual":
            return f"member weights exact, plus a term no member explains: {why}"
        if self.level == "approximate":
            return f"approximate: {why}"
        return f"undefined: {why}; no member weights are shown"

    def records(self) -> list[dict[str, Any]]:
        """One record per (group, member): for JSON and CSV."""
        return [{"id": self.ind_id, "group": label, "member_id": m, "member": self.names.get(m, str(m)),
                 "weight": w, "level": self.level} for label, ws in self.rows for m, w in zip(self.members, ws)]


def _join(a: list[str], b: list[str]) -> list[str]:
    """Notes of two histories without repeats (shared ancestors would repeat them)."""
    return list(dict.fromkeys(a + b))


def _worse(a: str, b: str) -> str:
    return a if LEVELS.index(a) >= LEVELS.index(b) else b


def _method_weights(method: str | None, coeffs: Sequence[float], params: dict[str, Any]) -> np.ndarray | None:
    """f(w): the weights a linear merge method really applies to its inputs; None if not linear."""
    from evo_merge.merge import get_merge_method

    try:
        m = get_merge_method(method or "")
    except Exception:  # noqa: BLE001 - an unknown method is simply not known to be linear
        return None
    if not m.linear:
        return None
    try:
        resolved = m.resolve_params({k: v for k, v in params.items()
                                     if k not in ("lora_mode", "groups", "group_labels", "origin")})
    except Exception:  # noqa: BLE001
        return None
    w = np.asarray(coeffs, dtype=float)
    if m.name == "passthrough":
        scale = resolved.get("scale")
        scale = scale[0] if isinstance(scale, list) else scale
        return np.array([1.0 if scale is None else float(scale)])
    if m.name not in ("linear", "task_arithmetic"):
        return None  # a plugin's linear method: its mapping of the weights is not known here
    total = float(w.sum())
    if resolved.get("normalize") and abs(total) >= 1e-8:
        w = w / total
    return w * float(resolved.get("lambda_", resolved.get("lambda", 1.0)))


class Composer:
    """Folds lineage rows into member weights; ``names``: the genome's tensor names (one row
    each), or None when unknown (then only one-group histories can be told)."""

    def __init__(self, rows: Sequence[Any], names: Sequence[str] | None, kind: str | None = None):
        self.rows = {r.id: r for r in rows}
        self.members = sorted(r.id for r in rows if r.operator == "member")
        self.col = {m: i for i, m in enumerate(self.members)}
        self.tensors = list(names) if names else ["all"]
        self.known_names = bool(names)
        self.kind = kind
        self.forms: dict[int, Form] = {}

    def _undefined(self, why: str) -> Form:
        return Form(None, "undefined", [why], v_defined=False)

    def form(self, ind_id: int) -> Form:
        stack = [ind_id]
        while stack:  # parents first, without recursion (histories can be hundreds deep)
            top = stack[-1]
            if top in self.forms:
                stack.pop()
                continue
            row = self.rows.get(top)
            todo = [p for p in (row.parents if row else []) if p not in self.forms and p in self.rows]
            if todo:
                stack.extend(todo)
                continue
            self.forms[top] = self._step(top, row)
            stack.pop()
        return self.forms[ind_id]

    def _step(self, ind_id: int, row: Any) -> Form:
        if row is None:
            return self._undefined(f"#{ind_id} is not in the lineage")
        missing = [p for p in row.parents if p not in self.rows]
        if missing:
            return self._undefined(f"parent #{missing[0]} of #{ind_id} is not in the lineage")
        op, params = row.operator, row.params or {}
        if op == "member":
            x = np.zeros((len(self.tensors), len(self.members)))
            x[:, self.col[ind_id]] = 1.0
            return Form(x)
        if op in ("crossover", "merge", "composition"):
            return self._merge(ind_id, row, params)
        if op == "mutation":
            parent = self.forms[row.parents[0]]
            mode = params.get("mode", "gaussian")
            if mode == "svd":
                return self._undefined(f"#{ind_id} is an SVD mutation (singular values scaled: not linear)")
            if parent.x is None:
                return Form(None, "undefined", parent.notes, parent.v, parent.v_defined)
            if not params.get("sigma"):
                return Form(parent.x, parent.level, parent.notes, parent.v, parent.v_defined)
            return Form(parent.x, _worse(parent.level, "residual"),
                        _join(parent.notes, [f"mutation #{ind_id} added Gaussian noise"]), parent.v, parent.v_defined)
        if op == "succession":
            return self._swarm(ind_id, row, params)
        return self._undefined(f"#{ind_id} was made by operator {op!r}, not known to be linear")

    def _merge(self, ind_id: int, row: Any, params: dict[str, Any]) -> Form:
        k = len(row.parents)
        coeffs = list(row.coefficients or [])
        if not k or not coeffs or len(coeffs) % k:
            return self._undefined(f"#{ind_id} has {len(coeffs)} coefficients for {k} parents")
        n_groups = len(coeffs) // k
        label = f"{row.operator} #{ind_id} ({row.method})"
        weights = [_method_weights(row.method, coeffs[g * k:(g + 1) * k], params) for g in range(n_groups)]
        if any(w is None for w in weights):
            return self._undefined(f"{label} is not a linear merge")
        if n_groups == 1:
            of = np.zeros(len(self.tensors), dtype=int)
        elif not self.known_names:
            return self._undefined(f"{label} has per-group weights and the tensor names are unknown")
        else:
            of = np.asarray(groups_from_params(self.tensors, params).of)
        per = np.stack(weights)[of]  # (tensors, parents)
        parents = [self.forms[p] for p in row.parents]
        level, notes = "exact", []
        x = np.zeros((len(self.tensors), len(self.members)))
        for i, pf in enumerate(parents):
            if not per[:, i].any():
                continue
            if pf.x is None:
                return Form(None, "undefined", pf.notes, v_defined=False)
            x += per[:, i:i + 1] * pf.x
            level, notes = _worse(level, pf.level), _join(notes, pf.notes)
        if params.get("lora_mode") == "product" and self.kind == "lora":
            level = _worse(level, "approximate")
            notes = _join(notes, [f"{label} merged LoRA products, refactored to rank r"])
        v, v_defined = None, True
        if row.operator != "composition":  # a crossover inherits its parents' velocities, weighted
            total = sum(coeffs[:k])
            for pf, c in zip(parents, coeffs[:k]):
                if pf.v is not None and total:
                    v = (0.0 if v is None else v) + pf.v * (c / total)
                v_defined = v_defined and pf.v_defined
        return Form(x, level, notes, v, v_defined)

    def _swarm(self, ind_id: int, row: Any, params: dict[str, Any]) -> Form:
        forms = [self.forms[p] for p in row.parents[:4]]
        try:
            r, phi, step = params["r"], params["phi"], float(params["step"])
            c = [r[0] * phi["inertia"], r[1] * phi["cognitive"], r[2] * phi["social"], r[3] * phi["repel"]]
        except (KeyError, IndexError, TypeError):
            return self._undefined(f"swarm step #{ind_id} has no recorded factors")
        bad = next((f for f in forms if f.x is None), None)
        if bad is not None or len(forms) < 4 or not forms[0].v_defined:
            return self._undefined(bad.notes[0] if bad and bad.notes else f"swarm step #{ind_id}: inputs undefined")
        x, p, g, w = (f.x for f in forms)
        norm = sum(c) or 1.0
        v = (c[0] * (forms[0].v if forms[0].v is not None else 0.0) + c[1] * (p - x) + c[2] * (g - x)
             - c[3] * (w - x)) / norm
        level, notes = "exact", []
        for f in forms:
            level, notes = _worse(level, f.level), _join(notes, f.notes)
        return Form(x + step * v, level, notes, v, True)


def compose(rows: Sequence[Any], ind_id: int, names: Sequence[str] | None = None,
            kind: str | None = None) -> Composition:
    """The composition of ``ind_id`` from lineage rows (``names``: the genome's tensor names)."""
    composer = Composer(rows, names, kind)
    form = composer.form(ind_id)
    labels = {r.id: r.name or f"#{r.id}" for r in rows if r.operator == "member"}
    notes = list(form.notes)
    if form.x is not None and kind == "lora":
        notes.append("LoRA factors A and B are weighted separately, so the update B*A is not this "
                     "weighted sum of the members' updates")
    level = form.level if not (form.x is not None and kind == "lora") else _worse(form.level, "approximate")
    rows_out = [] if form.x is None else [(label, [float(v) for v in w])
                                          for label, w in collapse(composer.tensors, form.x)]
    return Composition(ind_id, composer.members, labels, level, notes, rows_out)


def store_tensor_names(store) -> tuple[list[str] | None, str | None]:
    """The genome's tensor names and kind, from a member's weight file header (no tensors read)."""
    import json

    from safetensors import safe_open

    for r in store.lineage.all():
        if r.operator != "member":
            continue
        try:
            with safe_open(str(store.weights.path(r.weights)), framework="pt") as fh:
                meta = fh.metadata() or {}
            return list(json.loads(meta["names"])), meta.get("kind")
        except Exception:  # noqa: BLE001 - a missing or foreign file: names unknown
            continue
    return None, None
