"""Diagnostic codes come from one registry (loopspec/language/codes.py), and docs/errors.md lists it."""

from __future__ import annotations

import re
from pathlib import Path

from loopspec.language import codes

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(LS\d+)` \| (.+?) \| (.+?) \|$")


def test_docs_table_equals_the_registry() -> None:
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    rows = [m.groups() for line in text.splitlines() if (m := ROW.match(line))]
    expected = [(c.code, c.title, c.fix) for c in codes.REGISTRY.values()]
    assert rows == expected, "docs/errors.md's table differs from loopspec/language/codes.py"


def test_every_code_literal_in_the_package_is_registered() -> None:
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "loopspec").rglob("*.py")):
        for code in re.findall(r"[\"'](LS\d+)[\"']", path.read_text(encoding="utf-8")):
            found.setdefault(code, []).append(str(path.relative_to(ROOT)))
    unknown = {code: files for code, files in found.items() if code not in codes.REGISTRY}
    assert not unknown, f"codes used but not in loopspec/language/codes.py: {unknown}"


def test_the_language_names_codes_by_constant() -> None:
    language = ROOT / "loopspec" / "language"
    literal = [
        str(p.relative_to(ROOT))
        for p in sorted(language.glob("*.py"))
        if p.name != "codes.py" and re.search(r"[\"']LS\d+[\"']", p.read_text(encoding="utf-8"))
    ]
    assert not literal, f"write codes.NAME instead of a literal code in {literal}"


def test_no_two_codes_share_a_number() -> None:
    numbers = [c.code for c in codes.REGISTRY.values()]
    assert len(numbers) == len(set(numbers))
    assert all(re.fullmatch(r"LS\d{3}", n) for n in numbers)
    assert all(key == c.code for key, c in codes.REGISTRY.items())
    constants = [v for k, v in vars(codes).items() if k.isupper() and isinstance(v, str)]
    assert sorted(constants) == sorted(numbers), "every code has exactly one constant"


def test_every_code_has_a_title_and_a_fix() -> None:
    for c in codes.REGISTRY.values():
        assert c.title and c.fix and "|" not in c.title + c.fix, c
