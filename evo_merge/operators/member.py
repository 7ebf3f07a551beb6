"""Members: the population's given models, the roots of every lineage (no recipe to build)."""

from __future__ import annotations

from typing import Any, Sequence

from evo_merge.operators.base import MergekitForm, Operator, Recipe, Refs, register


@register
class Member(Operator):
    name = "member"
    color = "#d9f2d9"

    @classmethod
    def mergekit(cls, recipe: Recipe, parents: Sequence[Any], refs: Refs, dtype: str) -> MergekitForm:
        ind_id, name = getattr(recipe, "id", "?"), getattr(recipe, "name", None)
        try:
            where = f" ({refs(name)})" if name else ""
        except LookupError:
            where = ""
        return MergekitForm(None, f"no mergekit config: individual {ind_id} is member {name!r} itself{where}")
