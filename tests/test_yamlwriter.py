"""The writer of generated documents: what it writes reads back as the data, and lists
shared between documents (the egress rules of every policy) are written once, the same."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st
from ruamel.yaml import YAML

from post_renderer import yamlwriter

_SAFE = YAML(typ="safe", pure=True)
_keys = st.text(st.sampled_from("abcXYZ-_./:*' 0\"#"), min_size=1, max_size=6)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-70000, 70000),
                     st.text(st.characters(blacklist_categories=["Cs"]), max_size=8))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(_keys, inner, max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, min_size=1, max_size=5), st.booleans())
def test_what_is_written_reads_back_as_the_data(data: dict[str, Any], indent_sequences: bool) -> None:
    assert _SAFE.load(yamlwriter.write(data, indent_sequences=indent_sequences)) == data


@settings(max_examples=200, deadline=None)
@given(st.lists(_values, min_size=1, max_size=4), st.lists(_keys, min_size=1, max_size=3, unique=True))
def test_a_shared_list_is_written_once_and_the_same(shared: list[Any], names: list[str]) -> None:
    # The same list object under documents of several shapes and depths, as the egress
    # rules sit under every generated policy, Helm 3 and Helm 4 style alike.
    documents = [{"kind": name, "spec": {"egress": shared, "deeper": {"rules": shared}}, "top": shared}
                 for name in names]
    for indent_sequences in (True, False):
        memo: yamlwriter.Memo = {}
        with_memo = [yamlwriter.write(d, indent_sequences=indent_sequences, memo=memo) for d in documents]
        without = [yamlwriter.write(d, indent_sequences=indent_sequences) for d in documents]
        assert with_memo == without
        assert all(_SAFE.load(text) == d for text, d in zip(with_memo, documents))
