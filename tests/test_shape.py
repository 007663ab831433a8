"""The code's shape, as a newcomer reads it: no import circle anywhere in nstvideo/ (module-level
or inside functions), no module over 400 lines, no function body over 60 lines, and the video
path's one-way order (render -> plan -> engines -> runners -> stores -> assemble) kept."""

import ast
from pathlib import Path

import nstvideo

ROOT = Path(nstvideo.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The nstvideo modules `name` imports anywhere in its file (a package import counts as
    its __init__; `from nstvideo.x import y` counts y where y is a module)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports(n, p, set(mods)) for n, p in mods.items()}


def cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `g`, if any (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if m == "nstvideo":  # the package's public face imports everything, once
                continue
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_checker_finds_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle_in_nstvideo():
    g = graph()
    assert "nstvideo.video.render" in g and g["nstvideo.video.engines"]  # the graph is real
    assert cycle(g) is None, " -> ".join(cycle(g))


def test_the_video_path_runs_one_way():
    """A step never imports a step after it on the render's path (nor the entry)."""
    order = ["render", "cluster", "engines", "keyframes", "unit", "assemble", "checkpoint",
             "store", "names"]
    g = graph()
    for i, step in enumerate(order):
        later = {f"nstvideo.video.{s}" for s in order[:i]}
        assert not g[f"nstvideo.video.{step}"] & later, (step, g[f"nstvideo.video.{step}"] & later)
    for name, deps in g.items():  # nothing below the video path imports it
        if name.startswith(("nstvideo.style", "nstvideo.media", "nstvideo.net",
                            "nstvideo.training", "nstvideo.photos")):
            assert not any(d.startswith("nstvideo.video") for d in deps), (name, deps)


def test_modules_and_functions_stay_short():
    for name, path in modules().items():
        text = path.read_text()
        assert len(text.splitlines()) <= 400, name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:] or body  # the docstring does not count
                assert node.end_lineno - body[0].lineno < 60, f"{name}.{node.name}"
