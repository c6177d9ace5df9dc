"""The image's build context: Docker's .dockerignore rules, and what our context lets in and keeps out."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.dockercontext import is_excluded, list_context, read_patterns

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("rules", "path", "excluded"),
    [
        ("*", "a.txt", True),
        ("*", "dir/file", True),  # the parent directory matches, so everything under it does
        ("*.py", "dir/x.py", False),  # `*` never crosses `/`
        ("**/*.py", "dir/sub/x.py", True),
        ("**/*.py", "x.py", True),  # `**/` also matches no directory at all
        ("dir/**", "dir/a/b", True),
        ("dir/**", "dirt/a", False),
        ("/tests", "tests/test_x.py", True),  # a leading slash means the context root
        ("tests/", "tests/test_x.py", True),  # a trailing slash is cleaned away
        ("*\n!app/", "app/cli.py", False),  # an exception re-includes
        ("*\n!app/\n**/__pycache__", "app/__pycache__/cli.pyc", True),  # and the last matching line wins
        ("!app\n*", "app/cli.py", True),  # order matters: an exception before the exclusion does nothing
        ("  # not a comment once indented\n", "# not a comment once indented", True),
        ("# a comment\n", "# a comment", False),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file/.txt", False),
        ("[ab].txt", "b.txt", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "axb", False),
        (".env*", ".env.local", True),
        ("/!literal", "dir", True),  # a `!` after a leading `/` still makes an exception (moby re-reads it)
    ],
)
def test_patterns_follow_dockers_rules(rules: str, path: str, excluded: bool) -> None:
    # every rule set starts by excluding `dir` so an exception has something to flip
    patterns = read_patterns(("dir\n" if rules.startswith("/!") else "") + rules)
    assert is_excluded(path, patterns) is excluded


def test_a_bare_exclamation_mark_is_rejected() -> None:
    with pytest.raises(ValueError, match="'!'"):
        read_patterns("*\n!\n")


def test_the_context_holds_the_app_and_its_requirements() -> None:
    context = set(list_context(ROOT))
    assert "requirements.txt" in context
    assert "app/__init__.py" in context
    assert "app/__main__.py" in context
    assert "app/cli.py" in context
    # every source file of the app is shipped, so `COPY app/ ./app/` copies a complete package
    app_sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "app").rglob("*.py") if "__pycache__" not in p.parts}
    assert app_sources <= context


def test_the_context_keeps_out_tests_vcs_chart_workflows_caches_and_secrets(tmp_path: Path) -> None:
    context = list_context(ROOT)
    for prefix in ("tests/", ".git/", ".github/", "helm/", ".ci/", ".venv/", ".mypy_cache/", ".ruff_cache/"):
        assert not [path for path in context if path.startswith(prefix)], prefix
    assert not [path for path in context if "__pycache__" in path or path.endswith(".pyc")]
    assert "requirements-dev.txt" not in context
    assert "run_tests.py" not in context
    assert not [path for path in context if path.endswith(".md")]

    # secrets dropped anywhere, even inside app/, never reach the builder
    (tmp_path / ".dockerignore").write_bytes((ROOT / ".dockerignore").read_bytes())
    for name in ("app/cli.py", "app/.env", "app/web/.env.production", ".env", "app/tls.key", "app/ca.pem"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert list_context(tmp_path) == ["app/cli.py"]
