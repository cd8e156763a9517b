"""Row labels and search filters (docs/api.md, "Labels and filters").

Small builders of the generated messages, so that a filter reads as what it
means: `all_of(tag("kind", "episode"), attribute("ts", min=t0))`. Every
function also accepts the generated message itself where it takes one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Optional, Union

from engram_similarity._proto import similarity_pb2 as pb

TagValue = Union[str, int]
LabelsLike = Union[pb.RowLabels, Mapping[str, object]]


def _tag_value(value: TagValue) -> pb.TagValue:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"tag values are str or int, got {type(value).__name__}")
    return pb.TagValue(text=value) if isinstance(value, str) else pb.TagValue(integer=value)


def labels(
    tags: Optional[Mapping[str, Union[TagValue, Iterable[TagValue]]]] = None,
    attributes: Optional[Mapping[str, float]] = None,
) -> pb.RowLabels:
    """One row's labels: tags key -> value (or several values), attributes."""
    message = pb.RowLabels()
    for key, values in (tags or {}).items():
        if isinstance(values, (str, int)):
            values = [values]
        for value in values:
            entry = message.tags.add(key=key)
            if isinstance(value, str):
                entry.text = value
            elif isinstance(value, int) and not isinstance(value, bool):
                entry.integer = value
            else:
                raise TypeError(f"tag {key!r}: values are str or int")
    for name, number in (attributes or {}).items():
        message.attributes[name] = float(number)
    return message


def as_labels(value: LabelsLike) -> pb.RowLabels:
    """A RowLabels from itself or from {"tags": {...}, "attributes": {...}}."""
    if isinstance(value, pb.RowLabels):
        return value
    unknown = set(value) - {"tags", "attributes"}
    if unknown:
        raise ValueError(f"labels take 'tags' and 'attributes', not {sorted(unknown)}")
    return labels(value.get("tags"), value.get("attributes"))  # type: ignore[arg-type]


def tag(key: str, *values: TagValue) -> pb.Predicate:
    """The row has tag `key` with one of `values` (any value when none)."""
    return pb.Predicate(tag=pb.TagMatch(key=key, values=[_tag_value(v) for v in values]))


def attribute(
    name: str,
    *,
    min: Optional[float] = None,
    max: Optional[float] = None,
    min_exclusive: bool = False,
    max_exclusive: bool = False,
) -> pb.Predicate:
    """The row has attribute `name` within the bounds given."""
    bounds = pb.AttributeRange(name=name, min_exclusive=min_exclusive, max_exclusive=max_exclusive)
    if min is not None:
        bounds.min = min
    if max is not None:
        bounds.max = max
    return pb.Predicate(range=bounds)


def all_of(*predicates: pb.Predicate) -> pb.Predicate:
    return pb.Predicate(all=pb.PredicateList(predicates=list(predicates)))


def any_of(*predicates: pb.Predicate) -> pb.Predicate:
    return pb.Predicate(any=pb.PredicateList(predicates=list(predicates)))


def not_(predicate: pb.Predicate) -> pb.Predicate:
    return pb.Predicate(**{"not": predicate})


def row_filter(
    allow_ids: Optional[Iterable[int]] = None,
    deny_ids: Optional[Iterable[int]] = None,
    where: Optional[pb.Predicate] = None,
) -> Optional[pb.RowFilter]:
    """A RowFilter, or None when nothing is given (every row passes)."""
    if allow_ids is None and deny_ids is None and where is None:
        return None
    message = pb.RowFilter()
    if allow_ids is not None:
        message.allow_ids.extend(int(i) for i in allow_ids)
    if deny_ids is not None:
        message.deny_ids.extend(int(i) for i in deny_ids)
    if where is not None:
        message.where.CopyFrom(where)
    return message
