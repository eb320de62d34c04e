from __future__ import annotations

from pathlib import Path

from aidg.store import schema_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_schema_doc_is_generated_from_the_records() -> None:
    assert (ROOT / "docs" / "data-schema.md").read_text() == schema_markdown(), (
        "docs/data-schema.md is stale: run `aidg schema > docs/data-schema.md`"
    )


def test_readme_gives_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_architecture_names_every_module() -> None:
    arch = (ROOT / "ARCHITECTURE.md").read_text()
    for path in sorted((ROOT / "src" / "aidg").rglob("*.py")):
        rel = path.relative_to(ROOT / "src")
        if path.name == "__init__.py":
            continue
        assert rel.as_posix().removeprefix("aidg/") in arch, f"ARCHITECTURE.md does not mention {rel}"
