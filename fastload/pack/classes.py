"""`--classes`: a dataset packed with some of its classes, numbered anew in the order given, several of them merged
into one where asked (`person,car`; `person,bag=suitcase+handbag+backpack`). Objects of other classes are left out;
their images stay, as background images (as YOLOv5's `include_class` leaves them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastload.errors import FastloadError


@dataclass(frozen=True)
class ClassSelection:
    names: list[str]  # the store's class names
    table: np.ndarray  # int64 [source classes]: each source class's new id, -1 for one left out
    spec: str  # the selection written out canonically (what the store's metadata keeps)

    def apply(self, boxes: np.ndarray, polygons: list | None) -> tuple[np.ndarray, list | None]:
        """Rows (and their polygons) of the selected classes, with their new ids."""
        ids = self.table[boxes[:, 0].astype(np.int64)]
        keep = ids >= 0
        out = boxes[keep].copy()
        out[:, 0] = ids[keep]
        return out, None if polygons is None else [p for p, k in zip(polygons, keep, strict=True) if k]


def select_classes(text: str, names: list[str] | None, where: str) -> ClassSelection:
    """The selection `text` ('person,car', 'person,bag=suitcase+handbag+backpack'; a class by its name, or by its
    id) of the dataset at `where`, whose class names are `names`."""
    if names is None:
        raise FastloadError(f"{where}: --classes picks classes by name, and this dataset names none (give a "
                            "data.yaml or classes.txt)")  # fmt: skip
    table = np.full(len(names), -1, np.int64)
    chosen, parts = [], []
    for entry in (e.strip() for e in text.split(",")):
        new, _, sources = entry.partition("=") if "=" in entry else ("", "", entry)
        members = [class_id(s.strip(), names, where) for s in sources.split("+")]
        new = new.strip() if "=" in entry else names[members[0]]  # a class kept as it is keeps its name
        for m in members:
            if table[m] >= 0:
                raise FastloadError(f"--classes {text}: {names[m]!r} chosen twice")
            table[m] = len(chosen)
        if not new or new in chosen:
            raise FastloadError(f"--classes {text}: {'an empty' if not new else repr(new)} class name"
                                f"{'' if not new else ' twice'}")  # fmt: skip
        chosen.append(new)
        merged = "+".join(names[m] for m in members)
        parts.append(new if merged == new else f"{new}={merged}")
    return ClassSelection(chosen, table, ",".join(parts))


def class_id(name: str, names: list[str], where: str) -> int:
    """The id of the class called `name` among `names` (or given by its id); a one-line error naming `where`."""
    if name in names:
        return names.index(name)
    if name.isdigit() and int(name) < len(names):
        return int(name)
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    raise FastloadError(f"{where}: no class {name!r} (its classes: {shown})")
