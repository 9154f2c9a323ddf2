"""The public surface: `__all__` lists exactly the public names, and the core imports no web or Redis code."""

from __future__ import annotations

import subprocess
import sys
import types

import broadcaster

#: Names that may appear in the package namespace without being exported.
_NOT_EXPORTED = {"annotations"}  # the `from __future__ import annotations` feature object


def test_all_lists_exactly_the_public_names():
    public = [
        name
        for name, value in vars(broadcaster).items()
        if (not name.startswith("_") or name == "__version__")
        and name not in _NOT_EXPORTED
        and not isinstance(value, types.ModuleType)  # subpackages (`backends`, `http`) are imported explicitly
    ]
    assert broadcaster.__all__ == sorted(public)


def test_all_names_resolve():
    for name in broadcaster.__all__:
        assert getattr(broadcaster, name) is not None, name


def test_version_is_a_string():
    assert isinstance(broadcaster.__version__, str) and broadcaster.__version__.count(".") >= 1


def _imported_after(code: str) -> list[str]:
    script = (
        f"{code}\n"
        "import sys\n"
        "heavy = ('fastapi', 'starlette', 'redis', 'uvicorn', 'sse_starlette', 'pydantic')\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy})))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.split()


def test_import_broadcaster_imports_no_web_framework_or_redis():
    assert _imported_after("import broadcaster") == []


def test_memory_backend_imports_no_redis():
    code = "import broadcaster\nbroadcaster.backend_from_url('memory://')\nimport broadcaster.backends.memory"
    assert _imported_after(code) == []


def test_producers_import_only_public_names_of_broadcaster():
    """Issue 10 item 6: no `broadcaster._config`, `broadcaster._topics`, backends or http in producers/."""
    import ast
    from pathlib import Path

    allowed_modules = {"broadcaster", "broadcaster.cli"}
    for path in sorted((Path(__file__).parent.parent / "producers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("broadcaster"):
                assert node.module in allowed_modules, f"{path.name} imports from {node.module}"
                for alias in node.names:
                    assert not alias.name.startswith("_"), f"{path.name} imports {node.module}.{alias.name}"
                    if node.module == "broadcaster":
                        assert alias.name in broadcaster.__all__, f"{path.name} imports {alias.name}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("broadcaster.") for a in node.names), path.name


def test_import_producers_imports_no_web_framework_or_redis():
    assert _imported_after("import producers\nimport producers.__main__") == []
