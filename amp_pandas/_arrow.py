"""Arrow tables to pandas frames for building, without a detour through Python objects.

Scalar columns stay Arrow-backed (:class:`pandas.ArrowDtype`): no copy into object arrays, and
an integer column with missing values stays integer (the default conversion makes it float, and
``3`` would travel as ``3.0``). Nested columns (lists, structs, maps) become Python objects
(lists as NumPy arrays, structs and maps as dicts), and dictionary columns pandas categoricals,
which the builder reads cell by cell.
``string_view`` columns (polars' newest Arrow level), nested ones too, are read as ``large_string``.

pyarrow is imported by the caller; this module only needs it at call time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["to_pandas"]


def _mapper(arrow_type: Any) -> Any:
    import pyarrow as pa

    if pa.types.is_nested(arrow_type) or pa.types.is_dictionary(arrow_type):
        return None
    return pd.ArrowDtype(arrow_type)


def _without_views(arrow_type: Any) -> Any:
    """``arrow_type`` with every ``string_view``/``binary_view`` (nested too) made large."""
    import pyarrow as pa

    t = pa.types
    if t.is_string_view(arrow_type):
        return pa.large_string()
    if t.is_binary_view(arrow_type):
        return pa.large_binary()
    if t.is_list_view(arrow_type) or t.is_large_list_view(arrow_type):
        item = arrow_type.value_field
        return pa.large_list(item.with_type(_without_views(item.type)))
    if t.is_list(arrow_type) or t.is_large_list(arrow_type) or t.is_fixed_size_list(arrow_type):
        item = arrow_type.value_field
        plain = _without_views(item.type)
        if plain.equals(item.type):
            return arrow_type
        return pa.large_list(item.with_type(plain))
    if t.is_struct(arrow_type):
        fields = [f.with_type(_without_views(f.type)) for f in arrow_type]
        changed = any(not a.type.equals(b.type) for a, b in zip(fields, arrow_type, strict=True))
        return pa.struct(fields) if changed else arrow_type
    if t.is_map(arrow_type):
        key, item = _without_views(arrow_type.key_type), _without_views(arrow_type.item_type)
        if key.equals(arrow_type.key_type) and item.equals(arrow_type.item_type):
            return arrow_type
        return pa.map_(key, item)
    return arrow_type


def to_pandas(table: pa.Table, index: pd.Index | None = None) -> pd.DataFrame:
    """``table`` as a pandas DataFrame ready for building, with ``index`` if given.

    Examples
    --------
    >>> import pyarrow as pa
    >>> frame = to_pandas(pa.table({"uid": ["0012345"], "n": pa.array([None], pa.int64()),
    ...                             "tags": [["a", "b"]]}))
    >>> [str(t) for t in frame.dtypes], frame.loc[0, "tags"].tolist()
    (['string[pyarrow]', 'int64[pyarrow]', 'object'], ['a', 'b'])
    """
    import pyarrow as pa

    schema = pa.schema([f.with_type(_without_views(f.type)) for f in table.schema])
    if not schema.equals(table.schema):
        table = table.cast(schema)
    frame = table.to_pandas(types_mapper=_mapper, maps_as_pydicts="strict")
    if index is not None:
        frame.index = index
    return frame
